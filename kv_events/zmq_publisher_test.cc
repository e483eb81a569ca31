#include "kv_events/zmq_publisher.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <iterator>

#include "absl/time/clock.h"
#include "kv_events/testing/msgpack_tree.h"

namespace pagoda::kv_events {
namespace {

using block_manager::KvCacheEvent;
using testing::DecodeMsgpack;
using ::testing::HasSubstr;
using testing::MsgNode;

constexpr int kTimeoutMs = 5000;

KvEventsConfig Config(std::string endpoint, std::optional<std::string> replay = std::nullopt) {
  KvEventsConfig config;
  config.enable_kv_cache_events = true;
  config.publisher = "zmq";
  config.endpoint = std::move(endpoint);
  config.replay_endpoint = std::move(replay);
  return config;
}

std::vector<KvCacheEvent> Removed(uint64_t hash) {
  return {{.kind = KvCacheEvent::Kind::kBlockRemoved, .block_hashes = {hash}}};
}

uint64_t SeqOf(const zmq::message_t& frame) {
  EXPECT_EQ(frame.size(), 8u);
  uint64_t v = 0;
  for (size_t i = 0; i < frame.size(); ++i) {
    v = (v << 8) | static_cast<const unsigned char*>(frame.data())[i];
  }
  return v;
}

// The hash of a one-event BlockRemoved batch, or nullopt for another payload.
std::optional<uint64_t> RemovedHash(const zmq::message_t& payload) {
  const std::optional<MsgNode> batch = DecodeMsgpack(payload.to_string());
  if (!batch.has_value() || batch->items.size() != 3 || batch->items[1].items.size() != 1) {
    return std::nullopt;
  }
  const MsgNode& event = batch->items[1].items[0];
  if (event.Find("type") == nullptr || event.Find("type")->str != "BlockRemoved") {
    return std::nullopt;
  }
  return event.Find("block_hashes")->items[0].uint_value;
}

std::vector<zmq::message_t> Receive(zmq::socket_t& socket) {
  std::vector<zmq::message_t> frames;
  zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
  if (zmq::poll(&item, 1, std::chrono::milliseconds(kTimeoutMs)) == 0) return frames;
  (void)zmq::recv_multipart(socket, std::back_inserter(frames));
  return frames;
}

// Asks `replay_endpoint` for the batches from `start`; returns (seq, payload) until the end
// marker (excluded).
std::vector<std::pair<uint64_t, zmq::message_t>> Replay(zmq::context_t& context,
                                                        const std::string& replay_endpoint,
                                                        uint64_t start) {
  zmq::socket_t dealer(context, zmq::socket_type::dealer);
  dealer.set(zmq::sockopt::linger, 0);
  dealer.connect(replay_endpoint);
  std::array<char, 8> seq;
  for (int i = 7; i >= 0; --i, start >>= 8) seq[i] = static_cast<char>(start & 0xff);
  dealer.send(zmq::const_buffer(), zmq::send_flags::sndmore);
  dealer.send(zmq::buffer(seq), zmq::send_flags::none);
  std::vector<std::pair<uint64_t, zmq::message_t>> batches;
  while (true) {
    std::vector<zmq::message_t> frames = Receive(dealer);
    if (frames.size() != 3) {
      ADD_FAILURE() << "replay answered " << frames.size() << " frames";
      return batches;
    }
    EXPECT_EQ(frames[0].size(), 0u);
    if (SeqOf(frames[1]) == ~uint64_t{0}) {  // the end marker, -1
      EXPECT_EQ(frames[2].size(), 0u);
      return batches;
    }
    batches.emplace_back(SeqOf(frames[1]), std::move(frames[2]));
  }
}

void WaitPublished(const ZmqEventPublisher& publisher, int64_t n) {
  const absl::Time deadline = absl::Now() + absl::Milliseconds(kTimeoutMs);
  while (publisher.stats().batches_published < n && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_GE(publisher.stats().batches_published, n);
}

TEST(ZmqEventPublisherTest, SendsTopicSequenceAndPayloadAndReplaysFromAnySequence) {
  absl::StatusOr<std::unique_ptr<ZmqEventPublisher>> publisher = ZmqEventPublisher::Create(
      {.config = Config("tcp://127.0.0.1:*", "tcp://127.0.0.1:*"), .topic = "kv@h:8000@m"});
  ASSERT_TRUE(publisher.ok()) << publisher.status();
  ZmqEventPublisher& pub = **publisher;
  zmq::context_t context;
  zmq::socket_t sub(context, zmq::socket_type::sub);
  sub.set(zmq::sockopt::subscribe, "kv@");
  sub.connect(pub.endpoint());

  // Batches sent before the subscription reached the publisher are lost to this subscriber
  // (ZeroMQ's slow joiner); publish until one arrives.
  uint64_t hash = 100;
  std::vector<zmq::message_t> frames;
  for (int attempt = 0; attempt < 50 && frames.empty(); ++attempt) {
    ASSERT_TRUE(pub.Publish(Removed(hash++)));
    zmq::pollitem_t item{sub.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, std::chrono::milliseconds(100)) > 0) {
      (void)zmq::recv_multipart(sub, std::back_inserter(frames));
    }
  }
  ASSERT_EQ(frames.size(), 3u);
  EXPECT_EQ(frames[0].to_string(), "kv@h:8000@m");
  if (SeqOf(frames[1]) == 0) {
    // The initial AllBlocksCleared is usually sent before the subscription reaches the
    // publisher, but its send can race it and arrive; then the probe that answered comes next.
    const std::optional<MsgNode> cleared = DecodeMsgpack(frames[2].to_string());
    ASSERT_TRUE(cleared.has_value());
    EXPECT_EQ(cleared->items[1].items[0].Find("type")->str, "AllBlocksCleared");
    frames = Receive(sub);
    ASSERT_EQ(frames.size(), 3u);
  }
  const uint64_t first_seq = SeqOf(frames[1]);
  EXPECT_GE(first_seq, 1u) << "sequence 0 is the initial AllBlocksCleared";
  EXPECT_EQ(RemovedHash(frames[2]), 100 + first_seq - 1);

  // Probes published while that one was on its way arrive next, in order.
  uint64_t last_seq = first_seq;
  const uint64_t num_probes = hash - 100;
  while (last_seq < num_probes) {
    frames = Receive(sub);
    ASSERT_EQ(frames.size(), 3u);
    ASSERT_EQ(SeqOf(frames[1]), ++last_seq);
  }
  // Live batches follow with consecutive sequence numbers.
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(pub.Publish(Removed(1000 + i)));
  for (int i = 0; i < 5; ++i) {
    frames = Receive(sub);
    ASSERT_EQ(frames.size(), 3u);
    EXPECT_EQ(SeqOf(frames[1]), last_seq + 1 + i);
    EXPECT_EQ(RemovedHash(frames[2]), 1000u + i);
  }

  // Replay from 0: the initial AllBlocksCleared, then every batch, in order.
  const auto replayed = Replay(context, *pub.replay_endpoint(), 0);
  ASSERT_EQ(replayed.size(), 1 + num_probes + 5);
  const std::optional<MsgNode> first = DecodeMsgpack(replayed[0].second.to_string());
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->items[1].items[0].Find("type")->str, "AllBlocksCleared");
  for (size_t i = 0; i < replayed.size(); ++i) EXPECT_EQ(replayed[i].first, i);
  EXPECT_EQ(RemovedHash(replayed.back().second), 1004u);
  // From the middle.
  const auto tail = Replay(context, *pub.replay_endpoint(), num_probes + 3);
  ASSERT_EQ(tail.size(), 3u);
  EXPECT_EQ(tail[0].first, num_probes + 3);
  EXPECT_EQ(RemovedHash(tail[0].second), 1002u);
  EXPECT_GE(pub.stats().replay_requests, 2);
}

TEST(ZmqEventPublisherTest, ReplayKeepsOnlyTheLastBufferSteps) {
  KvEventsConfig config = Config("tcp://127.0.0.1:*", "tcp://127.0.0.1:*");
  config.buffer_steps = 3;
  absl::StatusOr<std::unique_ptr<ZmqEventPublisher>> publisher =
      ZmqEventPublisher::Create({.config = config, .topic = "kv@t@m"});
  ASSERT_TRUE(publisher.ok()) << publisher.status();
  for (int i = 0; i < 10; ++i) ASSERT_TRUE((*publisher)->Publish(Removed(i)));
  WaitPublished(**publisher, 11);
  zmq::context_t context;
  const auto replayed = Replay(context, *(*publisher)->replay_endpoint(), 0);
  ASSERT_EQ(replayed.size(), 3u);
  EXPECT_EQ(replayed[0].first, 8u);
  EXPECT_EQ(RemovedHash(replayed[2].second), 9u);
  // A malformed request is ignored, and the socket still serves.
  zmq::socket_t dealer(context, zmq::socket_type::dealer);
  dealer.set(zmq::sockopt::linger, 0);
  dealer.connect(*(*publisher)->replay_endpoint());
  dealer.send(zmq::str_buffer("garbage"), zmq::send_flags::none);
  EXPECT_EQ(Replay(context, *(*publisher)->replay_endpoint(), 10).size(), 1u);
}

TEST(ZmqEventPublisherTest, FullQueueDropsAndCounts) {
  KvEventsConfig config = Config("tcp://127.0.0.1:*");
  config.max_queue_size = 2;  // the initial AllBlocksCleared takes one place
  absl::StatusOr<std::unique_ptr<ZmqEventPublisher>> publisher =
      ZmqEventPublisher::Create({.config = config, .topic = "kv@t@m", .start_thread = false});
  ASSERT_TRUE(publisher.ok()) << publisher.status();
  EXPECT_TRUE((*publisher)->Publish(Removed(1)));
  EXPECT_FALSE((*publisher)->Publish(Removed(2)));
  EXPECT_FALSE((*publisher)->Publish(Removed(3)));
  EXPECT_TRUE((*publisher)->Publish({})) << "an empty batch is not sent and never dropped";
  EXPECT_EQ((*publisher)->stats().batches_dropped, 2);
  (*publisher)->StartForTesting();
  WaitPublished(**publisher, 2);
  EXPECT_TRUE((*publisher)->Publish(Removed(4))) << "room again once the thread drained it";
}

TEST(ZmqEventPublisherTest, ConnectsToABoundSubscriber) {
  zmq::context_t context;
  zmq::socket_t sub(context, zmq::socket_type::sub);
  sub.set(zmq::sockopt::subscribe, "");
  sub.bind("tcp://127.0.0.1:*");
  const std::string address = sub.get(zmq::sockopt::last_endpoint);
  absl::StatusOr<std::unique_ptr<ZmqEventPublisher>> publisher =
      ZmqEventPublisher::Create({.config = Config(address), .topic = "kv@t@m"});
  ASSERT_TRUE(publisher.ok()) << publisher.status();
  EXPECT_EQ((*publisher)->endpoint(), address);
  std::vector<zmq::message_t> frames;
  for (int attempt = 0; attempt < 50 && frames.empty(); ++attempt) {
    ASSERT_TRUE((*publisher)->Publish(Removed(5)));
    zmq::pollitem_t item{sub.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, std::chrono::milliseconds(100)) > 0) {
      (void)zmq::recv_multipart(sub, std::back_inserter(frames));
    }
  }
  ASSERT_EQ(frames.size(), 3u);
  EXPECT_EQ(frames[0].to_string(), "kv@t@m");
}

TEST(ZmqEventPublisherTest, ErrorsNameTheField) {
  absl::StatusOr<std::unique_ptr<ZmqEventPublisher>> first =
      ZmqEventPublisher::Create({.config = Config("tcp://127.0.0.1:*"), .topic = "t"});
  ASSERT_TRUE(first.ok()) << first.status();
  // A taken port: the replay socket always binds (a PUB address without "*" would connect).
  absl::StatusOr<std::unique_ptr<ZmqEventPublisher>> second = ZmqEventPublisher::Create(
      {.config = Config("tcp://127.0.0.1:*", (*first)->endpoint()), .topic = "t"});
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(second.status().message(), HasSubstr("replay_endpoint: cannot bind"));

  KvEventsConfig off = Config("tcp://127.0.0.1:*");
  off.enable_kv_cache_events = false;
  EXPECT_FALSE(ZmqEventPublisher::Create({.config = off, .topic = "t"}).ok());
  absl::StatusOr<std::unique_ptr<ZmqEventPublisher>> bad =
      ZmqEventPublisher::Create({.config = Config("tcp://[::]:*x"), .topic = "t"});
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("endpoint: cannot bind"));
}

}  // namespace
}  // namespace pagoda::kv_events
