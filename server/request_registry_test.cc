#include "server/request_registry.h"

#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pagoda::server {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

TEST(RequestRegistryTest, AnIdIsUniqueUntilReleased) {
  RequestRegistry registry;
  const absl::StatusOr<RequestRegistry::Ticket> first = registry.Reserve("a");
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(registry.Reserve("a").status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(registry.Reserve("b").ok());
  EXPECT_EQ(registry.size(), 2);
  registry.Release("a", *first);
  EXPECT_EQ(registry.size(), 1);
  EXPECT_TRUE(registry.Reserve("a").ok());
}

TEST(RequestRegistryTest, AStaleTicketTouchesNothing) {
  RequestRegistry registry;
  const RequestRegistry::Ticket old_ticket = *registry.Reserve("a");
  registry.Release("a", old_ticket);
  const RequestRegistry::Ticket new_ticket = *registry.Reserve("a");
  // The first owner's late Bind and Release must not affect the new reservation.
  EXPECT_FALSE(registry.Bind("a", old_ticket, RequestId(1)));
  registry.Release("a", old_ticket);
  EXPECT_EQ(registry.size(), 1);
  std::vector<RequestId> to_abort;
  EXPECT_EQ(registry.MarkForAbort({"a"}, to_abort), 1);
  EXPECT_THAT(to_abort, IsEmpty());                           // not bound yet
  EXPECT_TRUE(registry.Bind("a", new_ticket, RequestId(2)));  // the abort is reported
}

TEST(RequestRegistryTest, AbortFindsBoundRequests) {
  RequestRegistry registry;
  const RequestRegistry::Ticket ticket = *registry.Reserve("a");
  EXPECT_FALSE(registry.Bind("a", ticket, RequestId(7)));
  std::vector<RequestId> to_abort;
  EXPECT_EQ(registry.MarkForAbort({"a", "missing"}, to_abort), 1);
  EXPECT_THAT(to_abort, ElementsAre(RequestId(7)));
  registry.Release("a", ticket);
  to_abort.clear();
  EXPECT_EQ(registry.MarkForAbort({"a"}, to_abort), 0);
}

TEST(RequestRegistryTest, ConcurrentReservationsOfOneIdAdmitOne) {
  RequestRegistry registry;
  std::atomic<int> won{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 100; ++i) {
        if (registry.Reserve(absl::StrCat("id-", i)).ok()) won.fetch_add(1);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(won.load(), 100);
  EXPECT_EQ(registry.size(), 100);
}

}  // namespace
}  // namespace pagoda::server
