// A soak test: concurrent clients send random traffic (streams, unary calls, cancellations,
// deadlines, aborts, invalid requests, shared prompt prefixes) to an in-process server on the
// built-in model with a KV cache small enough to preempt. Every call must end with an expected
// status and a well-formed response stream, and at the end no request, KV block or memory may
// have leaked. PAGODA_SOAK_SECONDS sets the duration (default 8; about 60 for a real soak).

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "pagoda/v1/text_generation_service.grpc.pb.h"
#include "server/pagoda_server.h"

namespace pagoda::server {
namespace {

// Resident set size of this process, bytes.
int64_t ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t pages = 0;
  int64_t resident = 0;
  statm >> pages >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

absl::Duration SoakDuration() {
  const char* text = std::getenv("PAGODA_SOAK_SECONDS");
  double seconds = 8;
  if (text != nullptr && !absl::SimpleAtod(text, &seconds)) seconds = 8;
  return absl::Seconds(seconds);
}

// Outcomes by kind, across all clients.
class Tally {
 public:
  void Add(const std::string& kind) {
    std::lock_guard<std::mutex> lock(mu_);
    ++counts_[kind];
  }
  int Get(const std::string& kind) {
    std::lock_guard<std::mutex> lock(mu_);
    return counts_[kind];
  }
  std::string ToString() {
    std::lock_guard<std::mutex> lock(mu_);
    std::string out;
    for (const auto& [kind, n] : counts_) absl::StrAppend(&out, kind, "=", n, " ");
    return out;
  }

 private:
  std::mutex mu_;
  std::map<std::string, int> counts_;
};

class Client {
 public:
  Client(std::shared_ptr<grpc::Channel> channel, int seed, Tally* tally)
      : stub_(v1::TextGeneration::NewStub(channel)), rng_(seed), tally_(tally) {}

  void RunUntil(absl::Time deadline) {
    while (absl::Now() < deadline) {
      const int choice = Uniform(0, 99);
      if (choice < 45) {
        Stream(/*abort_by_id=*/false);
      } else if (choice < 55) {
        Stream(/*abort_by_id=*/true);
      } else if (choice < 80) {
        Unary();
      } else if (choice < 90) {
        Invalid();
      } else {
        Info();
      }
    }
  }

 private:
  int Uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }

  v1::GenerateRequest RandomRequest() {
    v1::GenerateRequest request;
    // A few shared prefixes, so that the prefix cache hits and evicts.
    static const char* const kPrefixes[] = {
        "You are a helpful assistant. Answer briefly and precisely. ",
        "System: the following is a conversation about paged attention. ",
        "Once upon a time, in a land of many caches, "};
    request.set_text(absl::StrCat(kPrefixes[Uniform(0, 2)], "question ", Uniform(0, 1000)));
    request.mutable_stopping()->set_max_tokens(Uniform(1, 160));
    request.mutable_stopping()->set_ignore_eos(Uniform(0, 1) == 1);
    if (Uniform(0, 3) == 0) request.mutable_stopping()->add_stop("e");
    if (Uniform(0, 1) == 0) request.mutable_sampling()->set_temperature(0);
    request.mutable_sampling()->set_seed(Uniform(0, 1 << 20));
    return request;
  }

  // Checks a finished stream: OK ends with exactly one Complete whose usage counts the
  // streamed tokens; other statuses are the expected ones.
  void CheckEnd(const grpc::Status& status, const std::vector<v1::GenerateResponse>& responses,
                bool stream, const std::string& what) {
    switch (status.error_code()) {
      case grpc::StatusCode::OK: {
        ASSERT_FALSE(responses.empty()) << what;
        ASSERT_TRUE(responses.back().has_complete()) << what;
        size_t streamed = 0;
        for (size_t i = 0; i + 1 < responses.size(); ++i) {
          ASSERT_TRUE(responses[i].has_chunk()) << what;
          streamed += responses[i].chunk().token_ids_size();
        }
        const auto& complete = responses.back().complete();
        const size_t total = stream ? streamed : complete.token_ids_size();
        EXPECT_EQ(total, complete.usage().completion_tokens()) << what;
        EXPECT_NE(complete.finish_reason(), v1::FINISH_REASON_UNSPECIFIED) << what;
        tally_->Add(absl::StrCat(what, ":", v1::FinishReason_Name(complete.finish_reason())));
        return;
      }
      case grpc::StatusCode::CANCELLED:
      case grpc::StatusCode::DEADLINE_EXCEEDED:
      case grpc::StatusCode::RESOURCE_EXHAUSTED:
        // A Complete can only be the last message: a cancel or deadline may still overtake
        // the OK status that follows it (this client cancels at random points).
        for (size_t i = 0; i + 1 < responses.size(); ++i) {
          EXPECT_FALSE(responses[i].has_complete()) << what;
        }
        tally_->Add(absl::StrCat(what, ":", status.error_code()));
        return;
      default:
        ADD_FAILURE() << what << ": unexpected status " << status.error_code() << " "
                      << status.error_message();
    }
  }

  void Stream(bool abort_by_id) {
    v1::GenerateRequest request = RandomRequest();
    request.set_stream(true);
    const std::string id = absl::StrCat("soak-", reinterpret_cast<uintptr_t>(this), "-", ++n_);
    request.set_request_id(id);
    const int cancel_after = Uniform(0, 3) == 0 ? Uniform(0, 8) : -1;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    auto reader = stub_->Generate(&context, request);
    std::vector<v1::GenerateResponse> responses;
    v1::GenerateResponse response;
    while (reader->Read(&response)) {
      responses.push_back(response);
      if (abort_by_id && responses.size() == 1) {
        grpc::ClientContext abort_context;
        v1::AbortRequest abort;
        abort.add_request_ids(id);
        v1::AbortResponse aborted;
        EXPECT_TRUE(stub_->Abort(&abort_context, abort, &aborted).ok());
      }
      if (static_cast<int>(responses.size()) == cancel_after) context.TryCancel();
    }
    CheckEnd(reader->Finish(), responses, /*stream=*/true, abort_by_id ? "abort" : "stream");
  }

  void Unary() {
    const v1::GenerateRequest request = RandomRequest();
    grpc::ClientContext context;
    // Some deadlines are too short for the generation.
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Milliseconds(Uniform(5, 400))));
    auto reader = stub_->Generate(&context, request);
    std::vector<v1::GenerateResponse> responses;
    v1::GenerateResponse response;
    while (reader->Read(&response)) responses.push_back(response);
    CheckEnd(reader->Finish(), responses, /*stream=*/false, "unary");
  }

  void Invalid() {
    v1::GenerateRequest request = RandomRequest();
    request.mutable_sampling()->set_top_p(0);
    grpc::ClientContext context;
    auto reader = stub_->Generate(&context, request);
    v1::GenerateResponse response;
    EXPECT_FALSE(reader->Read(&response));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    tally_->Add("invalid");
  }

  void Info() {
    grpc::ClientContext context;
    v1::ServerInfo info;
    EXPECT_TRUE(stub_->GetServerInfo(&context, {}, &info).ok());
    EXPECT_GE(info.kv_cache_usage_ratio(), 0.0);
    EXPECT_LE(info.kv_cache_usage_ratio(), 1.0);
  }

  std::unique_ptr<v1::TextGeneration::Stub> stub_;
  std::mt19937 rng_;
  Tally* tally_;
  int n_ = 0;
};

TEST(PagodaServerSoakTest, RandomTrafficEndsCleanlyAndLeaksNothing) {
  ServerOptions options;
  options.host = "127.0.0.1";
  options.port = 0;
  options.metrics_port.reset();
  options.http_port.reset();
  options.drain_timeout = absl::Seconds(5);
  options.engine.model = "dummy:tiny";
  options.engine.num_threads = 1;
  options.engine.max_num_seqs = 12;
  options.engine.max_waiting_requests = 24;
  options.engine.max_model_len = 256;
  // 32 blocks of 16 tokens (256 bytes per token): a few long requests fill it, so requests
  // preempt.
  options.engine.kv_cache_memory_bytes = 32 * 16 * 256;
  absl::StatusOr<std::unique_ptr<PagodaServer>> started = PagodaServer::Start(options);
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<PagodaServer> server = *std::move(started);
  ASSERT_TRUE(server->LoadEngine().ok());
  auto channel = grpc::CreateChannel(server->address(), grpc::InsecureChannelCredentials());

  const absl::Duration duration = SoakDuration();
  const absl::Time start = absl::Now();
  Tally tally;
  std::atomic<int64_t> rss_after_warmup{0};
  std::vector<std::thread> threads;
  constexpr int kClients = 8;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] { Client(channel, 1000 + i, &tally).RunUntil(start + duration); });
  }
  absl::SleepFor(duration / 4);
  rss_after_warmup = ResidentBytes();
  for (std::thread& t : threads) t.join();
  const int64_t rss_end = ResidentBytes();

  // Every request has left the engine and freed its blocks.
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  engine::EngineSnapshot snapshot = server->engine()->Snapshot();
  while (absl::Now() < deadline &&
         (snapshot.num_running + snapshot.num_waiting > 0 || snapshot.kv.num_used_blocks > 0 ||
          server->num_unfinished_requests() > 0)) {
    absl::SleepFor(absl::Milliseconds(10));
    snapshot = server->engine()->Snapshot();
  }
  EXPECT_EQ(snapshot.num_running, 0);
  EXPECT_EQ(snapshot.num_waiting, 0);
  EXPECT_EQ(snapshot.kv.num_used_blocks, 0);
  EXPECT_EQ(
      snapshot.kv.num_used_blocks + snapshot.kv.num_cached_blocks + snapshot.kv.num_free_blocks,
      snapshot.kv.num_blocks);
  EXPECT_EQ(server->num_unfinished_requests(), 0);
  EXPECT_TRUE(snapshot.healthy);

  const std::string outcomes = tally.ToString();
  std::printf("soak %.1f s: %s preemptions=%lld steps=%lld rss %+.1f MiB after warm-up\n",
              absl::ToDoubleSeconds(duration), outcomes.c_str(),
              static_cast<long long>(snapshot.num_preemptions),
              static_cast<long long>(snapshot.num_steps),
              static_cast<double>(rss_end - rss_after_warmup) / (1 << 20));
  // The traffic reached every outcome it aims at.
  EXPECT_GT(tally.Get("stream:FINISH_REASON_LENGTH") + tally.Get("stream:FINISH_REASON_STOP"), 0)
      << outcomes;
  EXPECT_GT(tally.Get("abort:FINISH_REASON_ABORT"), 0) << outcomes;
  EXPECT_GT(tally.Get(absl::StrCat("stream:", grpc::StatusCode::CANCELLED)), 0) << outcomes;
  EXPECT_GT(tally.Get("invalid"), 0) << outcomes;
  EXPECT_GT(snapshot.num_preemptions, 0) << outcomes;
  // Memory is flat once warm (allocator caches and gRPC's pools settle in the warm-up). Not
  // under AddressSanitizer, whose quarantine holds on to freed memory by design.
#ifndef __SANITIZE_ADDRESS__
  EXPECT_LT(rss_end - rss_after_warmup, int64_t{32} << 20);
#endif
  server->Shutdown();
}

}  // namespace
}  // namespace pagoda::server
