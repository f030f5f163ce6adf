#include "token/refresh_policy.h"

#include <gtest/gtest.h>

namespace nmi::token {
namespace {

using namespace std::chrono_literals;

class RefreshPolicyTest : public ::testing::Test {
 protected:
  AccessToken tokenExpiringIn(std::chrono::seconds left) const {
    AccessToken t;
    t.access_token = "t";
    t.expires_on = now_ + left;
    return t;
  }
  const SystemTime now_ = fromUnixSeconds(1704067200);
  const RefreshPolicy policy_{};  // 300 s ahead, 60 s minimum
};

TEST_F(RefreshPolicyTest, ServesFreshTokens) {
  EXPECT_EQ(decide(tokenExpiringIn(1h), now_, policy_), CacheDecision::Serve);
  EXPECT_EQ(decide(tokenExpiringIn(301s), now_, policy_), CacheDecision::Serve);
  EXPECT_FALSE(needsRefresh(tokenExpiringIn(301s), now_, policy_));
}

TEST_F(RefreshPolicyTest, RefreshesInTheBackgroundInsideTheWindow) {
  EXPECT_EQ(decide(tokenExpiringIn(300s), now_, policy_), CacheDecision::ServeAndRefresh);
  EXPECT_EQ(decide(tokenExpiringIn(60s), now_, policy_), CacheDecision::ServeAndRefresh);
}

TEST_F(RefreshPolicyTest, FetchesWhenLessThanTheMinimumLifetimeIsLeft) {
  EXPECT_EQ(decide(tokenExpiringIn(59s), now_, policy_), CacheDecision::Fetch);
  EXPECT_EQ(decide(tokenExpiringIn(0s), now_, policy_), CacheDecision::Fetch);
  EXPECT_EQ(decide(tokenExpiringIn(-10s), now_, policy_), CacheDecision::Fetch);
}

TEST_F(RefreshPolicyTest, NeverServesAnExpiredTokenEvenWithoutAMinimum) {
  const RefreshPolicy no_minimum{300s, 0s};
  EXPECT_EQ(decide(tokenExpiringIn(0s), now_, no_minimum), CacheDecision::Fetch);
  EXPECT_EQ(decide(tokenExpiringIn(1s), now_, no_minimum), CacheDecision::ServeAndRefresh);
}

TEST_F(RefreshPolicyTest, ExpiryIsInclusive) {
  EXPECT_TRUE(isExpired(tokenExpiringIn(0s), now_));
  EXPECT_FALSE(isExpired(tokenExpiringIn(1s), now_));
  EXPECT_EQ(remainingLifetime(tokenExpiringIn(-5s), now_), -5s);
}

TEST_F(RefreshPolicyTest, SweeperRefreshesOnlyRecentlyUsedTokensInTheWindow) {
  const MonotonicTime mono{10h};
  EXPECT_TRUE(
      sweeperShouldRefresh(tokenExpiringIn(200s), now_, mono - 10min, mono, 30min, policy_));
  EXPECT_FALSE(
      sweeperShouldRefresh(tokenExpiringIn(200s), now_, mono - 31min, mono, 30min, policy_));
  EXPECT_FALSE(sweeperShouldRefresh(tokenExpiringIn(1h), now_, mono, mono, 30min, policy_));
  EXPECT_FALSE(sweeperShouldRefresh(tokenExpiringIn(0s), now_, mono, mono, 30min, policy_));
}

}  // namespace
}  // namespace nmi::token
