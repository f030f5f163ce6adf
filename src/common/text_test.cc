#include "common/text.h"

#include <gtest/gtest.h>

namespace nmi {
namespace {

TEST(TextTest, FoldsAsciiLettersOnly) {
  EXPECT_EQ(asciiLowered("Metadata/OAuth2-Token_Z@[`{"), "metadata/oauth2-token_z@[`{");
  // Bytes above 0x7f (UTF-8 of "É") are not letters here.
  EXPECT_EQ(asciiLowered("\xc3\x89"), "\xc3\x89");
  EXPECT_EQ(asciiLower('A'), 'a');
  EXPECT_EQ(asciiLower('@'), '@');
}

TEST(TextTest, EqualsIgnoreCase) {
  EXPECT_TRUE(equalsIgnoreCase("Content-Length", "content-length"));
  EXPECT_TRUE(equalsIgnoreCase("", ""));
  EXPECT_FALSE(equalsIgnoreCase("content-length", "content-lengt"));
  EXPECT_FALSE(equalsIgnoreCase("a", "b"));
  // '@' and '`' differ from 'A' and 'a' by case-bit arithmetic only: not equal.
  EXPECT_FALSE(equalsIgnoreCase("@", "`"));
}

}  // namespace
}  // namespace nmi
