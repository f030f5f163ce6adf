#include "token/aad_token_provider.h"

#include <fstream>
#include <iterator>
#include <map>
#include <string>

#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/base64.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/fake_http_client.h"
#include "tests/fakes/run_sync.h"
#include "tests/fakes/test_values.h"

namespace nmi::token {
namespace {

using nmi::testing::codeOf;

using namespace std::chrono_literals;

constexpr std::int64_t kNow = 1704067200;

std::string readTestFile(const std::string& name) {
  std::ifstream in(std::string(NMI_TOKEN_TESTDATA) + "/" + name, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A CredentialSource over a map; counts loads.
class FakeCredentialSource final : public CredentialSource {
 public:
  void set(const CredentialRef& ref, Credential credential) {
    secrets_[ref.ns + "/" + ref.name] = std::move(credential);
  }
  void failWith(Error error) { error_ = std::move(error); }
  int loads() const { return loads_; }

  Task<Result<Credential>> load(const CredentialRef& ref) override {
    ++loads_;
    if (error_) {
      co_return *error_;
    }
    const auto it = secrets_.find(ref.ns + "/" + ref.name);
    if (it == secrets_.end()) {
      co_return makeError(ErrorCode::NotFound, "secret not found");
    }
    co_return it->second;
  }

 private:
  std::map<std::string, Credential> secrets_;
  std::optional<Error> error_;
  int loads_ = 0;
};

// Splits a form body into its fields (values percent-decoded, '+' as space).
std::vector<std::pair<std::string, std::string>> formFields(const std::string& body) {
  const auto decode = [](std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '+') {
        out += ' ';
      } else if (s[i] == '%' && i + 2 < s.size()) {
        out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
        i += 2;
      } else {
        out += s[i];
      }
    }
    return out;
  };
  std::vector<std::pair<std::string, std::string>> fields;
  std::size_t start = 0;
  while (start <= body.size()) {
    const std::size_t end = std::min(body.find('&', start), body.size());
    const std::string_view part(body.data() + start, end - start);
    const auto eq = part.find('=');
    fields.emplace_back(decode(part.substr(0, eq)), decode(part.substr(eq + 1)));
    start = end + 1;
  }
  return fields;
}

TokenRequest spRequest(TokenRequest::Kind kind = TokenRequest::Kind::ServicePrincipalSecret) {
  TokenRequest r;
  r.kind = kind;
  r.resource = "https://vault.azure.net";
  r.client_id = "11111111-2222-3333-4444-555555555555";
  r.tenant_id = "72f988bf-86f1-41af-91ab-2d7cd011db47";
  r.credential = {"default", "sp-secret"};
  return r;
}

const char* aadOkBody() {
  return R"({"token_type":"Bearer","expires_in":"3599","ext_expires_in":"3599",)"
         R"("expires_on":"1704070799","not_before":"1704066900",)"
         R"("resource":"https://vault.azure.net","access_token":"aad-token"})";
}

class AadTokenProviderTest : public ::testing::Test {
 protected:
  AadTokenProviderTest() {
    clock_.setAutoAdvance(true);  // backoff waits return at once (clock_.delays())
    credentials_.set({"default", "sp-secret"}, Credential{{{"clientSecret", "s3cr3t+/="}}});
    credentials_.set({"default", "sp-cert"}, Credential{{{"certificate", readTestFile("rsa.pfx")},
                                                         {"password", "test-password"}}});
  }

  AadTokenProvider::Options options() {
    AadTokenProvider::Options o;
    o.user_agent = "nmi/test";
    o.allowed_authorities = *AuthorityAllowlist::withExtraHosts({"adfs.contoso.com"});
    return o;
  }

  Result<AccessToken> fetch(const TokenRequest& request) {
    return testing::runSync(io_, provider_.fetchToken(request, nullptr));
  }

  boost::asio::io_context io_;
  testing::FakeClock clock_;
  testing::FakeHttpClient http_;
  FakeCredentialSource credentials_;
  metrics::NmiMetrics metrics_;
  AadTokenProvider provider_{http_, credentials_, clock_, metrics_, options()};
};

TEST(AadTokenUrlTest, ResolvesTheTenantAgainstTheEndpointLikeTheOriginal) {
  EXPECT_EQ(*aadTokenUrl("", "tid"),
            "https://login.microsoftonline.com/tid/oauth2/token?api-version=1.0");
  EXPECT_EQ(
      *aadTokenUrl("https://login.microsoftonline.com/", "contoso.onmicrosoft.com"),
      "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/token?api-version=1.0");
  EXPECT_EQ(*aadTokenUrl("https://adfs.contoso.com/", "adfs"),
            "https://adfs.contoso.com/adfs/oauth2/token?api-version=1.0");
  EXPECT_EQ(*aadTokenUrl("https://login.chinacloudapi.cn/", "tid"),
            "https://login.chinacloudapi.cn/tid/oauth2/token?api-version=1.0");
}

TEST(AadTokenUrlTest, ABaseWithoutTrailingSlashLosesItsLastSegment) {
  EXPECT_EQ(*aadTokenUrl("https://h/base", "tid"), "https://h/tid/oauth2/token?api-version=1.0");
  EXPECT_EQ(*aadTokenUrl("https://h/base/", "tid"),
            "https://h/base/tid/oauth2/token?api-version=1.0");
  EXPECT_EQ(*aadTokenUrl("https://127.0.0.1:8443", "tid"),
            "https://127.0.0.1:8443/tid/oauth2/token?api-version=1.0");
  EXPECT_EQ(*aadTokenUrl("https://h/a?x=1#f", "tid"), "https://h/tid/oauth2/token?api-version=1.0");
}

TEST(AadTokenUrlTest, AcceptsHttpsOnly) {
  for (const char* endpoint :
       {"http://login.microsoftonline.com/", "http://127.0.0.1:8080/", "http://localhost/",
        "ftp://h/", "login.microsoftonline.com/", "https:///path", "https:/h/"}) {
    const auto url = aadTokenUrl(endpoint, "tid");
    ASSERT_FALSE(url.has_value()) << endpoint;
    EXPECT_EQ(url.error().code, ErrorCode::InvalidArgument);
  }
}

TEST(AadTokenUrlTest, RejectsTenantsThatAreNotOneSegment) {
  for (const char* tenant :
       {"", ".", "..", "a/b", "//evil.example", "t?x=1", "t#f", "https:x", "a b", "t%2F"}) {
    EXPECT_FALSE(aadTokenUrl("", tenant).has_value()) << tenant;
  }
}

TEST(SelectClientSecretTest, PrefersClientSecretThenTheOnlyKey) {
  EXPECT_EQ(*selectClientSecret(Credential{{{"clientSecret", "a"}, {"other", "b"}}}), "a");
  EXPECT_EQ(*selectClientSecret(Credential{{{"password", "only"}}}), "only");
}

TEST(SelectClientSecretTest, RefusesAmbiguousOrEmptySecrets) {
  const auto ambiguous = selectClientSecret(Credential{{{"a", "1"}, {"b", "2"}}});
  ASSERT_FALSE(ambiguous.has_value());
  EXPECT_EQ(ambiguous.error().code, ErrorCode::InvalidArgument);
  EXPECT_NE(ambiguous.error().message.find("a, b"), std::string::npos);
  EXPECT_EQ(ambiguous.error().message.find('1'), std::string::npos);  // names keys, not values
  EXPECT_FALSE(selectClientSecret(Credential{}).has_value());
  EXPECT_FALSE(selectClientSecret(Credential{{{"clientSecret", ""}}}).has_value());
}

TEST_F(AadTokenProviderTest, PostsTheClientSecretFormLikeTheOriginal) {
  http_.reply(200, aadOkBody());
  const auto token = fetch(spRequest());
  ASSERT_TRUE(token.has_value()) << token.error().message;
  const auto request = http_.lastRequest();
  EXPECT_EQ(request.method, boost::beast::http::verb::post);
  EXPECT_EQ(request.url,
            "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/oauth2/"
            "token?api-version=1.0");
  EXPECT_EQ(request.headers, (http::Headers{{"Content-Type", "application/x-www-form-urlencoded"},
                                            {"User-Agent", "nmi/test"}}));
  EXPECT_EQ(request.body,
            "client_id=11111111-2222-3333-4444-555555555555&client_secret=s3cr3t%2B%2F%3D"
            "&grant_type=client_credentials&resource=https%3A%2F%2Fvault.azure.net");
  EXPECT_EQ(token->access_token, "aad-token");
  EXPECT_EQ(token->client_id, "11111111-2222-3333-4444-555555555555");
  EXPECT_EQ(toUnixSeconds(token->expires_on), 1704070799);
}

TEST_F(AadTokenProviderTest, PostsASignedAssertionForACertificate) {
  TokenRequest request = spRequest(TokenRequest::Kind::ServicePrincipalCertificate);
  request.credential = {"default", "sp-cert"};
  http_.reply(200, aadOkBody());
  ASSERT_TRUE(fetch(request).has_value());
  const auto fields = formFields(http_.lastRequest().body);
  ASSERT_EQ(fields.size(), 5U);
  EXPECT_EQ(fields[0].first, "client_assertion");
  EXPECT_EQ(fields[1], (std::pair<std::string, std::string>{
                           "client_assertion_type",
                           "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}));
  EXPECT_EQ(fields[2].first, "client_id");
  EXPECT_EQ(fields[3], (std::pair<std::string, std::string>{"grant_type", "client_credentials"}));
  EXPECT_EQ(fields[4],
            (std::pair<std::string, std::string>{"resource", "https://vault.azure.net"}));
  const std::string& jwt = fields[0].second;
  const auto dot = jwt.find('.');
  const auto claims = nlohmann::json::parse(
      base64Decode(jwt.substr(dot + 1, jwt.find('.', dot + 1) - dot - 1)).value_or(""), nullptr,
      false);
  EXPECT_EQ(claims.at("aud"), http_.lastRequest().url);
  EXPECT_EQ(claims.at("iss"), request.client_id);
  EXPECT_EQ(claims.at("nbf"), kNow);
  EXPECT_EQ(claims.at("exp"), kNow + 600);
  EXPECT_EQ(http_.lastRequest().body.find("client_secret"), std::string::npos);
}

TEST_F(AadTokenProviderTest, ParsesTheCertificateOnceWhileTheSecretIsUnchanged) {
  TokenRequest request = spRequest(TokenRequest::Kind::ServicePrincipalCertificate);
  request.credential = {"default", "sp-cert"};
  http_.reply(200, aadOkBody());
  http_.reply(200, aadOkBody());
  http_.reply(200, aadOkBody());
  ASSERT_TRUE(fetch(request));
  ASSERT_TRUE(fetch(request));
  EXPECT_EQ(provider_.certificateParsesForTest(), 1U);
  // A rotated Secret is parsed again.
  credentials_.set({"default", "sp-cert"},
                   Credential{{{"certificate", readTestFile("rsa_nopass.pfx")}, {"password", ""}}});
  ASSERT_TRUE(fetch(request));
  EXPECT_EQ(provider_.certificateParsesForTest(), 2U);
  EXPECT_EQ(provider_.cachedCertificatesForTest(), 1U);
  EXPECT_EQ(credentials_.loads(), 3);
}

TEST_F(AadTokenProviderTest, NonRsaCertificateIsInvalidArgument) {
  TokenRequest request = spRequest(TokenRequest::Kind::ServicePrincipalCertificate);
  request.credential = {"default", "sp-ec"};
  credentials_.set({"default", "sp-ec"}, Credential{{{"certificate", readTestFile("ec.pfx")},
                                                     {"password", "test-password"}}});
  const auto token = fetch(request);
  ASSERT_FALSE(token.has_value());
  EXPECT_EQ(token.error().code, ErrorCode::InvalidArgument);
  EXPECT_EQ(http_.calls(), 0U);
}

TEST_F(AadTokenProviderTest, CertificateSecretWithoutCertificateKeyIsInvalidArgument) {
  TokenRequest request = spRequest(TokenRequest::Kind::ServicePrincipalCertificate);
  const auto token = fetch(request);  // sp-secret has only clientSecret
  ASSERT_FALSE(token.has_value());
  EXPECT_EQ(token.error().code, ErrorCode::InvalidArgument);
}

TEST_F(AadTokenProviderTest, UsesTheAdfsEndpoint) {
  TokenRequest request = spRequest();
  request.ad_endpoint = "https://adfs.contoso.com/";
  request.tenant_id = "adfs";
  http_.reply(200, R"({"access_token":"adfs-token","token_type":"bearer","expires_in":3600})");
  const auto token = fetch(request);
  ASSERT_TRUE(token.has_value()) << token.error().message;
  EXPECT_EQ(http_.lastRequest().url, "https://adfs.contoso.com/adfs/oauth2/token?api-version=1.0");
  EXPECT_EQ(toUnixSeconds(token->expires_on), kNow + 3600);
  EXPECT_EQ(token->resource, "https://vault.azure.net");
}

TEST_F(AadTokenProviderTest, InvalidClientIsAnUpstreamRefusalNamingAadsError) {
  http_.reply(
      401,
      R"({"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: x","error_codes":[7000215]})");
  const auto token = fetch(spRequest());
  ASSERT_FALSE(token.has_value());
  EXPECT_EQ(token.error().code, ErrorCode::Upstream);
  EXPECT_EQ(token.error().message,
            "aad answered 401: invalid_client: AADSTS7000215: Invalid client secret provided.");
  EXPECT_EQ(token.error().message.find("s3cr3t"), std::string::npos);
  EXPECT_EQ(http_.calls(), 1U);
}

TEST_F(AadTokenProviderTest, RetriesThrottlingAndServerErrors) {
  http_.reply(429, "", {{"Retry-After", "1"}});
  http_.reply(503, "");
  http_.reply(200, aadOkBody());
  ASSERT_TRUE(fetch(spRequest()).has_value());
  EXPECT_EQ(http_.calls(), 3U);
  EXPECT_EQ(clock_.delays().front(), 1s);
}

TEST_F(AadTokenProviderTest, UnreadableSecretIsUnavailable) {
  TokenRequest request = spRequest();
  request.credential = {"default", "missing"};
  const auto token = fetch(request);
  ASSERT_FALSE(token.has_value());
  EXPECT_EQ(token.error().code, ErrorCode::Unavailable);
  EXPECT_NE(token.error().message.find("default/missing"), std::string::npos);
  EXPECT_EQ(http_.calls(), 0U);
}

TEST_F(AadTokenProviderTest, RejectsANonHttpsEndpointBeforeReadingTheSecret) {
  TokenRequest request = spRequest();
  request.ad_endpoint = "http://127.0.0.1:8080/";
  const auto token = fetch(request);
  ASSERT_FALSE(token.has_value());
  EXPECT_EQ(token.error().code, ErrorCode::InvalidArgument);
  EXPECT_EQ(credentials_.loads(), 0);
  EXPECT_EQ(http_.calls(), 0U);
}

TEST_F(AadTokenProviderTest, RefusesAHostNotAllowedBeforeReadingTheSecret) {
  for (const auto* endpoint : {"https://evil.example/", "https://adfs.contoso.com:8443/",
                               "https://login.microsoftonline.com:444/"}) {
    SCOPED_TRACE(endpoint);
    TokenRequest request = spRequest();
    request.ad_endpoint = endpoint;
    const auto token = fetch(request);
    ASSERT_FALSE(token.has_value());
    EXPECT_EQ(token.error().code, ErrorCode::PermissionDenied);
    EXPECT_NE(token.error().message.find("azure ad host"), std::string::npos);
  }
  EXPECT_EQ(credentials_.loads(), 0);
  EXPECT_EQ(http_.calls(), 0U);
}

TEST_F(AadTokenProviderTest, RejectsManagedIdentitiesAndIncompleteRequests) {
  TokenRequest mi = spRequest();
  mi.kind = TokenRequest::Kind::ManagedIdentity;
  EXPECT_EQ(codeOf(fetch(mi)), ErrorCode::InvalidArgument);
  TokenRequest no_client = spRequest();
  no_client.client_id.clear();
  EXPECT_EQ(codeOf(fetch(no_client)), ErrorCode::InvalidArgument);
  TokenRequest no_resource = spRequest();
  no_resource.resource.clear();
  EXPECT_EQ(codeOf(fetch(no_resource)), ErrorCode::InvalidArgument);
  EXPECT_EQ(http_.calls(), 0U);
}

TEST_F(AadTokenProviderTest, MalformedResponseIsUnavailable) {
  http_.reply(200, R"({"access_token":"t"})");
  const auto token = fetch(spRequest());
  ASSERT_FALSE(token.has_value());
  EXPECT_EQ(token.error().code, ErrorCode::Unavailable);
}

}  // namespace
}  // namespace nmi::token
