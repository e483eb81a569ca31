#include "bench/load/load_runner.h"

#include <chrono>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "bench/load/openai_client.h"
#include "grpcpp/grpcpp.h"
#include "pagoda/v1/text_generation_service.grpc.pb.h"

namespace pagoda::bench {
namespace {

namespace pb = ::pagoda::v1;

// Counts calls in flight and lets the sender wait for room or for the end.
class InFlight {
 public:
  void Add() {
    absl::MutexLock lock(&mu_);
    ++count_;
  }
  void Done() {
    absl::MutexLock lock(&mu_);
    --count_;
  }
  void WaitBelow(int limit) {
    absl::MutexLock lock(&mu_);
    const auto below = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return count_ < limit; };
    mu_.Await(absl::Condition(&below));
  }

 private:
  absl::Mutex mu_;
  int count_ ABSL_GUARDED_BY(mu_) = 0;
};

// One streaming Generate call; deletes itself when done.
class GenerateCall final : public grpc::ClientReadReactor<pb::GenerateResponse> {
 public:
  GenerateCall(pb::TextGeneration::Stub* stub, pb::GenerateRequest request, absl::Time run_start,
               double timeout_seconds, RequestResult* result,
               std::function<void(const RequestResult&)> on_done)
      : request_(std::move(request)),
        run_start_(run_start),
        result_(result),
        on_done_(std::move(on_done)) {
    context_.set_deadline(std::chrono::system_clock::now() +
                          std::chrono::milliseconds(static_cast<int64_t>(timeout_seconds * 1e3)));
    start_ = absl::Now();
    result_->sent = true;
    result_->start = absl::ToDoubleSeconds(start_ - run_start_);
    stub->async()->Generate(&context_, &request_, this);
    StartRead(&response_);
    StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;
    const absl::Time now = absl::Now();
    if (response_.has_chunk()) {
      const pb::GenerateResponse::Chunk& chunk = response_.chunk();
      if (chunk.token_ids_size() > 0) {
        if (result_->output_tokens == 0) {
          result_->ttft = absl::ToDoubleSeconds(now - start_);
        } else {
          result_->itls.push_back(absl::ToDoubleSeconds(now - last_token_));
        }
        last_token_ = now;
        result_->output_tokens += chunk.token_ids_size();
      }
      result_->text += chunk.text();
    } else if (response_.has_complete()) {
      result_->prompt_tokens = static_cast<int>(response_.complete().usage().prompt_tokens());
      result_->output_tokens = static_cast<int>(response_.complete().usage().completion_tokens());
    }
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    result_->e2e = absl::ToDoubleSeconds(absl::Now() - start_);
    result_->status_code = static_cast<int>(status.error_code());
    result_->success = status.ok();
    if (!status.ok()) result_->error = status.error_message();
    // The call is destroyed before anyone learns it is done: the run may then tear down the
    // channel this call's context refers to.
    const std::function<void(const RequestResult&)> on_done = std::move(on_done_);
    const RequestResult* result = result_;
    delete this;
    on_done(*result);
  }

 private:
  grpc::ClientContext context_;
  pb::GenerateRequest request_;
  pb::GenerateResponse response_;
  absl::Time run_start_;
  absl::Time start_;
  absl::Time last_token_;
  RequestResult* result_;
  std::function<void(const RequestResult&)> on_done_;
};

pb::GenerateRequest ToProto(const BenchRequest& r, const LoadOptions& options) {
  pb::GenerateRequest request;
  request.set_model(options.model);
  if (r.prompt_text.has_value()) {
    request.set_text(*r.prompt_text);
  } else {
    request.mutable_token_ids()->mutable_ids()->Add(r.prompt_token_ids.begin(),
                                                    r.prompt_token_ids.end());
  }
  request.set_stream(true);
  request.mutable_sampling()->set_temperature(options.temperature);
  request.mutable_stopping()->set_max_tokens(static_cast<uint32_t>(r.output_len));
  request.mutable_stopping()->set_ignore_eos(options.ignore_eos);
  return request;
}

}  // namespace

std::vector<RequestResult> RunLoad(const std::vector<BenchRequest>& requests,
                                   const LoadOptions& options,
                                   const std::function<void(int, int)>& progress) {
  const std::shared_ptr<grpc::Channel> channel =
      grpc::CreateChannel(options.address, grpc::InsecureChannelCredentials());
  const std::unique_ptr<pb::TextGeneration::Stub> stub = pb::TextGeneration::NewStub(channel);
  std::unique_ptr<OpenAiClient> openai;
  if (options.backend != Backend::kGrpc) {
    absl::StatusOr<std::unique_ptr<OpenAiClient>> client = OpenAiClient::Create(options.address);
    if (!client.ok()) {
      std::vector<RequestResult> failed(requests.size());
      for (RequestResult& r : failed) r.error = std::string(client.status().message());
      return failed;
    }
    openai = *std::move(client);
  }
  std::vector<RequestResult> results(requests.size());
  const std::vector<double> offsets = ArrivalOffsets(
      static_cast<int>(requests.size()), options.request_rate, options.burstiness, options.seed);
  const int limit =
      options.max_concurrency > 0 ? options.max_concurrency : std::numeric_limits<int>::max();
  InFlight in_flight;
  absl::Mutex progress_mu;
  int done = 0, failed = 0;
  const auto on_done = [&](const RequestResult& r) {
    {
      absl::MutexLock lock(&progress_mu);
      ++done;
      if (!r.success) ++failed;
      if (progress) progress(done, failed);
    }
    in_flight.Done();
  };
  const absl::Time start = absl::Now();
  for (size_t i = 0; i < requests.size(); ++i) {
    const absl::Time due = start + absl::Seconds(offsets[i]);
    if (absl::ToDoubleSeconds(due - start) > options.max_duration_seconds) break;
    absl::SleepFor(due - absl::Now());
    in_flight.WaitBelow(limit);
    if (absl::ToDoubleSeconds(absl::Now() - start) > options.max_duration_seconds) break;
    in_flight.Add();
    if (openai != nullptr) {
      openai->Start(requests[i], options, start, &results[i], on_done);
    } else {
      new GenerateCall(stub.get(), ToProto(requests[i], options), start,
                       options.request_timeout_seconds, &results[i], on_done);
    }
  }
  in_flight.WaitBelow(1);
  return results;
}

}  // namespace pagoda::bench
