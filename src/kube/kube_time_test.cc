#include "kube/kube_time.h"

#include <chrono>
#include <string_view>

#include <gtest/gtest.h>

namespace nmi::kube {
namespace {

using namespace std::chrono_literals;

TEST(ParseKubeTimeTest, ReadsWhatTheApiServerWrites) {
  const auto t = parseKubeTime("2024-01-01T00:00:30Z");
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(toUnixSeconds(*t), 1704067230);
  // 2024 is a leap year: 29 February exists.
  const auto leap = parseKubeTime("2024-02-29T12:34:56Z");
  ASSERT_TRUE(leap.has_value());
  EXPECT_EQ(toUnixSeconds(*leap), 1709210096);
}

TEST(ParseKubeTimeTest, FractionsAndOffsets) {
  const auto base = parseKubeTime("2024-01-01T00:00:30Z");
  ASSERT_TRUE(base.has_value());
  EXPECT_EQ(parseKubeTime("2024-01-01T00:00:30.250000Z"), *base + 250ms);
  EXPECT_EQ(parseKubeTime("2024-01-01T00:00:30.5Z"), *base + 500ms);
  EXPECT_EQ(parseKubeTime("2024-01-01T02:00:30+02:00"), *base);
  EXPECT_EQ(parseKubeTime("2023-12-31T23:30:30-00:30"), *base);
  EXPECT_EQ(parseKubeTime("2024-01-01t00:00:30z"), *base);
}

TEST(ParseKubeTimeTest, RefusesEverythingElse) {
  for (const std::string_view text : {"",
                                      "2024-01-01",
                                      "2024-01-01T00:00:30",
                                      "2024-01-01 00:00:30Z",
                                      "2024-1-01T00:00:30Z",
                                      "2024-13-01T00:00:30Z",
                                      "2023-02-29T00:00:30Z",
                                      "2024-01-32T00:00:30Z",
                                      "2024-01-01T24:00:00Z",
                                      "2024-01-01T00:60:00Z",
                                      "2024-01-01T00:00:60Z",
                                      "2024-01-01T00:00:30.Z",
                                      "2024-01-01T00:00:30.1234567890Z",
                                      "2024-01-01T00:00:30+0200",
                                      "2024-01-01T00:00:30+24:00",
                                      "2024-01-01T00:00:30Zjunk",
                                      "1969-12-31T23:59:59Z",
                                      "+024-01-01T00:00:30Z",
                                      "2024-01-01T00:00:30 Z",
                                      "１９７０-01-01T00:00:00Z"}) {
    EXPECT_FALSE(parseKubeTime(text).has_value()) << text;
  }
}

// Found by the identity_decode fuzzer: a deletionTimestamp after 2262 overflowed SystemTime's
// nanoseconds (undefined behaviour, in practice a time before 1970).
TEST(ParseKubeTimeTest, TimesBeyondSystemTimeAreItsLastSecond) {
  const auto last =
      std::chrono::duration_cast<std::chrono::seconds>(SystemTime::max().time_since_epoch());
  for (const char* text :
       {"6173-05-02T10:00:00Z", "9999-12-31T23:59:59.999999999Z", "2262-04-11T23:47:16.9Z"}) {
    const auto t = parseKubeTime(text);
    ASSERT_TRUE(t.has_value()) << text;
    EXPECT_EQ(std::chrono::duration_cast<std::chrono::seconds>(t->time_since_epoch()), last)
        << text;
  }
  const auto before = parseKubeTime("2262-04-11T23:47:15Z");
  ASSERT_TRUE(before.has_value());
  EXPECT_EQ(std::chrono::duration_cast<std::chrono::seconds>(before->time_since_epoch()),
            last - std::chrono::seconds{1});
}

}  // namespace
}  // namespace nmi::kube
