#include "engine/model_fingerprint.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <vector>

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "model/dtype.h"

namespace pagoda::engine {
namespace {

constexpr std::streamsize kSampleBytes = 1 << 20;

class Hasher {
 public:
  Hasher() { XXH3_128bits_reset(&state_); }
  // Length-prefixed, so that fields cannot run into each other.
  void Add(const std::string& bytes) {
    const uint64_t size = bytes.size();
    XXH3_128bits_update(&state_, &size, sizeof(size));
    XXH3_128bits_update(&state_, bytes.data(), bytes.size());
  }
  kv_offload::ModelFingerprint Digest() {
    const XXH128_hash_t h = XXH3_128bits_digest(&state_);
    return {.low = h.low64, .high = h.high64};
  }

 private:
  XXH3_state_t state_;
};

// The first and last kSampleBytes of a file (all of it when smaller than twice that).
std::string Sample(const std::filesystem::path& path, uintmax_t size) {
  std::ifstream in(path, std::ios::binary);
  std::string head(static_cast<size_t>(std::min<uintmax_t>(size, kSampleBytes)), '\0');
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  if (size <= static_cast<uintmax_t>(2 * kSampleBytes)) {
    std::string rest((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return head + rest;
  }
  std::string tail(kSampleBytes, '\0');
  in.seekg(-kSampleBytes, std::ios::end);
  in.read(tail.data(), kSampleBytes);
  return head + tail;
}

}  // namespace

absl::StatusOr<kv_offload::ModelFingerprint> FingerprintModel(const std::string& model_spec,
                                                              uint64_t seed,
                                                              const runner::ModelRunner& runner) {
  Hasher h;
  h.Add("pagoda-kv-offload/1");
  if (absl::StartsWith(model_spec, "dummy:")) {
    h.Add(model_spec);
    h.Add(absl::StrCat(seed));
  } else {
    std::error_code error;
    std::vector<std::filesystem::path> files;
    for (const auto& entry : std::filesystem::directory_iterator(model_spec, error)) {
      const std::string name = entry.path().filename().string();
      if (name == "config.json" || absl::StartsWith(name, "tokenizer") ||
          absl::EndsWith(name, ".safetensors")) {
        files.push_back(entry.path());
      }
    }
    if (error) {
      return absl::InvalidArgumentError(
          absl::StrCat("--model ", model_spec, ": cannot list: ", error.message()));
    }
    std::sort(files.begin(), files.end());
    for (const std::filesystem::path& file : files) {
      const uintmax_t size = std::filesystem::file_size(file, error);
      if (error) continue;
      h.Add(file.filename().string());
      h.Add(absl::StrCat(size));
      h.Add(Sample(file, size));
    }
  }
  const common::AttentionWindow window = runner.kv_window();
  h.Add(absl::StrCat("weights ", std::string(model::DTypeName(runner.weight_dtype())), " kv ",
                     std::string(model::DTypeName(runner.kv_dtype())),
                     runner.kv_static_scales() ? " static" : "", " block ", runner.block_size(),
                     " backend ", runner.backend_name(), " window ", window.sliding_window,
                     " sinks ", window.sink_tokens, " bytes ", runner.kv_block_bytes()));
  return h.Digest();
}

}  // namespace pagoda::engine
