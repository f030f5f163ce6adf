#include "token/retry_policy.h"

#include <gtest/gtest.h>

namespace nmi::token {
namespace {

using namespace std::chrono_literals;
using std::chrono::milliseconds;

TEST(RetryPolicyTest, RetriesTheOriginalsStatusList) {
  for (const unsigned status :
       {404U, 408U, 410U, 429U, 500U, 501U, 502U, 503U, 504U, 505U, 506U, 507U, 508U, 510U, 511U}) {
    EXPECT_TRUE(isRetryableStatus(status)) << status;
  }
  for (const unsigned status : {200U, 201U, 301U, 400U, 401U, 403U, 405U, 409U, 509U, 512U, 599U}) {
    EXPECT_FALSE(isRetryableStatus(status)) << status;
  }
}

TEST(RetryPolicyTest, RetriesTransportFailuresOnly) {
  EXPECT_TRUE(isRetryableError(ErrorCode::Unavailable));
  EXPECT_TRUE(isRetryableError(ErrorCode::Timeout));
  EXPECT_FALSE(isRetryableError(ErrorCode::InvalidArgument));
  EXPECT_FALSE(isRetryableError(ErrorCode::Cancelled));
  EXPECT_FALSE(isRetryableError(ErrorCode::Upstream));
}

TEST(RetryPolicyTest, DoublesFromHalfASecondUpToEightSeconds) {
  const milliseconds budget = 1h;
  EXPECT_EQ(nextDelay(0, std::nullopt, budget, 0.5), 500ms);
  EXPECT_EQ(nextDelay(1, std::nullopt, budget, 0.5), 1000ms);
  EXPECT_EQ(nextDelay(2, std::nullopt, budget, 0.5), 2000ms);
  EXPECT_EQ(nextDelay(3, std::nullopt, budget, 0.5), 4000ms);
  EXPECT_EQ(nextDelay(4, std::nullopt, budget, 0.5), 8000ms);
  EXPECT_EQ(nextDelay(5, std::nullopt, budget, 0.5), 8000ms);
  EXPECT_EQ(nextDelay(1000, std::nullopt, budget, 0.5), 8000ms);
  EXPECT_EQ(nextDelay(-3, std::nullopt, budget, 0.5), 500ms);
}

TEST(RetryPolicyTest, JittersByTwentyPercentEitherWay) {
  EXPECT_EQ(nextDelay(0, std::nullopt, 1h, 0.0), 400ms);
  EXPECT_EQ(nextDelay(0, std::nullopt, 1h, 1.0), 600ms);
  EXPECT_EQ(nextDelay(4, std::nullopt, 1h, 0.0), 6400ms);
  EXPECT_EQ(nextDelay(4, std::nullopt, 1h, 1.0), 9600ms);
  EXPECT_EQ(nextDelay(0, std::nullopt, 1h, 7.0), 600ms);  // clamped
}

TEST(RetryPolicyTest, RetryAfterTakesPrecedenceWithoutJitter) {
  EXPECT_EQ(nextDelay(0, 3s, 1h, 0.0), 3000ms);
  EXPECT_EQ(nextDelay(4, 0s, 1h, 1.0), 0ms);
}

TEST(RetryPolicyTest, GivesUpWhenTheWaitWouldNotFitTheBudget) {
  EXPECT_EQ(nextDelay(0, std::nullopt, 501ms, 0.5), 500ms);
  EXPECT_EQ(nextDelay(0, std::nullopt, 500ms, 0.5), std::nullopt);
  EXPECT_EQ(nextDelay(0, 30s, 29s, 0.5), std::nullopt);
  EXPECT_EQ(nextDelay(0, std::nullopt, 0ms, 0.5), std::nullopt);
  EXPECT_EQ(nextDelay(0, std::nullopt, -5ms, 0.5), std::nullopt);
}

TEST(RetryPolicyTest, HonoursACustomPolicy) {
  RetryPolicy policy;
  policy.backoff = {10ms, 25ms, 0};
  EXPECT_EQ(nextDelay(0, std::nullopt, 1h, 0.0, policy), 10ms);
  EXPECT_EQ(nextDelay(1, std::nullopt, 1h, 0.0, policy), 20ms);
  EXPECT_EQ(nextDelay(2, std::nullopt, 1h, 0.0, policy), 25ms);
}

TEST(RetryPolicyTest, AttemptTimeoutIsTenSecondsOrWhatIsLeft) {
  EXPECT_EQ(attemptTimeout(30s), 10s);
  EXPECT_EQ(attemptTimeout(4s), 4s);
  EXPECT_EQ(attemptTimeout(-1s), 0s);
}

class ParseRetryAfterTest : public ::testing::Test {
 protected:
  // Sun, 06 Nov 1994 08:49:37 GMT
  const SystemTime now_ = fromUnixSeconds(784111777);
};

TEST_F(ParseRetryAfterTest, ReadsDeltaSeconds) {
  EXPECT_EQ(parseRetryAfter("120", now_), 120s);
  EXPECT_EQ(parseRetryAfter(" 0 ", now_), 0s);
  EXPECT_EQ(parseRetryAfter("99999999999", now_), std::chrono::seconds{24LL * 3600 * 365});
}

TEST_F(ParseRetryAfterTest, ReadsTheThreeHttpDateForms) {
  EXPECT_EQ(parseRetryAfter("Sun, 06 Nov 1994 08:50:37 GMT", now_), 60s);
  EXPECT_EQ(parseRetryAfter("Sunday, 06-Nov-94 08:50:37 GMT", now_), 60s);
  EXPECT_EQ(parseRetryAfter("Sun Nov  6 08:50:37 1994", now_), 60s);
  EXPECT_EQ(parseRetryAfter("Mon, 07 Nov 1994 08:49:37 GMT", now_), 86400s);
}

TEST_F(ParseRetryAfterTest, APastDateMeansNoWait) {
  EXPECT_EQ(parseRetryAfter("Sat, 05 Nov 1994 08:49:37 GMT", now_), 0s);
}

TEST_F(ParseRetryAfterTest, RejectsGarbage) {
  for (const char* value : {"", "  ", "-1", "1.5", "12abc", "soon", "Sun, 06 Nov 1994 08:49:37 PST",
                            "Sun, 31 Feb 1994 08:49:37 GMT", "Sun, 06 Foo 1994 08:49:37 GMT",
                            "Sun, 06 Nov 1994 25:49:37 GMT", "Sun, 6 Nov 1994 08:49:37 GMT"}) {
    EXPECT_EQ(parseRetryAfter(value, now_), std::nullopt) << value;
  }
}

}  // namespace
}  // namespace nmi::token
