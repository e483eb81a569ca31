#include "server/request_registry.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace pagoda::server {

absl::StatusOr<RequestRegistry::Ticket> RequestRegistry::Reserve(const std::string& id) {
  absl::MutexLock lock(&mu_);
  const Ticket ticket = next_ticket_;
  const auto [it, inserted] = entries_.try_emplace(id, Entry{.ticket = ticket});
  if (!inserted) {
    return absl::AlreadyExistsError(
        absl::StrCat("request_id: \"", id, "\" is the id of an unfinished request"));
  }
  ++next_ticket_;
  return ticket;
}

bool RequestRegistry::Bind(const std::string& id, Ticket ticket, RequestId engine_id) {
  absl::MutexLock lock(&mu_);
  const auto it = entries_.find(id);
  if (it == entries_.end() || it->second.ticket != ticket) return false;
  it->second.engine_id = engine_id;
  return it->second.abort_requested;
}

void RequestRegistry::Release(const std::string& id, Ticket ticket) {
  absl::MutexLock lock(&mu_);
  const auto it = entries_.find(id);
  if (it != entries_.end() && it->second.ticket == ticket) entries_.erase(it);
}

int RequestRegistry::MarkForAbort(absl::Span<const std::string> ids,
                                  std::vector<RequestId>& to_abort) {
  absl::MutexLock lock(&mu_);
  int found = 0;
  for (const std::string& id : ids) {
    const auto it = entries_.find(id);
    if (it == entries_.end()) continue;
    ++found;
    if (it->second.engine_id.has_value()) {
      to_abort.push_back(*it->second.engine_id);
    } else {
      it->second.abort_requested = true;
    }
  }
  return found;
}

int RequestRegistry::size() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(entries_.size());
}

}  // namespace pagoda::server
