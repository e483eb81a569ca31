#pragma once

// CHECK macros for invariants whose failure is a bug (STYLE.md: "Bugs are CHECKs"). Debian's
// Abseil 20220623 predates absl/log, so these are ours. A failed check prints the condition,
// the location and any streamed message to stderr, then aborts. Checks are always on, also in
// release builds: they guard bookkeeping whose corruption would silently corrupt model output.
//
//   PAGODA_CHECK(pool.num_used_blocks() == 0) << "leaked blocks";
//   PAGODA_CHECK_LE(n, num_free) << "request " << id;

#include <sstream>

namespace pagoda::common::internal {

// Collects the message of a failed check; its destructor reports and aborts.
class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* condition);
  [[noreturn]] ~CheckFailure();
  CheckFailure(const CheckFailure&) = delete;
  CheckFailure& operator=(const CheckFailure&) = delete;

  std::ostream& stream() { return stream_; }

 private:
  std::ostringstream stream_;
};

// Lets `cond ? (void)0 : Voidify() & stream` type-check with a streamed message.
struct Voidify {
  void operator&(std::ostream&) {}
};

}  // namespace pagoda::common::internal

#define PAGODA_CHECK(condition)                 \
  (condition)                                   \
      ? (void)0                                 \
      : ::pagoda::common::internal::Voidify() & \
            ::pagoda::common::internal::CheckFailure(__FILE__, __LINE__, #condition).stream()

#define PAGODA_CHECK_OP_(a, op, b) PAGODA_CHECK((a)op(b)) << "(" << (a) << " vs " << (b) << ") "

#define PAGODA_CHECK_EQ(a, b) PAGODA_CHECK_OP_(a, ==, b)
#define PAGODA_CHECK_NE(a, b) PAGODA_CHECK_OP_(a, !=, b)
#define PAGODA_CHECK_LT(a, b) PAGODA_CHECK_OP_(a, <, b)
#define PAGODA_CHECK_LE(a, b) PAGODA_CHECK_OP_(a, <=, b)
#define PAGODA_CHECK_GT(a, b) PAGODA_CHECK_OP_(a, >, b)
#define PAGODA_CHECK_GE(a, b) PAGODA_CHECK_OP_(a, >=, b)
