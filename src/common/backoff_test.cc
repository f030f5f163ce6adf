#include "common/backoff.h"

#include <cstdint>

#include <gtest/gtest.h>

namespace nmi {
namespace {

using std::chrono::milliseconds;

TEST(JitteredBackoffTest, DoublesUpToTheCap) {
  const BackoffPolicy policy{milliseconds(100), milliseconds(1000), 0.2};
  EXPECT_EQ(jitteredBackoff(policy, 0, 0.5), milliseconds(100));
  EXPECT_EQ(jitteredBackoff(policy, 1, 0.5), milliseconds(200));
  EXPECT_EQ(jitteredBackoff(policy, 3, 0.5), milliseconds(800));
  EXPECT_EQ(jitteredBackoff(policy, 4, 0.5), milliseconds(1000));
  EXPECT_EQ(jitteredBackoff(policy, 1'000, 0.5), milliseconds(1000));
  EXPECT_EQ(jitteredBackoff(policy, -3, 0.5), milliseconds(100));
}

TEST(JitteredBackoffTest, JitterSpreadsAroundTheNominalDelay) {
  const BackoffPolicy policy{milliseconds(500), milliseconds(8000), 0.2};
  EXPECT_EQ(jitteredBackoff(policy, 0, 0.0), milliseconds(400));
  EXPECT_EQ(jitteredBackoff(policy, 0, 1.0), milliseconds(600));
  EXPECT_EQ(jitteredBackoff(policy, 4, 0.0), milliseconds(6400));
  EXPECT_EQ(jitteredBackoff(policy, 0, 7.0), milliseconds(600));  // clamped
  EXPECT_EQ(jitteredBackoff({milliseconds(500), milliseconds(8000), 5.0}, 0, 0.0), milliseconds(0));
}

TEST(JitteredBackoffTest, HugeSettingsDoNotOverflow) {
  constexpr std::int64_t kCap = std::int64_t{1} << 60;  // exact as a double
  const BackoffPolicy policy{milliseconds(kCap / 2), milliseconds(kCap), 0.0};
  EXPECT_EQ(jitteredBackoff(policy, 30, 0.5), milliseconds(kCap));
  EXPECT_EQ(jitteredBackoff(policy, 0, 0.5), milliseconds(kCap / 2));
}

TEST(UniformRandomTest, StaysInTheUnitInterval) {
  for (int i = 0; i < 1000; ++i) {
    const double r = uniformRandom();
    EXPECT_GE(r, 0.0);
    EXPECT_LT(r, 1.0);
  }
}

}  // namespace
}  // namespace nmi
