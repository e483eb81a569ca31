#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pagoda::kv_events {

// --kv-events-config: vLLM's KVEventsConfig (docs/kv_events.md), field for field.
struct KvEventsConfig {
  bool enable_kv_cache_events = false;
  // "zmq" or "null". Unset in the JSON: "zmq" when events are enabled, else "null" (vLLM).
  std::string publisher = "null";
  // The PUB socket: bound when the address contains "*" or "::" or is ipc:// or inproc://,
  // otherwise connected (to a subscriber that binds), as vLLM decides.
  std::string endpoint = "tcp://*:5557";
  // The ROUTER socket serving replays (always bound). Unset: no replay.
  std::optional<std::string> replay_endpoint;
  int buffer_steps = 10000;     // batches kept for replay, >= 1
  int hwm = 100000;             // the PUB socket's send high-water mark (0: none)
  int max_queue_size = 100000;  // batches waiting for the publisher thread, >= 1
  // Empty: the server's default, kv@<host:port>@<served model name>.
  std::string topic;

  // Events are recorded and sent.
  bool publishes() const { return enable_kv_cache_events && publisher == "zmq"; }
};

// Parses the JSON object of --kv-events-config. Unknown fields, wrong types and out-of-range
// values are errors that name the field; nothing here aborts, whatever the input.
absl::StatusOr<KvEventsConfig> ParseKvEventsConfig(absl::string_view json);

// Whether the PUB socket binds `endpoint` (else it connects), by vLLM's rule above.
bool BindsEndpoint(absl::string_view endpoint);

}  // namespace pagoda::kv_events
