#include "token/rate_limit.h"

#include <gtest/gtest.h>

namespace nmi::token {
namespace {

using namespace std::chrono_literals;

TEST(TokenBucketTest, StartsFullAndAllowsTheBurst) {
  const MonotonicTime t0{1h};
  TokenBucket bucket(5.0, 20, t0);
  for (int i = 0; i < 20; ++i) {
    EXPECT_TRUE(bucket.tryTake(t0)) << i;
  }
  EXPECT_FALSE(bucket.tryTake(t0));
}

TEST(TokenBucketTest, RefillsAtTheRate) {
  const MonotonicTime t0{1h};
  TokenBucket bucket(5.0, 20, t0);
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(bucket.tryTake(t0));
  }
  EXPECT_FALSE(bucket.tryTake(t0 + 199ms));
  EXPECT_TRUE(bucket.tryTake(t0 + 200ms));
  EXPECT_FALSE(bucket.tryTake(t0 + 200ms));
  EXPECT_TRUE(bucket.tryTake(t0 + 1s));  // 0.8 s more: four tokens
  EXPECT_NEAR(bucket.available(t0 + 1s), 3.0, 1e-9);
}

TEST(TokenBucketTest, NeverHoldsMoreThanTheBurst) {
  const MonotonicTime t0{1h};
  TokenBucket bucket(5.0, 3, t0);
  EXPECT_NEAR(bucket.available(t0 + 10h), 3.0, 1e-9);
}

TEST(TokenBucketTest, IgnoresTimeGoingBackwards) {
  const MonotonicTime t0{1h};
  TokenBucket bucket(1.0, 1, t0);
  EXPECT_TRUE(bucket.tryTake(t0));
  EXPECT_FALSE(bucket.tryTake(t0 - 10s));
  EXPECT_TRUE(bucket.tryTake(t0 + 1s));
}

TEST(TokenBucketTest, ZeroRateOnlyAllowsTheBurst) {
  const MonotonicTime t0{1h};
  TokenBucket bucket(0.0, 2, t0);
  EXPECT_TRUE(bucket.tryTake(t0));
  EXPECT_TRUE(bucket.tryTake(t0));
  EXPECT_FALSE(bucket.tryTake(t0 + 1h));
}

}  // namespace
}  // namespace nmi::token
