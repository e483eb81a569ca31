#include "kv_events/kv_events_config.h"

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/utf8.h"

namespace pagoda::kv_events {
namespace {

using Json = nlohmann::json;

constexpr int kMaxBufferSteps = 1'000'000;
constexpr int kMaxQueueSize = 10'000'000;
constexpr int kMaxHwm = 1'000'000'000;
constexpr size_t kMaxStringBytes = 1024;

absl::Status FieldError(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("field '", field, "': ", what));
}

absl::Status ReadInt(const Json& value, absl::string_view field, int min, int max, int& out) {
  if (!value.is_number_integer()) return FieldError(field, "must be an integer");
  // Both integer kinds, compared without overflow.
  if (value.is_number_unsigned()) {
    const uint64_t v = value.get<uint64_t>();
    if (v > static_cast<uint64_t>(max) || (min > 0 && v < static_cast<uint64_t>(min))) {
      return FieldError(field, absl::StrCat("must be in [", min, ", ", max, "], got ", v));
    }
    out = static_cast<int>(v);
    return absl::OkStatus();
  }
  const int64_t v = value.get<int64_t>();
  if (v < min || v > max) {
    return FieldError(field, absl::StrCat("must be in [", min, ", ", max, "], got ", v));
  }
  out = static_cast<int>(v);
  return absl::OkStatus();
}

absl::Status ReadString(const Json& value, absl::string_view field, std::string& out) {
  if (!value.is_string()) return FieldError(field, "must be a string");
  out = value.get<std::string>();
  if (out.size() > kMaxStringBytes) {
    return FieldError(field, absl::StrCat("at most ", kMaxStringBytes, " bytes"));
  }
  if (!common::IsValidUtf8(out)) return FieldError(field, "must be valid UTF-8");
  return absl::OkStatus();
}

absl::Status CheckEndpoint(absl::string_view field, absl::string_view endpoint) {
  for (absl::string_view scheme : {"tcp://", "ipc://", "inproc://"}) {
    if (absl::StartsWith(endpoint, scheme) && endpoint.size() > scheme.size()) {
      return absl::OkStatus();
    }
  }
  return FieldError(field, absl::StrCat("must be a ZeroMQ address (tcp://HOST:PORT, ipc://PATH "
                                        "or inproc://NAME), got '",
                                        endpoint, "'"));
}

absl::Status ReadField(const std::string& key, const Json& value, KvEventsConfig& config,
                       bool& publisher_set) {
  if (key == "enable_kv_cache_events") {
    if (!value.is_boolean()) return FieldError(key, "must be true or false");
    config.enable_kv_cache_events = value.get<bool>();
  } else if (key == "publisher") {
    if (value.is_null()) return absl::OkStatus();
    PAGODA_RETURN_IF_ERROR(ReadString(value, key, config.publisher));
    if (config.publisher != "zmq" && config.publisher != "null") {
      return FieldError(
          key, absl::StrCat("must be \"zmq\" or \"null\", got \"", config.publisher, "\""));
    }
    publisher_set = true;
  } else if (key == "endpoint") {
    PAGODA_RETURN_IF_ERROR(ReadString(value, key, config.endpoint));
    PAGODA_RETURN_IF_ERROR(CheckEndpoint(key, config.endpoint));
  } else if (key == "replay_endpoint") {
    if (value.is_null()) {
      config.replay_endpoint.reset();
      return absl::OkStatus();
    }
    std::string endpoint;
    PAGODA_RETURN_IF_ERROR(ReadString(value, key, endpoint));
    PAGODA_RETURN_IF_ERROR(CheckEndpoint(key, endpoint));
    config.replay_endpoint = std::move(endpoint);
  } else if (key == "buffer_steps") {
    PAGODA_RETURN_IF_ERROR(ReadInt(value, key, 1, kMaxBufferSteps, config.buffer_steps));
  } else if (key == "hwm") {
    PAGODA_RETURN_IF_ERROR(ReadInt(value, key, 0, kMaxHwm, config.hwm));
  } else if (key == "max_queue_size") {
    PAGODA_RETURN_IF_ERROR(ReadInt(value, key, 1, kMaxQueueSize, config.max_queue_size));
  } else if (key == "topic") {
    PAGODA_RETURN_IF_ERROR(ReadString(value, key, config.topic));
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown field '", key,
                     "' (known: enable_kv_cache_events, publisher, endpoint, replay_endpoint, "
                     "buffer_steps, hwm, max_queue_size, topic)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<KvEventsConfig> ParseKvEventsConfig(absl::string_view json) {
  // Depth and size are bounded by the flag itself (a command-line argument); the parser does
  // not throw (allow_exceptions = false) and the object must be flat.
  const Json parsed = Json::parse(json.begin(), json.end(), nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return absl::InvalidArgumentError("not valid JSON");
  if (!parsed.is_object()) return absl::InvalidArgumentError("must be a JSON object");
  KvEventsConfig config;
  bool publisher_set = false;
  for (const auto& [key, value] : parsed.items()) {
    PAGODA_RETURN_IF_ERROR(ReadField(key, value, config, publisher_set));
  }
  if (!publisher_set) config.publisher = config.enable_kv_cache_events ? "zmq" : "null";
  if (config.replay_endpoint.has_value() && *config.replay_endpoint == config.endpoint) {
    return FieldError("replay_endpoint", "must differ from endpoint");
  }
  return config;
}

bool BindsEndpoint(absl::string_view endpoint) {
  return absl::StrContains(endpoint, "*") || absl::StrContains(endpoint, "::") ||
         absl::StartsWith(endpoint, "ipc://") || absl::StartsWith(endpoint, "inproc://");
}

}  // namespace pagoda::kv_events
