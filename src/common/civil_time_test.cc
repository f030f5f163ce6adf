#include "common/civil_time.h"

#include <chrono>
#include <string_view>

#include <gtest/gtest.h>

namespace nmi {
namespace {

TEST(CivilTime, TakeDigitsTakesBetweenMinAndMax) {
  std::string_view s = "2024-01";
  EXPECT_EQ(takeDigits(s, 4, 4), 2024);
  EXPECT_EQ(s, "-01");
  EXPECT_FALSE(takeDigits(s, 1, 2));
  EXPECT_EQ(s, "-01");  // unchanged on failure
  EXPECT_TRUE(takeChar(s, '-'));
  EXPECT_FALSE(takeChar(s, '-'));
  EXPECT_EQ(takeDigits(s, 1, 2), 1);
  EXPECT_TRUE(s.empty());
  std::string_view one = "7/";
  EXPECT_EQ(takeDigits(one, 1, 2), 7);
  EXPECT_EQ(one, "/");
}

TEST(CivilTime, EpochSecondsOfRealDatesOnly) {
  EXPECT_EQ(civilToEpochSeconds(1970, 1, 1, 0, 0, 0), 0);
  EXPECT_EQ(civilToEpochSeconds(2024, 2, 29, 12, 0, 1), 1709208001);
  EXPECT_FALSE(civilToEpochSeconds(2023, 2, 29, 0, 0, 0));
  EXPECT_FALSE(civilToEpochSeconds(2024, 13, 1, 0, 0, 0));
  EXPECT_FALSE(civilToEpochSeconds(2024, 0, 1, 0, 0, 0));
  EXPECT_EQ(civilToEpochSeconds(9999, 12, 31, 23, 59, 59), 253402300799LL);
}

TEST(CivilTime, SecondsPastSystemTimeBecomeItsLastSecond) {
  const std::int64_t last = lastSystemTimeSecond();
  EXPECT_EQ(last, 9223372036);  // 2262-04-11T23:47:16Z
  const auto seconds = [](SystemTime t) {
    return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
  };
  EXPECT_EQ(seconds(clampedSystemTime(253402300799LL)), last);
  EXPECT_EQ(seconds(clampedSystemTime(last - 1)), last - 1);
  EXPECT_EQ(seconds(clampedSystemTime(0)), 0);
}

}  // namespace
}  // namespace nmi
