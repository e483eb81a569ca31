#include "kv_events/kv_events_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace pagoda::kv_events {
namespace {

using ::testing::HasSubstr;

TEST(KvEventsConfigTest, DefaultsAreVllms) {
  const absl::StatusOr<KvEventsConfig> config = ParseKvEventsConfig("{}");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_FALSE(config->enable_kv_cache_events);
  EXPECT_EQ(config->publisher, "null");
  EXPECT_EQ(config->endpoint, "tcp://*:5557");
  EXPECT_FALSE(config->replay_endpoint.has_value());
  EXPECT_EQ(config->buffer_steps, 10000);
  EXPECT_EQ(config->hwm, 100000);
  EXPECT_EQ(config->max_queue_size, 100000);
  EXPECT_EQ(config->topic, "");
  EXPECT_FALSE(config->publishes());
}

TEST(KvEventsConfigTest, EnablingChoosesZmqUnlessNullIsAskedFor) {
  absl::StatusOr<KvEventsConfig> config = ParseKvEventsConfig(R"({"enable_kv_cache_events":true})");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->publisher, "zmq");
  EXPECT_TRUE(config->publishes());

  config = ParseKvEventsConfig(R"({"enable_kv_cache_events":true,"publisher":"null"})");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_FALSE(config->publishes());

  config = ParseKvEventsConfig(R"({"publisher":"zmq"})");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_FALSE(config->publishes()) << "events stay off until enable_kv_cache_events";
}

TEST(KvEventsConfigTest, ReadsEveryField) {
  const absl::StatusOr<KvEventsConfig> config = ParseKvEventsConfig(R"({
      "enable_kv_cache_events": true, "publisher": "zmq", "endpoint": "tcp://10.0.0.1:5557",
      "replay_endpoint": "tcp://*:5558", "buffer_steps": 7, "hwm": 0, "max_queue_size": 3,
      "topic": "kv@10.0.0.2:8000@llama"})");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->endpoint, "tcp://10.0.0.1:5557");
  EXPECT_EQ(config->replay_endpoint, "tcp://*:5558");
  EXPECT_EQ(config->buffer_steps, 7);
  EXPECT_EQ(config->hwm, 0);
  EXPECT_EQ(config->max_queue_size, 3);
  EXPECT_EQ(config->topic, "kv@10.0.0.2:8000@llama");
  EXPECT_TRUE(ParseKvEventsConfig(R"({"replay_endpoint": null})").ok());
}

TEST(KvEventsConfigTest, BadInputNamesTheField) {
  const struct {
    const char* json;
    const char* message;
  } cases[] = {
      {"", "not valid JSON"},
      {"{", "not valid JSON"},
      {"[]", "JSON object"},
      {"true", "JSON object"},
      {R"({"enable_kv_cache_events": 1})", "'enable_kv_cache_events': must be true or false"},
      {R"({"publisher": "kafka"})", "'publisher': must be \"zmq\" or \"null\""},
      {R"({"publisher": 3})", "'publisher': must be a string"},
      {R"({"endpoint": "localhost:5557"})", "'endpoint': must be a ZeroMQ address"},
      {R"({"endpoint": "tcp://"})", "'endpoint': must be a ZeroMQ address"},
      {R"({"replay_endpoint": "udp://x"})", "'replay_endpoint': must be a ZeroMQ address"},
      {R"({"replay_endpoint": "tcp://*:5557"})", "'replay_endpoint': must differ"},
      {R"({"buffer_steps": 0})", "'buffer_steps': must be in [1, 1000000], got 0"},
      {R"({"buffer_steps": 1.5})", "'buffer_steps': must be an integer"},
      {R"({"buffer_steps": 18446744073709551615})", "'buffer_steps': must be in"},
      {R"({"hwm": -1})", "'hwm': must be in [0, "},
      {R"({"max_queue_size": "10"})", "'max_queue_size': must be an integer"},
      {R"({"topic": ["kv"]})", "'topic': must be a string"},
      {R"({"data_parallel_rank": 1})", "unknown field 'data_parallel_rank'"},
  };
  for (const auto& c : cases) {
    const absl::StatusOr<KvEventsConfig> config = ParseKvEventsConfig(c.json);
    ASSERT_FALSE(config.ok()) << c.json;
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(config.status().message(), HasSubstr(c.message)) << c.json;
  }
  EXPECT_FALSE(
      ParseKvEventsConfig(std::string(R"({"topic":")") + std::string(2000, 'a') + "\"}").ok());
}

TEST(KvEventsConfigTest, BindsLikeVllm) {
  EXPECT_TRUE(BindsEndpoint("tcp://*:5557"));
  EXPECT_TRUE(BindsEndpoint("tcp://[::]:5557"));
  EXPECT_TRUE(BindsEndpoint("ipc:///tmp/kv"));
  EXPECT_TRUE(BindsEndpoint("inproc://kv"));
  EXPECT_FALSE(BindsEndpoint("tcp://10.0.0.1:5557"));
  EXPECT_FALSE(BindsEndpoint("tcp://indexer.svc:5557"));
}

}  // namespace
}  // namespace pagoda::kv_events
