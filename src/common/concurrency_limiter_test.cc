#include "common/concurrency_limiter.h"

#include <optional>
#include <vector>

#include <gtest/gtest.h>

namespace nmi {
namespace {

using Refusal = ConcurrencyLimiter::Refusal;

TEST(ConcurrencyLimiter, OneKeyCannotTakeTheWholeBudget) {
  ConcurrencyLimiter limiter(5, 2);
  std::vector<ConcurrencyLimiter::Permit> held;
  held.push_back(limiter.tryAcquire("10.0.0.1"));
  held.push_back(limiter.tryAcquire("10.0.0.1"));
  const auto third = limiter.tryAcquire("10.0.0.1");
  EXPECT_FALSE(third.granted());
  EXPECT_EQ(third.refusal(), Refusal::KeyLimit);
  // Another key still gets in.
  const auto other = limiter.tryAcquire("10.0.0.2");
  EXPECT_TRUE(other.granted());
  EXPECT_EQ(limiter.inUse(), 3U);
  EXPECT_EQ(limiter.keys(), 2U);
}

TEST(ConcurrencyLimiter, TheTotalIsABudgetForEveryone) {
  ConcurrencyLimiter limiter(3, 2);
  std::vector<ConcurrencyLimiter::Permit> held;
  held.push_back(limiter.tryAcquire("a"));
  held.push_back(limiter.tryAcquire("b"));
  held.push_back(limiter.tryAcquire("c"));
  const auto d = limiter.tryAcquire("d");
  EXPECT_EQ(d.refusal(), Refusal::TotalLimit);
  held.pop_back();
  EXPECT_TRUE(limiter.tryAcquire("d").granted());
}

TEST(ConcurrencyLimiter, ReleasedKeysAreForgotten) {
  ConcurrencyLimiter limiter(100, 4);
  for (int i = 0; i < 10'000; ++i) {
    const auto p =
        limiter.tryAcquire("10.1." + std::to_string(i % 250) + "." + std::to_string(i / 250));
    ASSERT_TRUE(p.granted());
  }
  EXPECT_EQ(limiter.inUse(), 0U);
  EXPECT_EQ(limiter.keys(), 0U);
}

TEST(ConcurrencyLimiter, AMovedPermitIsReleasedOnce) {
  ConcurrencyLimiter limiter(1, 1);
  std::optional<ConcurrencyLimiter::Permit> moved;
  {
    auto p = limiter.tryAcquire("a");
    moved.emplace(std::move(p));
  }
  EXPECT_EQ(limiter.inUse(), 1U);
  moved.reset();
  EXPECT_EQ(limiter.inUse(), 0U);
  EXPECT_TRUE(limiter.tryAcquire("a").granted());
}

}  // namespace
}  // namespace nmi
