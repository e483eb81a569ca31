#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "common/ids.h"

namespace pagoda::server {

// The client-visible request ids (strings) of unfinished Generate requests and their engine
// ids, for ALREADY_EXISTS checks and the Abort RPC.
//
// An entry lives from Reserve (before the request is submitted) to Release (when the engine
// completed it, or its submission failed). Because the engine may complete a request before
// its submitter gets to Bind, every reservation carries a ticket: Bind and Release act only on
// the entry their own Reserve created.
//
// Thread-safe. Never calls out while holding its lock.
class RequestRegistry {
 public:
  // Identifies one reservation.
  using Ticket = uint64_t;

  // Reserves `id`; AlreadyExists when an unfinished request holds it.
  absl::StatusOr<Ticket> Reserve(const std::string& id);

  // Records the engine id of a reserved request. Returns true when an Abort named the request
  // in between (the caller must then abort it in the engine itself). No-op (false) when the
  // reservation was already released.
  bool Bind(const std::string& id, Ticket ticket, RequestId engine_id);

  // Ends the reservation. No-op when `ticket` is not the current one for `id`.
  void Release(const std::string& id, Ticket ticket);

  // Looks up the given ids: appends the engine ids of bound ones to `to_abort`, marks reserved
  // but not yet bound ones so that Bind reports them, and returns how many ids were found.
  int MarkForAbort(absl::Span<const std::string> ids, std::vector<RequestId>& to_abort);

  int size() const;

 private:
  struct Entry {
    Ticket ticket = 0;
    std::optional<RequestId> engine_id;
    bool abort_requested = false;
  };

  mutable absl::Mutex mu_;
  Ticket next_ticket_ ABSL_GUARDED_BY(mu_) = 1;
  absl::flat_hash_map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pagoda::server
