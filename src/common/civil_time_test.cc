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

TEST(CivilTime, TakeDigitsThenNeedsTheSeparator) {
  std::string_view s = "12:34 ";
  EXPECT_EQ(takeDigitsThen(s, 2, 2, ':'), 12);
  EXPECT_EQ(s, "34 ");
  EXPECT_FALSE(takeDigitsThen(s, 2, 2, ':'));
  std::string_view t = "1/";
  EXPECT_EQ(takeDigitsThen(t, 1, 2, '/'), 1);
  EXPECT_TRUE(t.empty());
}

TEST(CivilTime, UtcOffsetsAreSignedSecondsAndRangeChecked) {
  std::string_view east = "+05:30";
  EXPECT_EQ(takeUtcOffset(east), 19800);
  EXPECT_TRUE(east.empty());
  std::string_view west = "-07:00Z";
  EXPECT_EQ(takeUtcOffset(west), -25200);
  EXPECT_EQ(west, "Z");
  for (std::string_view bad : {"05:30", "+5:30", "+05-30", "+24:00", "+05:60", "+05:3", ""}) {
    std::string_view s = bad;
    EXPECT_FALSE(takeUtcOffset(s)) << bad;
    EXPECT_EQ(s, bad) << "unchanged on failure";
  }
}

TEST(CivilTime, EpochSecondsAtAnOffsetWithTheTimeOfDayChecked) {
  EXPECT_EQ(epochSecondsAt({2024, 2, 29, 12, 0, 1}, 0), 1709208001);
  EXPECT_EQ(epochSecondsAt({2024, 2, 29, 12, 0, 1}, 3600), 1709208001 - 3600);
  EXPECT_EQ(epochSecondsAt({1970, 1, 1, 0, 0, 0}, -60), 60);
  EXPECT_FALSE(epochSecondsAt({2024, 1, 1, 24, 0, 0}, 0));
  EXPECT_FALSE(epochSecondsAt({2024, 1, 1, 0, 60, 0}, 0));
  EXPECT_FALSE(epochSecondsAt({2024, 1, 1, 0, 0, 60}, 0));
  EXPECT_FALSE(epochSecondsAt({2023, 2, 29, 0, 0, 0}, 0));
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
