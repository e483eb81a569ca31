// Fuzz target: --kv-events-config's parser on arbitrary bytes. It must return a status (never
// abort, hang or throw), and whatever it accepts must satisfy the documented bounds.

#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "common/check.h"
#include "kv_events/kv_events_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using pagoda::kv_events::KvEventsConfig;
  const absl::StatusOr<KvEventsConfig> config = pagoda::kv_events::ParseKvEventsConfig(
      absl::string_view(reinterpret_cast<const char*>(data), size));
  if (!config.ok()) {
    PAGODA_CHECK(!config.status().message().empty());
    return 0;
  }
  PAGODA_CHECK(config->publisher == "zmq" || config->publisher == "null");
  PAGODA_CHECK_GE(config->buffer_steps, 1);
  PAGODA_CHECK_GE(config->hwm, 0);
  PAGODA_CHECK_GE(config->max_queue_size, 1);
  PAGODA_CHECK_LE(config->topic.size(), 1024u);
  PAGODA_CHECK(!config->replay_endpoint.has_value() ||
               *config->replay_endpoint != config->endpoint);
  return 0;
}
