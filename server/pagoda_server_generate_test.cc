// End-to-end tests of the Generate RPC in process (server/testing/server_fixture.h): unary and
// streamed calls, request ids, every validation status, abort by id, client cancellation, an
// expired deadline and a full queue.

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "pagoda/v1/text_generation_service.grpc.pb.h"
#include "server/pagoda_server.h"
#include "server/testing/server_fixture.h"

namespace pagoda::server {
namespace {

using ::pagoda::server::testing::GenerateResult;
using ::pagoda::server::testing::kMaxModelLen;
using ::pagoda::server::testing::LongRequest;
using ::pagoda::server::testing::OpenStream;
using ::pagoda::server::testing::PagodaServerTest;
using ::pagoda::server::testing::WaitFor;
using ::testing::ElementsAreArray;
using ::testing::MatchesRegex;
using ::testing::StartsWith;

TEST_F(PagodaServerTest, UnaryAndStreamingGenerateAgree) {
  StartServer();
  v1::GenerateRequest request;
  request.set_text("Hello");
  request.mutable_sampling()->set_temperature(0);
  request.mutable_stopping()->set_max_tokens(8);
  request.mutable_stopping()->set_ignore_eos(true);
  request.mutable_logprobs()->set_top_logprobs(2);
  const GenerateResult unary = Generate(request, {{"x-request-id", "unary-1"}});
  ASSERT_TRUE(unary.status.ok()) << unary.status.error_message();
  ASSERT_EQ(unary.responses.size(), 1u);
  ASSERT_TRUE(unary.responses[0].has_complete());
  EXPECT_EQ(unary.responses[0].request_id(), "unary-1");
  EXPECT_EQ(unary.initial_metadata.find("x-request-id")->second, "unary-1");
  const v1::GenerateResponse::Complete& complete = unary.responses[0].complete();
  EXPECT_EQ(complete.finish_reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(complete.token_ids_size(), 8);
  EXPECT_EQ(complete.text().size(), 8u);            // the fake model favours ASCII letters
  EXPECT_EQ(complete.usage().prompt_tokens(), 6u);  // BOS + "Hello"
  EXPECT_EQ(complete.usage().completion_tokens(), 8u);
  EXPECT_GT(complete.timings().ttft_seconds(), 0);
  EXPECT_GE(complete.timings().e2e_seconds(), complete.timings().ttft_seconds());
  // One log-probability per token; greedy sampled the most likely of the top two.
  ASSERT_EQ(complete.logprobs_size(), 8);
  for (int i = 0; i < 8; ++i) {
    const v1::TokenLogprob& lp = complete.logprobs(i);
    EXPECT_EQ(lp.token_id(), complete.token_ids(i));
    EXPECT_LE(lp.logprob(), 0.0f);
    ASSERT_EQ(lp.top_size(), 2);
    EXPECT_EQ(lp.top(0).token_id(), lp.token_id());
    EXPECT_EQ(lp.top(0).logprob(), lp.logprob());
    EXPECT_GE(lp.top(0).logprob(), lp.top(1).logprob());
  }

  request.set_stream(true);
  request.set_usage_every_chunk(true);
  request.set_request_id("stream-1");
  const GenerateResult streamed = Generate(request, {{"x-request-id", "ignored"}});
  ASSERT_TRUE(streamed.status.ok()) << streamed.status.error_message();
  ASSERT_GE(streamed.responses.size(), 2u);
  EXPECT_EQ(streamed.initial_metadata.find("x-request-id")->second, "stream-1");
  std::vector<uint32_t> ids;
  std::vector<std::string> logprobs;
  std::string text;
  uint32_t last_completion_tokens = 0;
  for (size_t i = 0; i + 1 < streamed.responses.size(); ++i) {
    const v1::GenerateResponse& r = streamed.responses[i];
    EXPECT_EQ(r.request_id(), "stream-1");
    ASSERT_TRUE(r.has_chunk());
    ids.insert(ids.end(), r.chunk().token_ids().begin(), r.chunk().token_ids().end());
    text += r.chunk().text();
    EXPECT_EQ(r.chunk().logprobs_size(), r.chunk().token_ids_size());
    for (const v1::TokenLogprob& lp : r.chunk().logprobs())
      logprobs.push_back(lp.SerializeAsString());
    ASSERT_TRUE(r.chunk().has_usage());
    EXPECT_GT(r.chunk().usage().completion_tokens(), last_completion_tokens);
    last_completion_tokens = r.chunk().usage().completion_tokens();
  }
  EXPECT_THAT(ids, ElementsAreArray(complete.token_ids()));
  EXPECT_EQ(text, complete.text());
  std::vector<std::string> whole_logprobs;
  for (const v1::TokenLogprob& lp : complete.logprobs())
    whole_logprobs.push_back(lp.SerializeAsString());
  EXPECT_EQ(logprobs, whole_logprobs);
  const v1::GenerateResponse& last = streamed.responses.back();
  ASSERT_TRUE(last.has_complete());
  EXPECT_TRUE(last.complete().token_ids().empty());
  EXPECT_TRUE(last.complete().text().empty());
  EXPECT_TRUE(last.complete().logprobs().empty());
  EXPECT_EQ(last.complete().usage().completion_tokens(), 8u);

  EXPECT_TRUE(complete.prompt_logprobs().empty());
  // Prompt log-probabilities: one per prompt token but the first (BOS), ranked.
  request.mutable_logprobs()->set_prompt_logprobs(true);
  request.set_request_id("unary-3");
  request.set_stream(false);
  const GenerateResult prompt = Generate(request);
  ASSERT_TRUE(prompt.status.ok()) << prompt.status.error_message();
  const v1::GenerateResponse::Complete& scored = prompt.responses.back().complete();
  ASSERT_EQ(scored.prompt_logprobs_size(), 5);  // "Hello"
  EXPECT_EQ(scored.prompt_logprobs(0).token_id(), static_cast<uint32_t>('H'));
  for (const v1::TokenLogprob& lp : scored.prompt_logprobs()) {
    EXPECT_LE(lp.logprob(), 0.0f);
    EXPECT_GE(lp.rank(), 1u);
    EXPECT_EQ(lp.top_size(), 2);
    // Rank 1 exactly when it is the most likely.
    EXPECT_EQ(lp.rank() == 1, lp.top(0).token_id() == lp.token_id()) << lp.DebugString();
  }

  // Without LogprobsOptions, none.
  request.clear_logprobs();
  request.set_stream(false);
  request.set_request_id("unary-2");
  const GenerateResult plain = Generate(request);
  ASSERT_TRUE(plain.status.ok()) << plain.status.error_message();
  EXPECT_TRUE(plain.responses[0].complete().logprobs().empty());
}

TEST_F(PagodaServerTest, ServerGeneratesARequestIdWhenNoneIsGiven) {
  StartServer();
  const GenerateResult result = Generate(LongRequest(2));
  ASSERT_TRUE(result.status.ok());
  const std::string id = result.responses.back().request_id();
  EXPECT_THAT(id,
              MatchesRegex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"));
  EXPECT_EQ(result.initial_metadata.find("x-request-id")->second, id);
}

TEST_F(PagodaServerTest, EveryValidationCaseHasItsStatus) {
  StartServer();
  struct Case {
    std::string name;
    std::function<void(v1::GenerateRequest&)> mutate;
    grpc::StatusCode code;
    std::string message_prefix;
    std::string reason;  // pagoda-error-reason, "" = none
    std::vector<std::pair<std::string, std::string>> metadata = {};
  };
  const std::string invalid = "INVALID_FIELD";
  const std::string too_long = "PROMPT_TOO_LONG";
  const std::vector<Case> cases = {
      {"no prompt", [](v1::GenerateRequest& r) { r.clear_token_ids(); },
       grpc::StatusCode::INVALID_ARGUMENT, "prompt: required", invalid},
      // The client library sends these (it only logs); protobuf's parser refuses them.
      {"invalid UTF-8 text", [](v1::GenerateRequest& r) { r.set_text("ok \xff"); },
       grpc::StatusCode::INVALID_ARGUMENT, "text: must be valid UTF-8", invalid},
      {"invalid UTF-8 stop string",
       [](v1::GenerateRequest& r) { r.mutable_stopping()->add_stop("\xc3("); },
       grpc::StatusCode::INVALID_ARGUMENT, "stopping.stop[0]: must be valid UTF-8", invalid},
      {"empty text", [](v1::GenerateRequest& r) { r.set_text(""); },
       grpc::StatusCode::INVALID_ARGUMENT, "text: must not be empty", invalid},
      {"empty token ids", [](v1::GenerateRequest& r) { r.mutable_token_ids()->clear_ids(); },
       grpc::StatusCode::INVALID_ARGUMENT, "token_ids.ids: must not be empty", invalid},
      {"token id >= vocab", [](v1::GenerateRequest& r) { r.mutable_token_ids()->set_ids(1, 258); },
       grpc::StatusCode::INVALID_ARGUMENT,
       "token_ids.ids[1]: token id 258 is outside the vocabulary [0, 258)", invalid},
      {"prompt too long",
       [](v1::GenerateRequest& r) {
         for (int i = 0; i < kMaxModelLen; ++i) r.mutable_token_ids()->add_ids(5);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "token_ids.ids: the prompt has", too_long},
      {"prompt + max_tokens > max_model_len",
       [](v1::GenerateRequest& r) { r.mutable_stopping()->set_max_tokens(kMaxModelLen - 2); },
       grpc::StatusCode::INVALID_ARGUMENT, "stopping.max_tokens: the prompt's 3 tokens", too_long},
      {"temperature < 0", [](v1::GenerateRequest& r) { r.mutable_sampling()->set_temperature(-1); },
       grpc::StatusCode::INVALID_ARGUMENT, "sampling.temperature: must be in [0, 100], got -1",
       invalid},
      {"top_p 0", [](v1::GenerateRequest& r) { r.mutable_sampling()->set_top_p(0); },
       grpc::StatusCode::INVALID_ARGUMENT, "sampling.top_p: must be in (0, 1], got 0", invalid},
      {"top_p > 1", [](v1::GenerateRequest& r) { r.mutable_sampling()->set_top_p(1.01f); },
       grpc::StatusCode::INVALID_ARGUMENT, "sampling.top_p: must be in (0, 1]", invalid},
      {"too many stop strings",
       [](v1::GenerateRequest& r) {
         for (int i = 0; i < 17; ++i) r.mutable_stopping()->add_stop("x");
       },
       grpc::StatusCode::INVALID_ARGUMENT, "stopping.stop: at most 16 stop strings, got 17",
       invalid},
      {"stop string too long",
       [](v1::GenerateRequest& r) { r.mutable_stopping()->add_stop(std::string(257, 'x')); },
       grpc::StatusCode::INVALID_ARGUMENT, "stopping.stop[0]: at most 256 bytes", invalid},
      {"max_tokens 0", [](v1::GenerateRequest& r) { r.mutable_stopping()->set_max_tokens(0); },
       grpc::StatusCode::INVALID_ARGUMENT, "stopping.max_tokens: must be >= 1", invalid},
      {"unknown extra key", [](v1::GenerateRequest& r) { (*r.mutable_extra())["beam"] = "4"; },
       grpc::StatusCode::INVALID_ARGUMENT, "extra[\"beam\"]: unknown key", invalid},
      {"bad request_id", [](v1::GenerateRequest& r) { r.set_request_id("a b"); },
       grpc::StatusCode::INVALID_ARGUMENT, "request_id: must be printable ASCII", invalid},
      {"bad x-request-id",
       [](v1::GenerateRequest&) {},
       grpc::StatusCode::INVALID_ARGUMENT,
       "x-request-id: must be printable ASCII",
       invalid,
       {{"x-request-id", "a b"}}},
      {"other model", [](v1::GenerateRequest& r) { r.set_model("gpt-5"); },
       grpc::StatusCode::NOT_FOUND, "model: \"gpt-5\" is not served", ""},
      {"n > 1", [](v1::GenerateRequest& r) { r.set_n(2); }, grpc::StatusCode::UNIMPLEMENTED,
       "n: ", ""},
      {"top_logprobs 21",
       [](v1::GenerateRequest& r) { r.mutable_logprobs()->set_top_logprobs(21); },
       grpc::StatusCode::INVALID_ARGUMENT, "logprobs.top_logprobs: must be in [0, 20], got 21",
       invalid},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    v1::GenerateRequest request = LongRequest(4);
    c.mutate(request);
    const GenerateResult result = Generate(request, c.metadata);
    EXPECT_EQ(result.status.error_code(), c.code) << result.status.error_message();
    EXPECT_THAT(result.status.error_message(), StartsWith(c.message_prefix));
    EXPECT_EQ(result.Trailer("pagoda-error-reason"), c.reason);
    EXPECT_TRUE(result.responses.empty());
  }
  // Refusals are counted when gRPC is done with the call, which may be after the client has
  // its status (TOOLCHAIN: OnDone runs late): poll.
  const auto rejected = [this](const char* reason) {
    return Metric(absl::StrCat(R"(pagoda_requests_rejected_total{model_name="fake-model",reason=")",
                               reason, R"("})"));
  };
  EXPECT_TRUE(WaitFor([&] {
    return rejected("invalid_field") == 16 && rejected("prompt_too_long") == 2 &&
           rejected("not_found") == 1;
  }));
  EXPECT_EQ(rejected("invalid_field"), 16);
  EXPECT_EQ(rejected("prompt_too_long"), 2);
  EXPECT_EQ(rejected("not_found"), 1);
  EXPECT_EQ(rejected("cancelled"), 0);
  EXPECT_EQ(server_->num_unfinished_requests(), 0);
}

TEST_F(PagodaServerTest, AnUnfinishedRequestIdCannotBeReused) {
  StartServer();
  std::unique_ptr<OpenStream> first = Open(LongRequest(100, "dup"));
  ASSERT_TRUE(first->Next().has_chunk());
  const GenerateResult second = Generate(LongRequest(2, "dup"));
  EXPECT_EQ(second.status.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(second.status.error_message(), StartsWith("request_id: \"dup\""));
  first->context.TryCancel();
  grpc::Status status;
  first->Rest(&status);
  ASSERT_TRUE(WaitFor([&] { return server_->num_unfinished_requests() == 0; }));
  EXPECT_TRUE(Generate(LongRequest(2, "dup")).status.ok());
}

TEST_F(PagodaServerTest, AbortByIdEndsTheStreamWithAbort) {
  StartServer();
  std::unique_ptr<OpenStream> stream = Open(LongRequest(100, "victim"));
  ASSERT_TRUE(stream->Next().has_chunk());
  grpc::ClientContext context;
  v1::AbortRequest abort;
  abort.add_request_ids("victim");
  abort.add_request_ids("nobody");
  v1::AbortResponse response;
  ASSERT_TRUE(stub_->Abort(&context, abort, &response).ok());
  EXPECT_EQ(response.num_found(), 1u);
  grpc::Status status;
  const std::vector<v1::GenerateResponse> rest = stream->Rest(&status);
  EXPECT_TRUE(status.ok()) << status.error_message();
  ASSERT_FALSE(rest.empty());
  ASSERT_TRUE(rest.back().has_complete());
  EXPECT_EQ(rest.back().complete().finish_reason(), v1::FINISH_REASON_ABORT);
  EXPECT_LT(rest.back().complete().usage().completion_tokens(), 100u);

  grpc::ClientContext too_many_context;
  v1::AbortRequest too_many;
  for (int i = 0; i < 1025; ++i) too_many.add_request_ids(absl::StrCat(i));
  const grpc::Status refused = stub_->Abort(&too_many_context, too_many, &response);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(refused.error_message(), StartsWith("request_ids: at most 1024"));
}

TEST_F(PagodaServerTest, CancelMidStreamFreesTheBlocks) {
  StartServer();
  std::unique_ptr<OpenStream> stream = Open(LongRequest(120));
  ASSERT_TRUE(stream->Next().has_chunk());
  ASSERT_TRUE(stream->Next().has_chunk());
  const v1::ServerInfo busy = ServerInfo();
  EXPECT_EQ(busy.num_requests_running(), 1u);
  EXPECT_GT(busy.kv_cache_usage_ratio(), 0);
  EXPECT_GT(Metric(R"(pagoda_kv_cache_blocks{model_name="fake-model",state="used"})"), 0);

  stream->context.TryCancel();
  grpc::Status status;
  stream->Rest(&status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED);
  ASSERT_TRUE(WaitFor([&] {
    const v1::ServerInfo info = ServerInfo();
    return info.num_requests_running() == 0 && info.kv_cache_usage_ratio() == 0;
  }));
  EXPECT_EQ(server_->engine()->Snapshot().kv.num_used_blocks, 0);
  EXPECT_EQ(Metric(R"(pagoda_kv_cache_blocks{model_name="fake-model",state="used"})"), 0);
  // The engine reports an aborted request's metrics with its next step.
  ASSERT_TRUE(Generate(LongRequest(2)).status.ok());
  EXPECT_EQ(
      Metric(R"(pagoda_request_success_total{model_name="fake-model",finished_reason="abort"})"),
      1);
  EXPECT_TRUE(WaitFor([&] { return server_->num_unfinished_requests() == 0; }));
}

TEST_F(PagodaServerTest, AnExpiredDeadlineAbortsTheRequest) {
  StartServer();
  const GenerateResult result = Generate(LongRequest(120), {}, absl::Milliseconds(100));
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  ASSERT_TRUE(WaitFor([&] {
    const engine::EngineSnapshot snapshot = server_->engine()->Snapshot();
    return snapshot.num_running == 0 && snapshot.num_waiting == 0 &&
           snapshot.kv.num_used_blocks == 0;
  }));
  EXPECT_TRUE(WaitFor([&] { return server_->num_unfinished_requests() == 0; }));
}

TEST_F(PagodaServerTest, AFullQueueRefusesWithRetryAfter) {
  // 50 ms steps: the running request lasts 6 s, so it cannot finish (and let a waiting one
  // in) while a loaded machine is slow to run the checks below.
  StartServer({.step_time = absl::Milliseconds(50), .max_num_seqs = 1, .max_waiting_requests = 2});
  std::unique_ptr<OpenStream> running = Open(LongRequest(120));
  ASSERT_TRUE(running->Next().has_chunk());
  // Its first chunk goes out before the step that admitted it ends, and until then the engine
  // counts it as waiting (in transit from the inbox), which would fill the queue early.
  ASSERT_TRUE(WaitFor([&] {
    const engine::EngineSnapshot snapshot = server_->engine()->Snapshot();
    return snapshot.num_running == 1 && snapshot.num_waiting == 0;
  }));
  std::unique_ptr<OpenStream> waiting1 = Open(LongRequest(120));
  std::unique_ptr<OpenStream> waiting2 = Open(LongRequest(120));
  ASSERT_TRUE(WaitFor([&] { return ServerInfo().num_requests_waiting() == 2; }));
  // Until the engine thread has run a step with both in its core, one may still be in transit
  // from its inbox, where the engine's count misses it for a moment.
  const int64_t steps = server_->engine()->Snapshot().num_steps;
  ASSERT_TRUE(WaitFor([&] { return server_->engine()->Snapshot().num_steps >= steps + 2; }));
  ASSERT_EQ(ServerInfo().num_requests_waiting(), 2u);
  EXPECT_EQ(ServerInfo().max_num_waiting_requests(), 2u);

  const GenerateResult refused = Generate(LongRequest(2));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(refused.Trailer("pagoda-error-reason"), "QUEUE_FULL");
  EXPECT_EQ(refused.Trailer("pagoda-retry-after-ms"), "250");
  EXPECT_TRUE(WaitFor([&] {
    return Metric(
               R"(pagoda_requests_rejected_total{model_name="fake-model",reason="queue_full"})") ==
           1;
  }));
  for (OpenStream* s : {running.get(), waiting1.get(), waiting2.get()}) {
    s->context.TryCancel();
    grpc::Status status;
    s->Rest(&status);
  }
}

}  // namespace
}  // namespace pagoda::server
