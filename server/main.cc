// pagodad: the composition root. Parses the flags, starts the server, loads the model, and
// drains and exits 0 on SIGTERM or SIGINT.

#include <signal.h>
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "server/log.h"
#include "server/pagoda_server.h"
#include "server/server_flags.h"

namespace {

// Signals are handled by a dedicated thread with sigwait() rather than in a handler: the
// shutdown work (draining, joining threads) is not async-signal-safe. SIGTERM and SIGINT are
// blocked in every thread (the mask is inherited from main), so only sigwait() sees them.
sigset_t ShutdownSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

// Waits for the first signal and notifies `shutdown`; a second signal exits at once. Runs
// until the process exits (the thread is detached), so it uses only objects that are never
// destroyed.
void WaitForSignals(absl::Notification* shutdown) {
  const sigset_t set = ShutdownSignals();
  int count = 0;
  while (true) {
    int signal_number = 0;
    if (sigwait(&set, &signal_number) != 0) continue;
    if (++count == 1) {
      pagoda::server::LogLine(absl::StrCat("received ", strsignal(signal_number),
                                           ": shutting down (a second signal exits at once)"));
      shutdown->Notify();
    } else {
      pagoda::server::LogLine(
          absl::StrCat("received ", strsignal(signal_number), " again: exiting without draining"));
      std::_Exit(1);
    }
  }
}

}  // namespace

// Each HTTP stream and gRPC connection is a socket: a soft limit of 1024 open files (Debian's
// default) would cap the daemon near a thousand clients. Raises it to the hard limit, as vLLM
// does, and logs the result.
void RaiseOpenFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= limit.rlim_max) return;
  const rlim_t before = limit.rlim_cur;
  limit.rlim_cur = limit.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &limit) == 0) {
    pagoda::server::LogLine(
        absl::StrCat("open files limit raised from ", before, " to ", limit.rlim_cur));
  }
}

int main(int argc, char** argv) {
  const sigset_t signals = ShutdownSignals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  // Debian builds Abseil without NDEBUG, which leaves absl::Mutex's deadlock detection on: every
  // lock then updates a process-wide lock graph under one global lock (gRPC's locks included),
  // and a suspected cycle aborts. The tests keep it on to find lock-order bugs; the daemon does
  // not pay for it (the rapid-reset probe: 4.8k -> 5.7k streams/s read by the server).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  // Protobuf logs one ERROR per malformed request (e.g. invalid UTF-8): keep that bounded.
  pagoda::server::InstallProtobufLogRateLimit();
  const std::vector<std::string> args(argv + 1, argv + argc);
  absl::StatusOr<pagoda::server::ParsedFlags> flags = pagoda::server::ParseServerFlags(args);
  if (!flags.ok()) {
    std::fprintf(stderr, "pagodad: %s\n", std::string(flags.status().message()).c_str());
    return 2;
  }
  if (flags->help) {
    std::fputs(pagoda::server::ServerUsage().c_str(), stdout);
    return 0;
  }

  RaiseOpenFileLimit();
  // Never destroyed: the signal thread may still use it while the process exits.
  auto* shutdown = new absl::Notification();
  std::thread(WaitForSignals, shutdown).detach();

  absl::StatusOr<std::unique_ptr<pagoda::server::PagodaServer>> server =
      pagoda::server::PagodaServer::Start(flags->options);
  if (!server.ok()) {
    pagoda::server::LogLine(absl::StrCat("cannot start: ", server.status().ToString()));
    return 1;
  }
  if (const absl::Status loaded = (*server)->LoadEngine(); !loaded.ok()) {
    pagoda::server::LogLine(absl::StrCat("cannot load the model: ", loaded.ToString()));
    return 1;
  }
  shutdown->WaitForNotification();
  (*server)->Shutdown();
  server->reset();
  return 0;
}
