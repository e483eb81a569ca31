#include "server/server_flags.h"

#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pagoda::server {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

absl::StatusOr<ParsedFlags> Parse(std::vector<std::string> args) { return ParseServerFlags(args); }

std::string Error(std::vector<std::string> args) {
  const absl::StatusOr<ParsedFlags> parsed = Parse(std::move(args));
  EXPECT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(parsed.status().message());
}

TEST(ServerFlagsTest, Defaults) {
  const absl::StatusOr<ParsedFlags> parsed = Parse({});
  ASSERT_TRUE(parsed.ok());
  const ServerOptions& o = parsed->options;
  EXPECT_FALSE(parsed->help);
  EXPECT_EQ(o.host, "127.0.0.1");
  EXPECT_EQ(o.port, 50051);
  EXPECT_EQ(o.metrics_port, 9400);
  EXPECT_EQ(o.drain_timeout, absl::Seconds(30));
  EXPECT_EQ(o.engine.model, "");
  EXPECT_EQ(o.engine.device, "cpu");
  EXPECT_TRUE(o.engine.enable_prefix_caching);
  EXPECT_EQ(o.engine.block_size, engine::EngineConfig().block_size);
}

TEST(ServerFlagsTest, EveryFlagInBothSpellings) {
  const absl::StatusOr<ParsedFlags> parsed = Parse({"--model",
                                                    "dummy:llama-110m",
                                                    "--host=0.0.0.0",
                                                    "--port",
                                                    "0",
                                                    "--metrics-port=9500",
                                                    "--device",
                                                    "cuda",
                                                    "--block-size=32",
                                                    "--kv-cache-memory",
                                                    "512MiB",
                                                    "--kv-cache-dtype=f32",
                                                    "--weight-dtype",
                                                    "bf16",
                                                    "--gpu-memory-utilization=0.5",
                                                    "--max-num-seqs",
                                                    "8",
                                                    "--max_num_batched_tokens=512",
                                                    "--max-model-len",
                                                    "1024",
                                                    "--max-waiting-requests=0",
                                                    "--new-token-ratio=0.7",
                                                    "--min-new-token-ratio",
                                                    "0.05",
                                                    "--no-enable-prefix-caching",
                                                    "--enforce-eager",
                                                    "--threads",
                                                    "2",
                                                    "--seed=7",
                                                    "--drain-timeout",
                                                    "2.5"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const ServerOptions& o = parsed->options;
  EXPECT_EQ(o.engine.model, "dummy:llama-110m");
  EXPECT_EQ(o.host, "0.0.0.0");
  EXPECT_EQ(o.port, 0);
  EXPECT_EQ(o.metrics_port, 9500);
  EXPECT_EQ(o.engine.device, "cuda");
  EXPECT_EQ(o.engine.block_size, 32);
  EXPECT_EQ(o.engine.kv_cache_memory_bytes, int64_t{512} << 20);
  EXPECT_EQ(o.engine.kv_cache_dtype, model::DType::kF32);
  EXPECT_EQ(o.engine.weight_dtype, model::DType::kBF16);
  EXPECT_EQ(o.engine.gpu_memory_utilization, 0.5);
  EXPECT_EQ(o.engine.new_token_ratio, 0.7);
  EXPECT_EQ(o.engine.min_new_token_ratio, 0.05);
  EXPECT_EQ(o.engine.max_num_seqs, 8);
  EXPECT_EQ(o.engine.max_num_batched_tokens, 512);
  EXPECT_EQ(o.engine.max_model_len, 1024);
  EXPECT_EQ(o.engine.max_waiting_requests, 0);
  EXPECT_FALSE(o.engine.enable_prefix_caching);
  EXPECT_TRUE(o.engine.enforce_eager);
  EXPECT_EQ(o.engine.num_threads, 2);
  EXPECT_EQ(o.engine.seed, 7u);
  EXPECT_EQ(o.drain_timeout, absl::Milliseconds(2500));
}

TEST(ServerFlagsTest, BooleansAndSpecialValues) {
  EXPECT_TRUE(Parse({"--no-enable-prefix-caching", "--enable-prefix-caching"})
                  ->options.engine.enable_prefix_caching);
  EXPECT_FALSE(Parse({"--enable-prefix-caching=false"})->options.engine.enable_prefix_caching);
  EXPECT_FALSE(Parse({"--metrics-port=off"})->options.metrics_port.has_value());
  EXPECT_EQ(Parse({"--device=cuda:3"})->options.engine.device, "cuda:3");
  EXPECT_EQ(Parse({"--kv-cache-dtype=f16"})->options.engine.kv_cache_dtype, model::DType::kF16);
  EXPECT_EQ(Parse({"--kv-cache-dtype=int8"})->options.engine.kv_cache_dtype, model::DType::kInt8);
  EXPECT_EQ(Parse({"--kv-cache-dtype=fp8"})->options.engine.kv_cache_dtype, model::DType::kFp8E4M3);
  EXPECT_EQ(Parse({"--kv-cache-dtype=FP8_E4M3"})->options.engine.kv_cache_dtype,
            model::DType::kFp8E4M3);
  EXPECT_EQ(Parse({"--kv-cache-dtype=fp8_e5m2"})->options.engine.kv_cache_dtype,
            model::DType::kFp8E5M2);
  const auto streaming = Parse({"--attention-sinks=4", "--streaming-window", "1024"});
  ASSERT_TRUE(streaming.ok()) << streaming.status();
  EXPECT_EQ(streaming->options.engine.attention_sinks, 4);
  EXPECT_EQ(streaming->options.engine.streaming_window, 1024);
  EXPECT_THAT(Error({"--streaming-window=-1"}), StartsWith("--streaming-window: "));
  EXPECT_FALSE(Parse({})->options.engine.enforce_eager);
  EXPECT_TRUE(Parse({})->options.engine.repack_weights);
  EXPECT_FALSE(Parse({"--no-repack-weights"})->options.engine.repack_weights);
  EXPECT_THAT(Error({"--repack-weights=maybe"}), StartsWith("--repack-weights: "));
  EXPECT_TRUE(Parse({"--help"})->help);
  EXPECT_TRUE(Parse({"-h"})->help);
}

TEST(ServerFlagsTest, ErrorsNameTheFlag) {
  EXPECT_THAT(Error({"--nope"}), StartsWith("unknown flag '--nope'"));
  EXPECT_THAT(Error({"--port"}), StartsWith("--port: needs a value"));
  EXPECT_THAT(Error({"--port", "65536"}), StartsWith("--port: must be an integer in [0, 65535]"));
  EXPECT_THAT(Error({"--max-num-seqs=0"}), StartsWith("--max-num-seqs: "));
  EXPECT_THAT(Error({"--block-size=abc"}), StartsWith("--block-size: "));
  EXPECT_THAT(Error({"--device=tpu"}), StartsWith("--device: must be cpu, cuda or cuda:N"));
  EXPECT_THAT(Error({"--device=cuda:x"}), StartsWith("--device: "));
  EXPECT_THAT(Error({"--kv-cache-memory=lots"}), StartsWith("--kv-cache-memory: "));
  EXPECT_THAT(Error({"--kv-cache-dtype=f8"}), StartsWith("--kv-cache-dtype: "));
  EXPECT_THAT(Error({"--gpu-memory-utilization=1.5"}), StartsWith("--gpu-memory-utilization"));
  EXPECT_THAT(Error({"--drain-timeout=-1"}), StartsWith("--drain-timeout: "));
  EXPECT_THAT(Error({"--new-token-ratio=1.5"}), StartsWith("--new-token-ratio: "));
  EXPECT_THAT(Error({"--min-new-token-ratio=-0.1"}), StartsWith("--min-new-token-ratio: "));
  EXPECT_THAT(Error({"--enable-prefix-caching=maybe"}), StartsWith("--enable-prefix-caching: "));
  EXPECT_THAT(Error({"--no-enable-prefix-caching=true"}), HasSubstr("takes no value"));
  EXPECT_THAT(Error({"--no-port"}), StartsWith("unknown flag '--no-port'"));
  EXPECT_THAT(Error({"model.gguf"}), StartsWith("unexpected argument 'model.gguf'"));
}

TEST(ServerFlagsTest, KvEventsMetricsCompatAndDebugEndpoints) {
  const absl::StatusOr<ParsedFlags> none = Parse({});
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->options.kv_events.publishes());
  EXPECT_FALSE(none->options.metrics_compat_vllm);
  EXPECT_FALSE(none->options.debug_endpoints);
  const absl::StatusOr<ParsedFlags> on =
      Parse({"--kv-events-config",
             R"({"enable_kv_cache_events":true,"endpoint":"tcp://*:6000","topic":"kv@p:8000@m"})",
             "--metrics-compat=vllm", "--debug-endpoints"});
  ASSERT_TRUE(on.ok()) << on.status();
  EXPECT_TRUE(on->options.kv_events.publishes());
  EXPECT_EQ(on->options.kv_events.endpoint, "tcp://*:6000");
  EXPECT_EQ(on->options.kv_events.topic, "kv@p:8000@m");
  EXPECT_TRUE(on->options.metrics_compat_vllm);
  EXPECT_TRUE(on->options.debug_endpoints);
  EXPECT_FALSE(
      Parse({"--metrics-compat=vllm", "--metrics-compat=none"})->options.metrics_compat_vllm);
  EXPECT_THAT(Error({"--kv-events-config={\"hwm\":-1}"}),
              StartsWith("--kv-events-config: field 'hwm': must be in [0, "));
  EXPECT_THAT(Error({"--kv-events-config", "{\"nope\":1}"}),
              StartsWith("--kv-events-config: unknown field 'nope'"));
  EXPECT_THAT(Error({"--kv-events-config", "yes"}),
              StartsWith("--kv-events-config: not valid JSON"));
  EXPECT_THAT(Error({"--metrics-compat=sglang"}),
              StartsWith("--metrics-compat: must be vllm or none"));
}

TEST(ServerFlagsTest, TlsAndAuthFlags) {
  const absl::StatusOr<ParsedFlags> none = Parse({});
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->options.tls_cert_file.has_value());
  EXPECT_FALSE(none->options.tls_key_file.has_value());
  EXPECT_FALSE(none->options.tls_client_ca_file.has_value());
  EXPECT_FALSE(none->options.auth_token_file.has_value());

  const absl::StatusOr<ParsedFlags> all =
      Parse({"--tls-cert-file=/c.pem", "--tls_key_file", "/k.pem", "--tls-client-ca-file=/ca.pem",
             "--auth-token-file", "/tokens"});
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->options.tls_cert_file, "/c.pem");
  EXPECT_EQ(all->options.tls_key_file, "/k.pem");
  EXPECT_EQ(all->options.tls_client_ca_file, "/ca.pem");
  EXPECT_EQ(all->options.auth_token_file, "/tokens");

  EXPECT_THAT(Error({"--tls-cert-file=/c.pem"}),
              StartsWith("--tls-cert-file: needs --tls-key-file"));
  EXPECT_THAT(Error({"--tls-key-file=/k.pem"}),
              StartsWith("--tls-key-file: needs --tls-cert-file"));
  EXPECT_THAT(Error({"--tls-client-ca-file=/ca.pem"}), StartsWith("--tls-client-ca-file: needs"));
  EXPECT_THAT(Error({"--auth-token-file="}), StartsWith("--auth-token-file: "));
  const absl::StatusOr<ParsedFlags> keys =
      Parse({"--api-key", "sk-1", "--api-key-file=/keys", "--served-model-name", "my-model",
             "--chat-template", "{{ messages }}"});
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ(keys->options.api_key, "sk-1");
  EXPECT_EQ(keys->options.auth_token_file, "/keys");
  EXPECT_EQ(keys->options.engine.served_model_name, "my-model");
  EXPECT_EQ(keys->options.chat_template, "{{ messages }}");
  EXPECT_THAT(Error({"--served-model-name="}), StartsWith("--served-model-name: "));
  EXPECT_THAT(Error({"--chat-template="}), StartsWith("--chat-template: "));
  EXPECT_THAT(Error({"--auth-token-file"}), StartsWith("--auth-token-file: needs a value"));
}

TEST(ServerFlagsTest, LoopbackHosts) {
  for (const char* host : {"127.0.0.1", "127.1.2.3", "localhost", "LocalHost", "::1", "[::1]"}) {
    EXPECT_TRUE(IsLoopbackHost(host)) << host;
  }
  for (const char* host : {"0.0.0.0", "::", "[::]", "10.0.0.1", "128.0.0.1", "127.0.0",
                           "127.0.0.256", "example.com", "localhost.example.com", ""}) {
    EXPECT_FALSE(IsLoopbackHost(host)) << host;
  }
}

TEST(ServerFlagsTest, UsageExplainsEveryFlag) {
  const std::string usage = ServerUsage();
  for (const char* flag : {"--model",
                           "--host",
                           "--port",
                           "--metrics-port",
                           "--device",
                           "--block-size",
                           "--kv-cache-memory",
                           "--kv-cache-dtype",
                           "--weight-dtype",
                           "--gpu-memory-utilization",
                           "--max-num-seqs",
                           "--max-num-batched-tokens",
                           "--max-model-len",
                           "--max-waiting-requests",
                           "--enable-prefix-caching, --no-enable-prefix-caching",
                           "--enforce-eager, --no-enforce-eager",
                           "--repack-weights, --no-repack-weights",
                           "--threads",
                           "--seed",
                           "--drain-timeout",
                           "--help"}) {
    EXPECT_THAT(usage, HasSubstr(flag));
  }
  for (absl::string_view line : absl::StrSplit(usage, '\n')) {
    EXPECT_LE(line.size(), 100u) << line;
  }
}

TEST(ByteSizeTest, UnitsAndErrors) {
  EXPECT_EQ(*ParseByteSize("1024"), 1024);
  EXPECT_EQ(*ParseByteSize("100B"), 100);
  EXPECT_EQ(*ParseByteSize("1KiB"), 1024);
  EXPECT_EQ(*ParseByteSize("1.5KiB"), 1536);
  EXPECT_EQ(*ParseByteSize("512MiB"), int64_t{512} << 20);
  EXPECT_EQ(*ParseByteSize("2GiB"), int64_t{2} << 30);
  EXPECT_EQ(*ParseByteSize("2Gi"), int64_t{2} << 30);
  EXPECT_EQ(*ParseByteSize("1TiB"), int64_t{1} << 40);
  EXPECT_EQ(*ParseByteSize("512MB"), 512000000);
  EXPECT_EQ(*ParseByteSize("2G"), 2000000000);
  EXPECT_EQ(*ParseByteSize("4k"), 4000);
  EXPECT_EQ(*ParseByteSize("3 MiB"), 3 << 20);
  for (const char* bad : {"", "MiB", "-1", "1XB", "1 KiBs", "1e3", "1.2.3", "99999999TiB"}) {
    EXPECT_FALSE(ParseByteSize(bad).ok()) << bad;
  }
  EXPECT_EQ(FormatByteSize(100), "100 B");
  EXPECT_EQ(FormatByteSize(int64_t{2} << 30), "2.00 GiB");
  EXPECT_EQ(FormatByteSize(1536), "1.50 KiB");
}

}  // namespace
}  // namespace pagoda::server
