#pragma once

// Test support: a deterministic stand-in for the model that keeps the engine honest about the
// KV cache. Its "KV cache" stores, per slot, the token and position written there; the logits
// of a token are a hash of every (token, position) of its context read back through the block
// table. A wrong slot mapping, a block shared by mistake, a stale prefix-cache hit or a
// position read before it was written changes the logits or fails the step, so outputs equal
// those of a correct engine only if the paging is right.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "runner/model_runner.h"

namespace pagoda::runner::testing {

class FakeModelRunner final : public ModelRunner {
 public:
  struct Options {
    int vocab_size = 64;
    int num_kv_blocks = 64;
    int block_size = 4;
    int max_position_embeddings = 4096;
    std::vector<TokenId> eos_token_ids;
    // Added to these tokens' logits (e.g. ASCII letters, to make byte-tokenizer text readable).
    std::vector<TokenId> favored_tokens;
    float favored_bias = 6.0f;
    std::optional<int> sliding_window;
    // Each Execute() sleeps this long (a slow model, for tests that race the engine thread).
    absl::Duration step_delay = absl::ZeroDuration();
    // ExecuteStep answers argmax rows (IsArgmaxRow) with the argmax it computes, as a GPU
    // runner does, instead of the default (every row sampled on the host).
    bool device_greedy = false;
  };

  explicit FakeModelRunner(const Options& options)
      : options_(options), slots_(static_cast<size_t>(options.num_kv_blocks) * options.block_size) {
    config_.architecture = "FakeForCausalLM";
    config_.vocab_size = options.vocab_size;
    config_.hidden_size = 8;
    config_.intermediate_size = 8;
    config_.num_layers = 1;
    config_.num_heads = 1;
    config_.num_kv_heads = 1;
    config_.head_dim = 8;
    config_.max_position_embeddings = options.max_position_embeddings;
    config_.eos_token_ids = options.eos_token_ids;
    config_.sliding_window = options.sliding_window;
    if (options.sliding_window.has_value()) config_.windowed_layers = {true};
  }

  const model::ModelConfig& config() const override { return config_; }
  int num_kv_blocks() const override { return options_.num_kv_blocks; }
  int block_size() const override { return options_.block_size; }
  model::DType kv_dtype() const override { return model::DType::kF32; }
  common::AttentionWindow kv_window() const override {
    return {.sliding_window = config_.UniformWindow()};
  }
  model::DType weight_dtype() const override { return model::DType::kF32; }
  const char* backend_name() const override { return "fake"; }

  absl::Status Execute(const model::ForwardBatch& batch, std::vector<float>* logits) override {
    ++num_steps_;
    if (options_.step_delay > absl::ZeroDuration()) absl::SleepFor(options_.step_delay);
    if (fail_next_) {
      fail_next_ = false;
      return absl::InternalError("injected model failure");
    }
    const int64_t capacity = static_cast<int64_t>(slots_.size());
    for (size_t t = 0; t < batch.token_ids.size(); ++t) {
      const int64_t slot = batch.slot_mapping[t];
      if (slot < 0 || slot >= capacity) return absl::InternalError("slot out of range");
      slots_[slot] = {batch.token_ids[t], batch.positions[t]};
    }
    const int num_requests = static_cast<int>(batch.context_lens.size());
    const int bs = options_.block_size;
    logits->assign(batch.logits_indices.size() * static_cast<size_t>(options_.vocab_size), 0.0f);
    for (size_t row = 0; row < batch.logits_indices.size(); ++row) {
      const int32_t t = batch.logits_indices[row];
      int r = 0;
      while (r + 1 <= num_requests && batch.query_start[r + 1] <= t) ++r;
      const int32_t context = batch.positions[t] + 1;
      if (context > batch.context_lens[r])
        return absl::InternalError("context beyond context_lens");
      uint64_t hash = 0x9e3779b97f4a7c15ull;
      // The logits hash the attended positions (all, or a window's), read through the table:
      // a block freed too early shows as a slot holding another position.
      const common::AttentionWindow window = kv_window();
      for (int32_t p = 0; p < context; ++p) {
        if (p >= window.SinkEnd(context - 1) && p < window.WindowStart(context - 1)) continue;
        const int32_t block = batch.block_tables[r * batch.max_blocks_per_request + p / bs];
        if (block < 0 || block >= options_.num_kv_blocks) {
          return absl::InternalError("block table entry out of range");
        }
        const Slot& s = slots_[static_cast<size_t>(block) * bs + p % bs];
        if (s.position != p) {
          return absl::InternalError(
              absl::StrCat("position ", p, " read from a slot holding ", s.position));
        }
        hash = Mix(hash ^ static_cast<uint64_t>(s.token));
      }
      float* out = logits->data() + row * options_.vocab_size;
      for (int v = 0; v < options_.vocab_size; ++v) {
        out[v] = static_cast<float>(Mix(hash + static_cast<uint64_t>(v)) >> 40) / (1 << 22);
      }
      for (const TokenId v : options_.favored_tokens) out[v] += options_.favored_bias;
    }
    return absl::OkStatus();
  }

  absl::Status ExecuteStep(const model::ForwardBatch& batch, absl::Span<const SamplingRow> rows,
                           std::vector<absl::StatusOr<TokenId>>* tokens) override {
    if (!options_.device_greedy) {
      if (absl::Status s = ModelRunner::ExecuteStep(batch, rows, tokens); !s.ok()) return s;
    } else {
      std::vector<float> logits;
      if (absl::Status s = Execute(batch, &logits); !s.ok()) return s;
      const size_t vocab = static_cast<size_t>(options_.vocab_size);
      tokens->clear();
      for (size_t row = 0; row < batch.logits_indices.size(); ++row) {
        const auto begin = logits.begin() + static_cast<std::ptrdiff_t>(row * vocab);
        if (IsArgmaxRow(rows[row])) {
          // The first maximum: the lowest id among ties, as the sampler's greedy rule.
          tokens->push_back(static_cast<TokenId>(std::max_element(begin, begin + vocab) - begin));
          ++num_greedy_rows_;
        } else {
          tokens->push_back(SampleOnHost(absl::MakeSpan(&*begin, vocab), rows[row]));
        }
      }
    }
    if (replacement_.has_value() && replacement_->first < tokens->size()) {
      (*tokens)[replacement_->first] = std::move(replacement_->second);
    }
    replacement_.reset();
    return absl::OkStatus();
  }
  // The next ExecuteStep answers logits row `row` with `token` (a wrong id, or an error) instead
  // of its sampled token.
  void ReplaceNextToken(size_t row, absl::StatusOr<TokenId> token) {
    replacement_.emplace(row, std::move(token));
  }
  // Rows ExecuteStep answered with their argmax.
  int64_t num_greedy_rows() const { return num_greedy_rows_; }

  // The next Execute fails (an engine failure).
  void FailNextStep() { fail_next_ = true; }
  int64_t num_steps() const { return num_steps_; }

 private:
  struct Slot {
    TokenId token = -1;
    int32_t position = -1;
  };

  static uint64_t Mix(uint64_t x) {  // SplitMix64's finalizer
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
  }

  Options options_;
  model::ModelConfig config_;
  std::vector<Slot> slots_;
  bool fail_next_ = false;
  int64_t num_steps_ = 0;
  int64_t num_greedy_rows_ = 0;
  std::optional<std::pair<size_t, absl::StatusOr<TokenId>>> replacement_;
};

}  // namespace pagoda::runner::testing
