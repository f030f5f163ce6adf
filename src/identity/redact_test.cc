#include "identity/redact.h"

#include <gtest/gtest.h>

namespace nmi::identity {
namespace {

TEST(RedactClientIdTest, KeepsFirstAndLastFourCharacters) {
  EXPECT_EQ(redactClientId("11111111-2222-3333-4444-555555555555"), "1111##### REDACTED #####5555");
}

TEST(RedactClientIdTest, RedactsExactlyEightCharacters) {
  EXPECT_EQ(redactClientId("abcdefgh"), "abcd##### REDACTED #####efgh");
}

TEST(RedactClientIdTest, LeavesShortStringsAlone) {
  EXPECT_EQ(redactClientId(""), "");
  EXPECT_EQ(redactClientId("abcdefg"), "abcdefg");
}

TEST(RedactClientIdTest, LeavesStringsWithSpaceAtTheEdgesAlone) {
  // The original's regex needs four non-space characters at each end.
  EXPECT_EQ(redactClientId("ab cdefghij"), "ab cdefghij");
  EXPECT_EQ(redactClientId("abcdefgh i"), "abcdefgh i");
  EXPECT_EQ(redactClientId("abcd  efgh"), "abcd##### REDACTED #####efgh");
}

TEST(RedactClientIdTest, CountsCodePointsNotBytes) {
  // Seven code points (each é is two bytes): too short to redact.
  EXPECT_EQ(redactClientId("\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9xyz"),
            "\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9xyz");
  EXPECT_EQ(redactClientId("\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9wxyz"),
            "\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9##### REDACTED #####wxyz");
}

}  // namespace
}  // namespace nmi::identity
