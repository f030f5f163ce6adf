#include "imds/responses.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace nmi::imds {
namespace {

token::AccessToken sampleToken() {
  token::AccessToken t;
  t.access_token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhcHBpZCI6IngifQ.c2ln";
  t.expires_on = fromUnixSeconds(1'700'003'600);
  t.not_before = fromUnixSeconds(1'700'000'000);
  t.token_type = "bearer";
  return t;
}

TEST(ResponsesTest, TokenBodyHasImdsEightStringFieldsInOrder) {
  const std::string body = tokenJson(sampleToken(), "https://management.azure.com/", "cid",
                                     fromUnixSeconds(1'700'000'600));
  const auto j = nlohmann::ordered_json::parse(body);
  std::vector<std::string> keys;
  for (const auto& [k, v] : j.items()) {
    keys.push_back(k);
    EXPECT_TRUE(v.is_string()) << k;
  }
  EXPECT_EQ(keys,
            (std::vector<std::string>{"access_token", "client_id", "expires_in", "expires_on",
                                      "ext_expires_in", "not_before", "resource", "token_type"}));
  EXPECT_EQ(j["expires_in"], "3000");
  EXPECT_EQ(j["expires_on"], "1700003600");
  EXPECT_EQ(j["ext_expires_in"], "3000");
  EXPECT_EQ(j["not_before"], "1700000000");
  EXPECT_EQ(j["resource"], "https://management.azure.com/");
  EXPECT_EQ(j["token_type"], "Bearer");
}

TEST(ResponsesTest, ExpiredTokenNeverReportsNegativeLifetime) {
  const auto j =
      nlohmann::json::parse(tokenJson(sampleToken(), "r", "c", fromUnixSeconds(1'700'009'999)));
  EXPECT_EQ(j["expires_in"], "0");
}

TEST(ResponsesTest, EscapesWhatThePodSentAndStaysValidJson) {
  const std::string resource = std::string("a\"b\\c\x01\x7f") + "\xc3\xa9" + "\xff" + "\xe2\x82";
  const std::string body = tokenJson(sampleToken(), resource, "c", fromUnixSeconds(0));
  const auto j = nlohmann::json::parse(body);  // throws on invalid JSON or UTF-8
  EXPECT_EQ(j["resource"].get<std::string>(), std::string("a\"b\\c\x01\x7f") + "\xc3\xa9" +
                                                  "\xef\xbf\xbd" + "\xef\xbf\xbd" + "\xef\xbf\xbd");
}

TEST(ResponsesTest, HostTokenWrapsTheTokenWithTheClientId) {
  const auto j = nlohmann::json::parse(
      hostTokenJson(sampleToken(), "https://vault.azure.net", "cid", fromUnixSeconds(0)));
  EXPECT_EQ(j["clientid"], "cid");
  EXPECT_EQ(j["token"]["resource"], "https://vault.azure.net");
  EXPECT_EQ(j["token"]["client_id"], "cid");
}

TEST(ResponsesTest, RepliesCarryFixedImdsShapedBodies) {
  const http::Response missing = makeReply(Reply::MetadataHeaderMissing, 11);
  EXPECT_EQ(missing.result_int(), 400U);
  EXPECT_EQ(missing.body(),
            "{\"error\":\"invalid_request\",\"error_description\":\"Required metadata header not "
            "specified\"}\n");
  EXPECT_EQ(missing[boost::beast::http::field::content_type], "application/json; charset=utf-8");
  const http::Response later = makeReply(Reply::IdentityNotReady, 11);
  EXPECT_EQ(later.result_int(), 503U);
  EXPECT_EQ(later[boost::beast::http::field::retry_after], "20");
  EXPECT_EQ(statusFor(Reply::TooManyRequests), 429U);
  EXPECT_EQ(statusFor(Reply::TokenRefused), 403U);
  EXPECT_EQ(statusFor(Reply::PodNotFound), 500U);
  EXPECT_EQ(statusFor(Reply::IdentityNotFound), 404U);
  EXPECT_EQ(makeReply(Reply::CredentialSecretRefused, 11).body(),
            "{\"error\":\"forbidden\",\"error_description\":\"The identity's credential "
            "Secret is not in the identity's namespace\"}\n");
  EXPECT_EQ(makeReply(Reply::AadHostRefused, 11).body(),
            "{\"error\":\"forbidden\",\"error_description\":\"The identity's Azure AD host "
            "is not allowed by nmi\"}\n");
  EXPECT_EQ(statusFor(Reply::CredentialSecretRefused), 403U);
  EXPECT_EQ(statusFor(Reply::AadHostRefused), 403U);
}

TEST(ResponsesTest, NoReplyUsesWordsSdksBranchOn) {
  // .NET's probe treats a 400 containing "Identity not found" as "no managed identity here".
  for (int r = 0; r <= static_cast<int>(Reply::Internal); ++r) {
    const auto reply = static_cast<Reply>(r);
    const std::string body = makeReply(reply, 11).body();
    EXPECT_EQ(body.find("Identity not found") != std::string::npos,
              reply == Reply::IdentityNotFoundObjectId)
        << body;
    // SDKs read a 403 whose body says "unreachable" as Docker Desktop's "no IMDS here".
    EXPECT_EQ(body.find("unreachable"), std::string::npos) << body;
  }
}

}  // namespace
}  // namespace nmi::imds
