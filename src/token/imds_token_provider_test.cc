#include "token/imds_token_provider.h"

#include <array>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <gtest/gtest.h>

#include "tests/fakes/fake_clock.h"
#include "tests/fakes/fake_http_client.h"
#include "tests/fakes/run_sync.h"
#include "tests/fakes/test_values.h"

namespace nmi::token {
namespace {

using nmi::testing::codeOf;
using nmi::testing::metricValue;

using namespace std::chrono_literals;
namespace asio = boost::asio;

// 2024-01-01T00:00:00Z, FakeClock's start.
constexpr std::int64_t kNow = 1704067200;

std::string okBody(std::int64_t expires_on = kNow + 3600) {
  return R"({"access_token":"imds-token","client_id":"cid","expires_in":"3600","expires_on":")" +
         std::to_string(expires_on) + R"(","ext_expires_in":"3600","not_before":")" +
         std::to_string(kNow - 300) +
         R"(","resource":"https://vault.azure.net","token_type":"Bearer"})";
}

TokenRequest miRequest(Selector selector, std::string value,
                       std::string resource = "https://vault.azure.net") {
  TokenRequest r;
  r.kind = TokenRequest::Kind::ManagedIdentity;
  r.resource = std::move(resource);
  r.selector = selector;
  r.selector_value = std::move(value);
  return r;
}

class ImdsTokenProviderTest : public ::testing::Test {
 protected:
  // Backoff waits return at once, moving the clock (clock_.delays() records them).
  ImdsTokenProviderTest() { clock_.setAutoAdvance(true); }

  ImdsTokenProvider::Options options() {
    ImdsTokenProvider::Options o;
    o.endpoint = "169.254.169.254:80";
    o.user_agent = "nmi/test";
    return o;
  }

  Result<AccessToken> fetch(const TokenRequest& request, CancellationSignal* cancel = nullptr) {
    return testing::runSync(io_, provider_.fetchToken(request, cancel));
  }

  asio::io_context io_;
  testing::FakeClock clock_;
  testing::FakeHttpClient http_;
  metrics::NmiMetrics metrics_;
  ImdsTokenProvider provider_{http_, clock_, metrics_, options()};
};

TEST_F(ImdsTokenProviderTest, SendsClientIdSelectorExactlyAsTheOriginal) {
  http_.reply(200, okBody());
  ASSERT_TRUE(fetch(miRequest(Selector::ClientId, "00000000-1111-2222-3333-444444444444")));
  const auto request = http_.lastRequest();
  EXPECT_EQ(request.method, boost::beast::http::verb::get);
  EXPECT_EQ(
      request.url,
      "http://169.254.169.254:80/metadata/identity/oauth2/token?api-version=2018-02-01"
      "&client_id=00000000-1111-2222-3333-444444444444&resource=https%3A%2F%2Fvault.azure.net");
  EXPECT_EQ(request.headers, (http::Headers{{"Metadata", "true"}, {"User-Agent", "nmi/test"}}));
  EXPECT_TRUE(request.body.empty());
  EXPECT_EQ(request.timeout, 10s);
}

TEST_F(ImdsTokenProviderTest, SendsResourceIdAndObjectIdSelectorsInSortedOrder) {
  http_.reply(200, okBody());
  http_.reply(200, okBody());
  ASSERT_TRUE(fetch(miRequest(Selector::ResourceId,
                              "/subscriptions/s/resourceGroups/g/providers/"
                              "Microsoft.ManagedIdentity/userAssignedIdentities/my id")));
  ASSERT_TRUE(fetch(miRequest(Selector::ObjectId, "oid")));
  const auto requests = http_.requests();
  ASSERT_EQ(requests.size(), 2U);
  EXPECT_EQ(requests[0].url,
            "http://169.254.169.254:80/metadata/identity/oauth2/token?api-version=2018-02-01"
            "&msi_res_id=%2Fsubscriptions%2Fs%2FresourceGroups%2Fg%2Fproviders%2F"
            "Microsoft.ManagedIdentity%2FuserAssignedIdentities%2Fmy+id"
            "&resource=https%3A%2F%2Fvault.azure.net");
  EXPECT_EQ(requests[1].url,
            "http://169.254.169.254:80/metadata/identity/oauth2/token?api-version=2018-02-01"
            "&object_id=oid&resource=https%3A%2F%2Fvault.azure.net");
}

TEST_F(ImdsTokenProviderTest, NodeDefaultSendsNoSelector) {
  http_.reply(200, okBody());
  ASSERT_TRUE(fetch(miRequest(Selector::NodeDefault, "ignored", "https://management.azure.com/")));
  EXPECT_EQ(http_.lastRequest().url,
            "http://169.254.169.254:80/metadata/identity/oauth2/token?api-version=2018-02-01"
            "&resource=https%3A%2F%2Fmanagement.azure.com%2F");
}

TEST_F(ImdsTokenProviderTest, UsesTheConfiguredEndpoint) {
  ImdsTokenProvider::Options o = options();
  o.endpoint = "127.0.0.1:8081";
  o.user_agent = "";
  ImdsTokenProvider provider(http_, clock_, metrics_, o);
  http_.reply(200, okBody());
  ASSERT_TRUE(
      testing::runSync(io_, provider.fetchToken(miRequest(Selector::ClientId, "c"), nullptr)));
  EXPECT_TRUE(http_.lastRequest().url.starts_with("http://127.0.0.1:8081/metadata/identity/"));
  EXPECT_EQ(http_.lastRequest().headers, (http::Headers{{"Metadata", "true"}}));
}

TEST_F(ImdsTokenProviderTest, ParsesTheToken) {
  http_.reply(200, okBody());
  const auto token = fetch(miRequest(Selector::ClientId, "c"));
  ASSERT_TRUE(token.has_value()) << token.error().message;
  EXPECT_EQ(token->access_token, "imds-token");
  EXPECT_EQ(token->client_id, "cid");
  EXPECT_EQ(toUnixSeconds(token->expires_on), kNow + 3600);
  EXPECT_EQ(toUnixSeconds(token->not_before), kNow - 300);
  EXPECT_EQ(token->resource, "https://vault.azure.net");
}

TEST_F(ImdsTokenProviderTest, FillsResourceAndClientIdWhenImdsLeavesThemOut) {
  http_.reply(200, R"({"access_token":"t","expires_in":"3600"})");
  const auto token = fetch(miRequest(Selector::ClientId, "the-client"));
  ASSERT_TRUE(token.has_value());
  EXPECT_EQ(token->resource, "https://vault.azure.net");
  EXPECT_EQ(token->client_id, "the-client");
}

TEST_F(ImdsTokenProviderTest, MalformedSuccessBodyIsUnavailable) {
  http_.reply(200, R"({"access_token":"","expires_in":"3600"})");
  const auto token = fetch(miRequest(Selector::ClientId, "c"));
  ASSERT_FALSE(token.has_value());
  EXPECT_EQ(token.error().code, ErrorCode::Unavailable);
  EXPECT_EQ(http_.calls(), 1U);
}

TEST_F(ImdsTokenProviderTest, AnExpiredTokenIsAnError) {
  http_.reply(200, okBody(kNow - 1));
  const auto token = fetch(miRequest(Selector::ClientId, "c"));
  ASSERT_FALSE(token.has_value());
  EXPECT_EQ(token.error().code, ErrorCode::Unavailable);
}

TEST_F(ImdsTokenProviderTest, IdentityNotFoundIsAnUpstreamRefusalWithoutRetry) {
  http_.reply(400, R"({"error":"invalid_request","error_description":"Identity not found"})");
  const auto token = fetch(miRequest(Selector::ClientId, "c"));
  ASSERT_FALSE(token.has_value());
  EXPECT_EQ(token.error().code, ErrorCode::Upstream);
  EXPECT_EQ(token.error().message, "imds answered 400: invalid_request: Identity not found");
  EXPECT_EQ(http_.calls(), 1U);
  EXPECT_TRUE(clock_.delays().empty());
}

TEST_F(ImdsTokenProviderTest, DoesNotRetryUnauthorizedOrForbidden) {
  for (const unsigned status : {401U, 403U}) {
    testing::FakeHttpClient http;
    ImdsTokenProvider provider(http, clock_, metrics_, options());
    http.reply(status, "nope");
    const auto token =
        testing::runSync(io_, provider.fetchToken(miRequest(Selector::ClientId, "c"), nullptr));
    ASSERT_FALSE(token.has_value());
    EXPECT_EQ(token.error().code, ErrorCode::Upstream);
    EXPECT_EQ(token.error().message, "imds answered " + std::to_string(status));
    EXPECT_EQ(http.calls(), 1U);
  }
}

TEST_F(ImdsTokenProviderTest, Retries429HonouringRetryAfter) {
  http_.reply(429, R"({"error":"too_many_requests"})", {{"retry-after", "3"}});
  http_.reply(200, okBody());
  const auto token = fetch(miRequest(Selector::ClientId, "c"));
  ASSERT_TRUE(token.has_value()) << token.error().message;
  EXPECT_EQ(http_.calls(), 2U);
  EXPECT_EQ(clock_.delays(), (std::vector<std::chrono::milliseconds>{3s}));
}

TEST_F(ImdsTokenProviderTest, Retries410And500WithExponentialBackoff) {
  http_.reply(410, "updating");
  http_.reply(500, "oops");
  http_.reply(503, "busy");
  http_.reply(200, okBody());
  const auto token = fetch(miRequest(Selector::ClientId, "c"));
  ASSERT_TRUE(token.has_value()) << token.error().message;
  EXPECT_EQ(http_.calls(), 4U);
  const auto delays = clock_.delays();
  ASSERT_EQ(delays.size(), 3U);
  const std::array<std::chrono::milliseconds, 3> base = {500ms, 1000ms, 2000ms};
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_GE(delays[i], base[i] * 8 / 10) << i;
    EXPECT_LE(delays[i], base[i] * 12 / 10) << i;
  }
}

TEST_F(ImdsTokenProviderTest, RetriesTransportErrors) {
  http_.fail(ErrorCode::Unavailable, "connection refused");
  http_.fail(ErrorCode::Timeout, "attempt timed out");
  http_.reply(200, okBody());
  const auto token = fetch(miRequest(Selector::ClientId, "c"));
  ASSERT_TRUE(token.has_value()) << token.error().message;
  EXPECT_EQ(http_.calls(), 3U);
  const std::string text = metrics_.serialize();
  EXPECT_EQ(
      metricValue(text, "nmi_upstream_requests_total", {R"(status="error")", R"(upstream="imds")"}),
      2.0);
  EXPECT_EQ(
      metricValue(text, "nmi_upstream_requests_total", {R"(status="200")", R"(upstream="imds")"}),
      1.0);
}

TEST_F(ImdsTokenProviderTest, DoesNotRetryARequestTheClientRefuses) {
  http_.fail(ErrorCode::InvalidArgument, "bad url");
  const auto token = fetch(miRequest(Selector::ClientId, "c"));
  ASSERT_FALSE(token.has_value());
  EXPECT_EQ(token.error().code, ErrorCode::InvalidArgument);
  EXPECT_EQ(http_.calls(), 1U);
}

TEST_F(ImdsTokenProviderTest, SpentBudgetIsATimeout) {
  for (int i = 0; i < 50; ++i) {
    http_.reply(503, R"({"error":"service_unavailable"})");
  }
  const auto token = fetch(miRequest(Selector::ClientId, "c"));
  ASSERT_FALSE(token.has_value());
  EXPECT_EQ(token.error().code, ErrorCode::Timeout);
  EXPECT_NE(token.error().message.find("imds answered 503: service_unavailable"),
            std::string::npos);
  // 0.5 + 1 + 2 + 4 + 8 + 8 = 23.5 s (+/- 20 %) fit in 30 s; the waits never exceed the budget.
  std::chrono::milliseconds total{0};
  for (const auto d : clock_.delays()) {
    total += d;
  }
  EXPECT_LT(total, 30s);
  EXPECT_GE(http_.calls(), 5U);
  EXPECT_LE(http_.calls(), 8U);
}

TEST_F(ImdsTokenProviderTest, SlowAttemptsShrinkTheBudgetAndTheAttemptTimeout) {
  http_.onSend([this](const http::ClientRequest&) { clock_.advance(12s); });
  http_.fail(ErrorCode::Timeout, "slow");
  http_.fail(ErrorCode::Timeout, "slow");
  http_.fail(ErrorCode::Timeout, "slow");
  const auto token = fetch(miRequest(Selector::ClientId, "c"));
  ASSERT_FALSE(token.has_value());
  EXPECT_EQ(token.error().code, ErrorCode::Timeout);
  const auto requests = http_.requests();
  ASSERT_GE(requests.size(), 2U);
  EXPECT_EQ(requests[0].timeout, 10s);
  EXPECT_LT(requests.back().timeout, 10s);
  EXPECT_LE(requests.size(), 3U);
}

TEST_F(ImdsTokenProviderTest, ARetryAfterBeyondTheBudgetEndsAtOnce) {
  http_.reply(429, "", {{"Retry-After", "3600"}});
  const auto token = fetch(miRequest(Selector::ClientId, "c"));
  ASSERT_FALSE(token.has_value());
  EXPECT_EQ(token.error().code, ErrorCode::Timeout);
  EXPECT_EQ(http_.calls(), 1U);
  EXPECT_TRUE(clock_.delays().empty());
}

TEST_F(ImdsTokenProviderTest, CancellationDuringABackoffWaitEndsTheFetch) {
  CancellationSignal cancel;
  clock_.onWait([&cancel] { cancel.cancel(); });
  http_.reply(503, "busy");
  http_.reply(200, okBody());
  const auto token = fetch(miRequest(Selector::ClientId, "c"), &cancel);
  ASSERT_FALSE(token.has_value());
  EXPECT_EQ(token.error().code, ErrorCode::Cancelled);
  EXPECT_EQ(http_.calls(), 1U);
}

TEST_F(ImdsTokenProviderTest, CancellationInterruptsARealTimerWait) {
  ImdsTokenProvider provider(http_, systemClock(), metrics_, options());  // a real timer
  http_.reply(503, "busy", {{"Retry-After", "20"}});
  CancellationSignal cancel;
  asio::co_spawn(
      asio::make_strand(io_),
      [&cancel]() -> Task<void> {
        co_await sleepFor(systemClock(), 5ms, nullptr);
        cancel.cancel();
      },
      asio::detached);
  const auto start = std::chrono::steady_clock::now();
  const auto token =
      testing::runSync(io_, provider.fetchToken(miRequest(Selector::ClientId, "c"), &cancel));
  ASSERT_FALSE(token.has_value());
  EXPECT_EQ(token.error().code, ErrorCode::Cancelled);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

TEST_F(ImdsTokenProviderTest, CancellationDuringTheRequestIsReported) {
  http_.hold(true);
  http_.reply(200, okBody());
  CancellationSignal cancel;
  std::optional<Result<AccessToken>> result;
  asio::co_spawn(
      asio::make_strand(io_),
      [&]() -> Task<void> {
        result.emplace(co_await provider_.fetchToken(miRequest(Selector::ClientId, "c"), &cancel));
      },
      asio::detached);
  io_.poll();
  EXPECT_EQ(http_.inFlight(), 1U);
  cancel.cancel();
  io_.restart();
  io_.run();
  ASSERT_TRUE(result.has_value());
  ASSERT_FALSE(result->has_value());
  EXPECT_EQ(result->error().code, ErrorCode::Cancelled);
  EXPECT_EQ(http_.cancelledCalls(), 1U);
}

TEST_F(ImdsTokenProviderTest, AtMostFiveRequestsAreInFlight) {
  clock_.setAutoAdvance(false);  // queued fetches wait for a slot until their budget ends
  http_.hold(true);
  constexpr int kFetches = 8;
  for (int i = 0; i < kFetches; ++i) {
    http_.reply(200, okBody());
  }
  int succeeded = 0;
  for (int i = 0; i < kFetches; ++i) {
    asio::co_spawn(
        asio::make_strand(io_),
        [&, i]() -> Task<void> {
          auto token = co_await provider_.fetchToken(
              miRequest(Selector::ClientId, "client-" + std::to_string(i)), nullptr);
          succeeded += token.has_value() ? 1 : 0;
        },
        asio::detached);
  }
  io_.poll();
  EXPECT_EQ(http_.inFlight(), 5U);
  EXPECT_EQ(http_.heldCount(), 5U);
  EXPECT_EQ(http_.release(2), 2U);
  io_.restart();
  io_.poll();
  EXPECT_EQ(http_.inFlight(), 5U);
  EXPECT_EQ(succeeded, 2);
  while (succeeded < kFetches) {
    http_.releaseAll();
    io_.restart();
    io_.poll();
    ASSERT_LE(http_.inFlight(), 5U);
  }
  EXPECT_EQ(http_.maxInFlight(), 5U);
  // First come, first served: the clients were asked for in the order the fetches started.
  const auto requests = http_.requests();
  ASSERT_EQ(requests.size(), static_cast<std::size_t>(kFetches));
  for (int i = 0; i < kFetches; ++i) {
    EXPECT_NE(requests[i].url.find("client_id=client-" + std::to_string(i) + "&"),
              std::string::npos);
  }
}

TEST_F(ImdsTokenProviderTest, RejectsRequestsItCannotServe) {
  TokenRequest sp = miRequest(Selector::ClientId, "c");
  sp.kind = TokenRequest::Kind::ServicePrincipalSecret;
  EXPECT_EQ(codeOf(fetch(sp)), ErrorCode::InvalidArgument);
  EXPECT_EQ(codeOf(fetch(miRequest(Selector::ClientId, "c", ""))), ErrorCode::InvalidArgument);
  EXPECT_EQ(codeOf(fetch(miRequest(Selector::ClientId, ""))), ErrorCode::InvalidArgument);
  EXPECT_EQ(http_.calls(), 0U);
}

TEST_F(ImdsTokenProviderTest, RecordsTheOriginalsOperationTypes) {
  http_.reply(200, okBody());
  http_.reply(200, okBody());
  http_.reply(400, R"({"error":"invalid_request"})");
  ASSERT_TRUE(fetch(miRequest(Selector::ClientId, "c")));
  ASSERT_TRUE(fetch(miRequest(Selector::NodeDefault, "")));
  ASSERT_FALSE(fetch(miRequest(Selector::ResourceId, "r")));
  const std::string text = metrics_.serialize();
  EXPECT_EQ(metricValue(text, "aadpodidentity_imds_operations_duration_seconds_count",
                        {R"(operation_type="adal_token_msi_userassignedid")"}),
            1.0);
  EXPECT_EQ(metricValue(text, "aadpodidentity_imds_operations_duration_seconds_count",
                        {R"(operation_type="adal_token_msi")"}),
            1.0);
  EXPECT_EQ(metricValue(text, "aadpodidentity_imds_operations_errors_count",
                        {R"(operation_type="adal_token_msi_userassignedid")"}),
            1.0);
}

}  // namespace
}  // namespace nmi::token
