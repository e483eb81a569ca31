#include "engine/offline.h"

#include <utility>

#include "common/check.h"
#include "common/status_macros.h"

namespace pagoda::engine {

absl::StatusOr<std::vector<RequestCompletion>> GenerateOffline(
    EngineCore& core, std::vector<EngineRequest> requests) {
  for (const EngineRequest& request : requests)
    PAGODA_RETURN_IF_ERROR(core.ValidateRequest(request));
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  sinks.reserve(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    sinks.push_back(std::make_shared<CollectingSink>());
    PAGODA_RETURN_IF_ERROR(core.AddRequest(RequestId(i + 1), std::move(requests[i]), sinks.back()));
  }
  while (core.has_requests()) PAGODA_RETURN_IF_ERROR(core.Step());
  std::vector<RequestCompletion> completions;
  completions.reserve(sinks.size());
  for (const auto& sink : sinks) {
    PAGODA_CHECK_EQ(sink->num_completions, 1);
    completions.push_back(std::move(*sink->completion));
  }
  return completions;
}

}  // namespace pagoda::engine
