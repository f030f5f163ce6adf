#include "common/base64.h"

#include <gtest/gtest.h>

namespace nmi {
namespace {

TEST(Base64Test, EncodesRfc4648Vectors) {
  EXPECT_EQ(base64Encode(""), "");
  EXPECT_EQ(base64Encode("f"), "Zg==");
  EXPECT_EQ(base64Encode("fo"), "Zm8=");
  EXPECT_EQ(base64Encode("foo"), "Zm9v");
  EXPECT_EQ(base64Encode("foob"), "Zm9vYg==");
  EXPECT_EQ(base64Encode("fooba"), "Zm9vYmE=");
  EXPECT_EQ(base64Encode("foobar"), "Zm9vYmFy");
}

TEST(Base64Test, UrlAlphabetWithoutPadding) {
  EXPECT_EQ(base64Encode("\xfb\xff", Base64Alphabet::Url, false), "-_8");
  EXPECT_EQ(base64Encode("\xfb\xff", Base64Alphabet::Standard, true), "+/8=");
}

TEST(Base64Test, DecodesEitherAlphabetPaddedOrNot) {
  EXPECT_EQ(base64Decode("Zm9vYmE="), "fooba");
  EXPECT_EQ(base64Decode("Zm9vYmE"), "fooba");
  EXPECT_EQ(base64Decode("-_8"), "\xfb\xff");
  EXPECT_EQ(base64Decode("+/8="), "\xfb\xff");
}

TEST(Base64Test, RejectsInvalidInput) {
  EXPECT_FALSE(base64Decode("Zm9v!").has_value());
  EXPECT_FALSE(base64Decode("Z").has_value());
  EXPECT_FALSE(base64Decode("Zm 9v").has_value());
}

TEST(Base64Test, RoundTripsAllByteValues) {
  std::string all;
  for (int i = 0; i < 256; ++i) {
    all += static_cast<char>(i);
  }
  EXPECT_EQ(base64Decode(base64Encode(all)), all);
  EXPECT_EQ(base64Decode(base64Encode(all, Base64Alphabet::Url, false)), all);
}

}  // namespace
}  // namespace nmi
