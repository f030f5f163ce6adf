#include "token/oauth_response.h"

#include <chrono>
#include <string>

#include <gtest/gtest.h>

namespace nmi::token {
namespace {

using namespace std::chrono_literals;

// 2024-01-01T00:00:00Z
constexpr std::int64_t kNow = 1704067200;
SystemTime now() {
  return fromUnixSeconds(kNow);
}

TEST(ParseTokenResponseTest, ParsesImdsShapeWithAllFieldsAsStrings) {
  const std::string body =
      R"({"access_token":"eyJ0eXAi.x.y","client_id":"cid","expires_in":"3599",)"
      R"("expires_on":"1704070799","ext_expires_in":"86399",)"
      R"("not_before":"1704066900","resource":"https://vault.azure.net",)"
      R"("token_type":"Bearer"})";
  const auto token = parseTokenResponse(body, now());
  ASSERT_TRUE(token.has_value()) << token.error().message;
  EXPECT_EQ(token->access_token, "eyJ0eXAi.x.y");
  EXPECT_EQ(token->client_id, "cid");
  EXPECT_EQ(toUnixSeconds(token->expires_on), 1704070799);
  EXPECT_EQ(toUnixSeconds(token->not_before), 1704066900);
  EXPECT_EQ(token->ext_expires_in, 86399);
  EXPECT_EQ(token->resource, "https://vault.azure.net");
  EXPECT_EQ(token->token_type, "Bearer");
}

TEST(ParseTokenResponseTest, ParsesNumbersAsNumbers) {
  const auto token = parseTokenResponse(
      R"({"access_token":"t","expires_on":1704070799,"not_before":1704066900,"ext_expires_in":5})",
      now());
  ASSERT_TRUE(token.has_value()) << token.error().message;
  EXPECT_EQ(toUnixSeconds(token->expires_on), 1704070799);
  EXPECT_EQ(toUnixSeconds(token->not_before), 1704066900);
  EXPECT_EQ(token->ext_expires_in, 5);
  EXPECT_EQ(token->token_type, "Bearer");
}

TEST(ParseTokenResponseTest, TruncatesFloatingPointNumbersAsAdalDoes) {
  const auto token = parseTokenResponse(R"({"access_token":"t","expires_on":1704070799.9})", now());
  ASSERT_TRUE(token.has_value()) << token.error().message;
  EXPECT_EQ(toUnixSeconds(token->expires_on), 1704070799);
}

TEST(ParseTokenResponseTest, AdfsNumericExpiresInWithoutExpiresOnIsRelativeToNow) {
  const auto token = parseTokenResponse(
      R"({"access_token":"t","token_type":"bearer","expires_in":3600,"resource":"r"})", now());
  ASSERT_TRUE(token.has_value()) << token.error().message;
  EXPECT_EQ(toUnixSeconds(token->expires_on), kNow + 3600);
  EXPECT_EQ(token->not_before, now());
  EXPECT_EQ(token->token_type, "bearer");
}

TEST(ParseTokenResponseTest, AadV1StringExpiresInAloneIsRelativeToNow) {
  const auto token = parseTokenResponse(R"({"access_token":"t","expires_in":"3599"})", now());
  ASSERT_TRUE(token.has_value());
  EXPECT_EQ(toUnixSeconds(token->expires_on), kNow + 3599);
}

TEST(ParseTokenResponseTest, ExpiresOnWinsOverExpiresIn) {
  const auto token = parseTokenResponse(
      R"({"access_token":"t","expires_in":"10","expires_on":"1704070799"})", now());
  ASSERT_TRUE(token.has_value());
  EXPECT_EQ(toUnixSeconds(token->expires_on), 1704070799);
}

TEST(ParseTokenResponseTest, AcceptsAdalDateForms) {
  // 2024-01-01T13:04:05Z = kNow + 13h 4m 5s.
  const std::int64_t want = kNow + 13LL * 3600 + 4LL * 60 + 5;
  for (const char* text :
       {"1/1/2024 13:04:05 PM +00:00", "1/1/2024 1:04:05 PM +00:00", "01/01/2024 13:04:05 +00:00",
        "1/1/2024 15:04:05 +02:00", "12/31/2023 23:04:05 -14:00"}) {
    const std::string body = std::string(R"({"access_token":"t","expires_on":")") + text + R"("})";
    const auto token = parseTokenResponse(body, now());
    ASSERT_TRUE(token.has_value()) << text << ": " << token.error().message;
    EXPECT_EQ(toUnixSeconds(token->expires_on), want) << text;
  }
  EXPECT_EQ(parseExpiresOnText("1/2/2024 12:00:00 AM +00:00"), kNow + 86400);
  EXPECT_EQ(parseExpiresOnText("1/2/2024 12:00:00 PM +00:00"), kNow + 86400 + 12LL * 3600);
}

// Found by fuzz/oauth_response_fuzz: an expiry after 2262-04-11 overflowed SystemTime's
// nanoseconds (undefined behaviour; in practice a time in 1677, so an "expired" token).
TEST(ParseTokenResponseTest, ClampsTimesBeyondSystemTimeToItsLastSecond) {
  constexpr std::int64_t kLastSecond = 9223372036;  // 2262-04-11T23:47:16Z
  for (
      const char* body :
      {R"({"access_token":"t","expires_on":"9999999999","not_before":"9999999999"})",
       R"({"access_token":"t","expires_on":253402300799,"not_before":253402300799})",
       R"({"access_token":"t","expires_on":"12/31/9999 23:59:59 +00:00","not_before":9223372037})"}) {
    const auto token = parseTokenResponse(body, now());
    ASSERT_TRUE(token.has_value()) << body << ": " << token.error().message;
    EXPECT_EQ(toUnixSeconds(token->expires_on), kLastSecond) << body;
    EXPECT_EQ(toUnixSeconds(token->not_before), kLastSecond) << body;
    EXPECT_GT(token->expires_on, now()) << body;
  }
  const auto last = parseTokenResponse(R"({"access_token":"t","expires_on":9223372036})", now());
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(toUnixSeconds(last->expires_on), kLastSecond);
}

TEST(ParseTokenResponseTest, RejectsMalformedDates) {
  for (const char* text :
       {"2/30/2024 10:00:00 +00:00", "13/1/2024 10:00:00 +00:00", "1/1/2024 24:00:00 +00:00",
        "1/1/2024 10:0:00 +00:00", "1/1/2024 10:00:00 +0000", "1/1/2024 10:00:00",
        "1/1/24 10:00:00 +00:00", "1/1/2024 10:00:00 XM +00:00", "2024-01-01T10:00:00Z", "NaN",
        "-5", "1e10", " 1704070799", "0x10", "+1704070799"}) {
    EXPECT_FALSE(parseExpiresOnText(text).has_value()) << text;
  }
}

TEST(ParseTokenResponseTest, RejectsAMissingEmptyOrNonStringAccessToken) {
  EXPECT_FALSE(parseTokenResponse(R"({"expires_in":"3599"})", now()).has_value());
  EXPECT_FALSE(parseTokenResponse(R"({"access_token":"","expires_in":"3599"})", now()).has_value());
  EXPECT_FALSE(parseTokenResponse(R"({"access_token":42,"expires_in":"3599"})", now()).has_value());
  EXPECT_FALSE(
      parseTokenResponse(R"({"access_token":["t"],"expires_in":"3599"})", now()).has_value());
}

TEST(ParseTokenResponseTest, RejectsMissingExpiry) {
  const auto token = parseTokenResponse(R"({"access_token":"t"})", now());
  ASSERT_FALSE(token.has_value());
  EXPECT_EQ(token.error().code, ErrorCode::Unavailable);
  EXPECT_NE(token.error().message.find("expires"), std::string::npos);
}

TEST(ParseTokenResponseTest, RejectsAnExpiryThatIsAlreadyPast) {
  EXPECT_FALSE(
      parseTokenResponse(R"({"access_token":"t","expires_on":"1704067200"})", now()).has_value());
  EXPECT_FALSE(parseTokenResponse(R"({"access_token":"t","expires_on":"1"})", now()).has_value());
  EXPECT_FALSE(parseTokenResponse(R"({"access_token":"t","expires_in":0})", now()).has_value());
}

TEST(ParseTokenResponseTest, RejectsHostileNumbers) {
  for (const char* field :
       {R"("expires_on":"99999999999999999999999")", R"("expires_on":99999999999999999999999)",
        R"("expires_on":1e300)", R"("expires_on":-1704070799)", R"("expires_on":"-1704070799")",
        R"("expires_on":"NaN")", R"("expires_on":"Infinity")", R"("expires_on":253402300800)",
        R"("expires_in":"315360001")", R"("expires_in":-5)", R"("expires_in":"3599.5")",
        R"("expires_in":1e20)", R"("expires_on":true)", R"("expires_on":{})",
        R"("expires_on":[1704070799])", R"("expires_in":"12abc")", R"("expires_in":" 12")"}) {
    const std::string body = std::string(R"({"access_token":"t",)") + field + "}";
    EXPECT_FALSE(parseTokenResponse(body, now()).has_value()) << body;
  }
}

TEST(ParseTokenResponseTest, RejectsWrongTypesOfOptionalFields) {
  for (const char* field : {R"("token_type":1)", R"("resource":[])", R"("client_id":{})",
                            R"("not_before":"yesterday")", R"("ext_expires_in":"-1")"}) {
    const std::string body =
        std::string(R"({"access_token":"t","expires_in":"3599",)") + field + "}";
    EXPECT_FALSE(parseTokenResponse(body, now()).has_value()) << body;
  }
}

TEST(ParseTokenResponseTest, TreatsNullAndEmptyStringsAsAbsent) {
  const auto token = parseTokenResponse(
      R"({"access_token":"t","expires_on":"","expires_in":"60","not_before":null,)"
      R"("ext_expires_in":"","token_type":null,"resource":""})",
      now());
  ASSERT_TRUE(token.has_value()) << token.error().message;
  EXPECT_EQ(toUnixSeconds(token->expires_on), kNow + 60);
  EXPECT_EQ(token->token_type, "Bearer");
  EXPECT_EQ(token->resource, "");
}

TEST(ParseTokenResponseTest, RejectsNonObjectsAndNonJson) {
  for (const char* body : {"", "null", "[]", R"(["access_token"])", "\"t\"", "42", "{",
                           R"({"access_token":"t","expires_in":"60")", "<html></html>",
                           R"({"access_token":"t","expires_in":"60"} trailing)"}) {
    EXPECT_FALSE(parseTokenResponse(body, now()).has_value()) << body;
  }
}

TEST(ParseTokenResponseTest, SurvivesDeeplyNestedAndLargeBodies) {
  const std::string nested = std::string(100000, '[') + std::string(100000, ']');
  EXPECT_FALSE(parseTokenResponse(nested, now()).has_value());
  const std::string big =
      R"({"access_token":")" + std::string(1 << 20, 'a') + R"(","expires_in":"60"})";
  const auto token = parseTokenResponse(big, now());
  ASSERT_TRUE(token.has_value());
  EXPECT_EQ(token->access_token.size(), 1U << 20U);
}

TEST(ParseTokenResponseTest, ErrorMessagesNeverContainTheToken) {
  const auto token =
      parseTokenResponse(R"({"access_token":"secret-token-value","expires_on":"bad"})", now());
  ASSERT_FALSE(token.has_value());
  EXPECT_EQ(token.error().message.find("secret-token-value"), std::string::npos);
}

TEST(DescribeOAuthErrorTest, GivesErrorAndFirstLineOfDescription) {
  EXPECT_EQ(
      describeOAuthError(R"({"error":"invalid_request","error_description":"Identity not found"})"),
      "invalid_request: Identity not found");
  EXPECT_EQ(
      describeOAuthError(
          R"({"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: abc\r\nCorrelation ID: def","error_codes":[7000215]})"),
      "invalid_client: AADSTS7000215: Invalid client secret provided.");
  EXPECT_EQ(describeOAuthError(R"({"error":"server_error"})"), "server_error");
}

TEST(DescribeOAuthErrorTest, IgnoresAnythingThatIsNotAnOAuthError) {
  EXPECT_EQ(describeOAuthError("Bad Request"), "");
  EXPECT_EQ(describeOAuthError(R"({"access_token":"leak"})"), "");
  EXPECT_EQ(describeOAuthError(R"({"error":{"code":"x"}})"), "");
  EXPECT_EQ(describeOAuthError("[]"), "");
}

TEST(DescribeOAuthErrorTest, ReplacesControlCharactersAndBoundsLength) {
  const std::string long_text(5000, 'x');
  const std::string out =
      describeOAuthError(R"({"error":"e\u0001","error_description":")" + long_text + R"("})");
  EXPECT_EQ(out.substr(0, 5), "e?: x");
  EXPECT_LE(out.size(), 420U);
}

}  // namespace
}  // namespace nmi::token
