// KV-cache events end to end in the daemon (docs/kv_events.md): a real engine over the fake
// model with --kv-events-config, --debug-endpoints and --metrics-compat vllm; a ZeroMQ client
// replays the published batches and rebuilds the cache from them alone.

#include <unistd.h>

#include <iterator>
#include <set>
#include <string>
#include <vector>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "http/testing/http_client.h"
#include "kv_events/testing/msgpack_tree.h"
#include "nlohmann/json.hpp"
#include "server/testing/server_fixture.h"

namespace pagoda::server::testing {
namespace {

using kv_events::testing::DecodeMsgpack;
using kv_events::testing::MsgNode;
using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

class KvEventsServerTest : public PagodaServerTest {
 protected:
  void SetUp() override {
    const std::string base = absl::StrCat("ipc:///tmp/pagoda-kv-events-test-", getpid());
    pub_endpoint_ = base + "-pub";
    replay_endpoint_ = base + "-replay";
  }

  void StartWithEvents() {
    StartServer({.customize = [this](ServerOptions& o) {
      o.kv_events.enable_kv_cache_events = true;
      o.kv_events.publisher = "zmq";
      o.kv_events.endpoint = pub_endpoint_;
      o.kv_events.replay_endpoint = replay_endpoint_;
      o.debug_endpoints = true;
      o.metrics_compat_vllm = true;
    }});
  }

  int port() const { return *server_->http_port(); }

  void Complete(const std::string& prompt, const std::string& salt = "") {
    std::string body = json({{"prompt", prompt}, {"max_tokens", 4}, {"ignore_eos", true}}).dump();
    if (!salt.empty()) {
      body =
          json({{"prompt", prompt}, {"max_tokens", 4}, {"ignore_eos", true}, {"cache_salt", salt}})
              .dump();
    }
    const auto response = http::testing::HttpExchange(
        port(),
        absl::StrCat("POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     "Content-Length: ",
                     body.size(), "\r\n\r\n", body),
        20000);
    ASSERT_TRUE(response.ok()) << response.status();
    ASSERT_EQ(response->status, 200) << response->body;
  }

  // The cached blocks a subscriber rebuilds from a replay of every batch: hash -> first token.
  std::map<uint64_t, std::vector<uint64_t>> Replayed(std::string* first_type) {
    zmq::context_t context;
    zmq::socket_t dealer(context, zmq::socket_type::dealer);
    dealer.set(zmq::sockopt::linger, 0);
    dealer.set(zmq::sockopt::rcvtimeo, 5000);
    dealer.connect(replay_endpoint_);
    const char zero[8] = {};
    dealer.send(zmq::const_buffer(), zmq::send_flags::sndmore);
    dealer.send(zmq::buffer(zero, 8), zmq::send_flags::none);
    std::map<uint64_t, std::vector<uint64_t>> blocks;
    uint64_t expected_seq = 0;
    while (true) {
      std::vector<zmq::message_t> frames;
      if (!zmq::recv_multipart(dealer, std::back_inserter(frames)) || frames.size() != 3) {
        ADD_FAILURE() << "no well-formed replay answer";
        return blocks;
      }
      if (frames[2].size() == 0) break;  // the end marker
      uint64_t seq = 0;
      for (size_t i = 0; i < 8; ++i) seq = (seq << 8) | frames[1].data<unsigned char>()[i];
      EXPECT_EQ(seq, expected_seq++);
      const std::optional<MsgNode> batch = DecodeMsgpack(frames[2].to_string());
      if (!batch.has_value() || batch->items.size() != 3) {
        ADD_FAILURE() << "malformed batch " << seq;
        return blocks;
      }
      for (const MsgNode& event : batch->items[1].items) {
        const std::string& type = event.Find("type")->str;
        if (first_type->empty()) *first_type = type;
        if (type == "AllBlocksCleared") blocks.clear();
        const MsgNode* hashes = event.Find("block_hashes");
        if (type == "BlockRemoved") {
          for (const MsgNode& h : hashes->items) EXPECT_EQ(blocks.erase(h.uint_value), 1u);
        }
        if (type != "BlockStored") continue;
        const int block_size = static_cast<int>(event.Find("block_size")->uint_value);
        const std::vector<MsgNode>& tokens = event.Find("token_ids")->items;
        EXPECT_EQ(tokens.size(), hashes->items.size() * block_size);
        for (size_t i = 0; i < hashes->items.size(); ++i) {
          std::vector<uint64_t>& t = blocks[hashes->items[i].uint_value];
          for (int j = 0; j < block_size; ++j) t.push_back(tokens[i * block_size + j].uint_value);
        }
      }
    }
    return blocks;
  }

  // GET /debug/kv_cache_blocks as hash -> tokens.
  std::map<uint64_t, std::vector<uint64_t>> DebugBlocks(json* page) {
    const auto response = http::testing::HttpGet(port(), "/debug/kv_cache_blocks");
    EXPECT_EQ(response->status, 200) << response->body;
    *page = json::parse(response->body);
    std::map<uint64_t, std::vector<uint64_t>> blocks;
    for (const json& block : (*page)["blocks"]) {
      blocks[block["block_hash"].get<uint64_t>()] = block["token_ids"].get<std::vector<uint64_t>>();
    }
    return blocks;
  }

  std::string pub_endpoint_;
  std::string replay_endpoint_;
};

TEST_F(KvEventsServerTest, ReplayedEventsRebuildTheEnginesCache) {
  StartWithEvents();
  // Enough distinct prompts to evict (the pool holds 256 tokens), then two sharing a prefix
  // and a salted copy of one.
  for (int i = 0; i < 12; ++i) Complete(std::string(60, static_cast<char>('c' + i)));
  const std::string shared(40, 'a');
  Complete(shared + "first");
  Complete(shared + "second");
  Complete(shared + "first", "tenant-b");

  json page;
  std::map<uint64_t, std::vector<uint64_t>> debug;
  std::map<uint64_t, std::vector<uint64_t>> replayed;
  std::string first_type;
  // The publisher thread sends asynchronously: wait until it caught up.
  ASSERT_TRUE(WaitFor(
      [&] {
        debug = DebugBlocks(&page);
        first_type.clear();
        replayed = Replayed(&first_type);
        return !debug.empty() && replayed == debug;
      },
      absl::Seconds(10)));
  EXPECT_EQ(first_type, "AllBlocksCleared") << "sequence 0 says the cache starts empty";
  EXPECT_EQ(page["block_size"], kBlockSize);
  EXPECT_EQ(page["medium"], "GPU");
  EXPECT_EQ(page["num_requests"], 0);
  // The salted prompt's first block carries its salt.
  int salted = 0;
  for (const json& block : page["blocks"]) {
    if (block["extra_keys"] == json::array({"tenant-b"})) ++salted;
  }
  EXPECT_EQ(salted, 1);
  EXPECT_GT(Metric("pagoda_kv_cache_evictions_total{"), 0) << "the workload must evict";
  EXPECT_GT(Metric("pagoda_kv_events_published_total{"), 2);
  EXPECT_EQ(Metric("pagoda_kv_events_dropped_total{"), 0);
  EXPECT_GE(Metric("pagoda_kv_events_replay_requests_total{"), 1);
}

TEST_F(KvEventsServerTest, VllmNamedGaugesForEndpointPickers) {
  StartWithEvents();
  const auto metrics = http::testing::HttpGet(port(), "/metrics");
  ASSERT_EQ(metrics->status, 200);
  EXPECT_THAT(metrics->body,
              HasSubstr(absl::StrCat("vllm:cache_config_info{model_name=\"", kModelName,
                                     "\",block_size=\"", kBlockSize, "\",cache_dtype=")));
  EXPECT_THAT(metrics->body, HasSubstr(absl::StrCat("num_gpu_blocks=\"", kNumKvBlocks, "\"} 1")));
  EXPECT_EQ(Metric("vllm:num_requests_running{"), 0);
  EXPECT_EQ(Metric("vllm:num_requests_waiting{"), 0);
  EXPECT_EQ(Metric("vllm:kv_cache_usage_perc{"), 0);
  // A running request shows in both names.
  std::unique_ptr<OpenStream> stream = Open(LongRequest(/*max_tokens=*/100));
  stream->Next();
  // The gauges are set when the step that produced the token ends, which may be just after the
  // token reached the client: poll.
  EXPECT_TRUE(WaitFor([&] { return Metric("vllm:num_requests_running{") == 1; }));
  EXPECT_EQ(Metric("vllm:num_requests_running{"), 1);
  EXPECT_EQ(Metric("pagoda_num_requests_running{"), 1);
  EXPECT_GT(Metric("vllm:kv_cache_usage_perc{"), 0);
  stream->context.TryCancel();
}

TEST_F(KvEventsServerTest, OffByDefault) {
  StartServer();
  EXPECT_EQ(http::testing::HttpGet(port(), "/debug/kv_cache_blocks")->status, 404);
  const auto metrics = http::testing::HttpGet(port(), "/metrics");
  EXPECT_THAT(metrics->body, Not(HasSubstr("vllm:")));
  EXPECT_EQ(Metric("pagoda_kv_events_published_total{"), 0);
}

}  // namespace
}  // namespace pagoda::server::testing
