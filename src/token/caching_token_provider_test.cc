#include "token/caching_token_provider.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <gtest/gtest.h>

#include "tests/fakes/fake_clock.h"
#include "tests/fakes/fake_token_provider.h"
#include "tests/fakes/run_sync.h"
#include "tests/fakes/test_values.h"

namespace nmi::token {
namespace {

using nmi::testing::codeOf;
using nmi::testing::metricValue;

using namespace std::chrono_literals;
namespace asio = boost::asio;

TokenRequest mi(std::string resource = "https://vault.azure.net") {
  TokenRequest r;
  r.kind = TokenRequest::Kind::ManagedIdentity;
  r.resource = std::move(resource);
  r.selector = Selector::ClientId;
  r.selector_value = "client";
  return r;
}

TokenRequest sp(std::string resource = "https://vault.azure.net") {
  TokenRequest r;
  r.kind = TokenRequest::Kind::ServicePrincipalSecret;
  r.resource = std::move(resource);
  r.client_id = "app";
  r.tenant_id = "tenant";
  r.credential = {"default", "secret"};
  return r;
}

struct Pending {
  std::optional<Result<AccessToken>> result;
};

class CachingTokenProviderTest : public ::testing::Test {
 protected:
  static CacheOptions defaults() { return CacheOptions{}; }

  void recreate(CacheOptions options) {
    cache_ = std::make_unique<CachingTokenProvider>(mi_, sp_, clock_, metrics_, options);
  }

  Result<AccessToken> get(const TokenRequest& request, const std::string& requester = "pod-a") {
    return testing::runSync(io_, cache_->fetch(request, std::string(requester), nullptr));
  }

  std::shared_ptr<Pending> spawnGet(const TokenRequest& request,
                                    const std::string& requester = "pod-a",
                                    CancellationSignal* cancel = nullptr) {
    auto pending = std::make_shared<Pending>();
    asio::co_spawn(
        asio::make_strand(io_),
        [this, pending, request, requester, cancel]() -> Task<void> {
          pending->result.emplace(co_await cache_->fetch(request, std::string(requester), cancel));
        },
        asio::detached);
    return pending;
  }

  void poll() {
    io_.restart();
    io_.poll();
  }

  double metric(const std::string& name, const std::string& label) {
    return metricValue(metrics_.serialize(), name, {label}).value_or(-1);
  }

  asio::io_context io_;
  testing::FakeClock clock_;
  testing::FakeTokenProvider mi_{&clock_};
  testing::FakeTokenProvider sp_{&clock_};
  metrics::NmiMetrics metrics_;
  std::unique_ptr<CachingTokenProvider> cache_ =
      std::make_unique<CachingTokenProvider>(mi_, sp_, clock_, metrics_, defaults());
};

TEST_F(CachingTokenProviderTest, ServesAHitWithoutCallingUpstream) {
  const auto first = get(mi());
  ASSERT_TRUE(first.has_value()) << first.error().message;
  clock_.advance(50min);
  const auto second = get(mi());
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->access_token, first->access_token);
  EXPECT_EQ(mi_.calls(), 1U);
  EXPECT_EQ(metric("nmi_token_cache_requests_total", R"(result="hit")"), 1.0);
  EXPECT_EQ(metric("nmi_token_cache_requests_total", R"(result="miss")"), 1.0);
  EXPECT_EQ(metric("nmi_token_cache_entries", ""), 1.0);
}

TEST_F(CachingTokenProviderTest, KeysOnTheWholeRequest) {
  ASSERT_TRUE(get(mi("https://a")));
  ASSERT_TRUE(get(mi("https://b")));
  TokenRequest other_identity = mi("https://a");
  other_identity.selector_value = "other";
  ASSERT_TRUE(get(other_identity));
  ASSERT_TRUE(get(mi("https://a")));
  EXPECT_EQ(mi_.calls(), 3U);
  EXPECT_EQ(cache_->size(), 3U);
}

TEST_F(CachingTokenProviderTest, SpellingsOfOneIdentityShareOneEntry) {
  TokenRequest lower = mi();
  lower.selector_value = "aaaaaaaa-1111-1111-1111-aaaaaaaaaaaa";
  TokenRequest upper = lower;
  upper.selector_value = "AAAAAAAA-1111-1111-1111-AAAAAAAAAAAA";
  TokenRequest mixed = lower;
  mixed.selector_value = "aAaAaAaA-1111-1111-1111-AaAaAaAaAaAa";
  const auto first = get(upper, "pod-a");
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(get(lower, "pod-b")->access_token, first->access_token);
  EXPECT_EQ(get(mixed, "pod-a")->access_token, first->access_token);
  EXPECT_EQ(mi_.calls(), 1U);
  EXPECT_EQ(cache_->size(), 1U);
  // The first spelling is what went upstream; IMDS accepts any.
  EXPECT_EQ(mi_.requests().front().selector_value, upper.selector_value);
  // Resource ids and service principals' application ids alike.
  TokenRequest by_resource = mi();
  by_resource.selector = Selector::ResourceId;
  by_resource.selector_value = "/subscriptions/s/resourceGroups/rg/providers/x/id-a";
  TokenRequest by_resource_upper = by_resource;
  by_resource_upper.selector_value = "/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/X/ID-A";
  ASSERT_TRUE(get(by_resource));
  ASSERT_TRUE(get(by_resource_upper));
  EXPECT_EQ(mi_.calls(), 2U);
  TokenRequest app_upper = sp();
  app_upper.client_id = "APP";
  ASSERT_TRUE(get(sp()));
  ASSERT_TRUE(get(app_upper));
  EXPECT_EQ(sp_.calls(), 1U);
}

TEST_F(CachingTokenProviderTest, ASpellingNeverReachesAnotherIdentitysEntry) {
  TokenRequest a = mi();
  a.selector_value = "aaaaaaaa-1111-1111-1111-aaaaaaaaaaaa";
  TokenRequest b = mi();
  b.selector_value = "BBBBBBBB-1111-1111-1111-AAAAAAAAAAAA";
  TokenRequest a_by_resource = mi();
  a_by_resource.selector = Selector::ResourceId;  // another selector kind is another key
  a_by_resource.selector_value = a.selector_value;
  const auto token_a = get(a);
  ASSERT_TRUE(token_a.has_value());
  const auto token_b = get(b);
  const auto token_r = get(a_by_resource);
  ASSERT_TRUE(token_b.has_value());
  ASSERT_TRUE(token_r.has_value());
  EXPECT_NE(token_b->access_token, token_a->access_token);
  EXPECT_NE(token_r->access_token, token_a->access_token);
  EXPECT_EQ(mi_.calls(), 3U);
  // Only identifiers ignore case: a resource (audience) or a Secret name does not.
  ASSERT_TRUE(get(mi("https://vault.azure.net")));
  ASSERT_TRUE(get(mi("https://VAULT.azure.net")));
  TokenRequest other_secret = sp();
  other_secret.credential.name = "SECRET";
  ASSERT_TRUE(get(sp()));
  ASSERT_TRUE(get(other_secret));
  EXPECT_EQ(mi_.calls(), 5U);
  EXPECT_EQ(sp_.calls(), 2U);
}

TEST(TokenRequestKeyTest, EqualityAndHashAgree) {
  const TokenRequestKeyEqual eq;
  const TokenRequestHash hash;
  TokenRequest a = mi();
  a.selector_value = "AbC-123";
  TokenRequest b = a;
  b.selector_value = "aBc-123";
  EXPECT_TRUE(eq(a, b));
  EXPECT_EQ(hash(a), hash(b));
  b.selector_value = "abc-124";
  EXPECT_FALSE(eq(a, b));
  TokenRequest c = sp();
  TokenRequest d = sp();
  d.client_id = "APP";
  EXPECT_TRUE(eq(c, d));
  EXPECT_EQ(hash(c), hash(d));
  d.tenant_id = "TENANT";
  EXPECT_FALSE(eq(c, d));
}

TEST_F(CachingTokenProviderTest, RoutesManagedIdentitiesAndServicePrincipals) {
  ASSERT_TRUE(get(mi()));
  ASSERT_TRUE(get(sp()));
  TokenRequest cert = sp();
  cert.kind = TokenRequest::Kind::ServicePrincipalCertificate;
  ASSERT_TRUE(get(cert));
  EXPECT_EQ(mi_.calls(), 1U);
  EXPECT_EQ(sp_.calls(), 2U);
  EXPECT_EQ(sp_.requests().back(), cert);
}

TEST_F(CachingTokenProviderTest, CoalescesConcurrentMissesIntoOneUpstreamCall) {
  mi_.hold(true);
  std::vector<std::shared_ptr<Pending>> pending;
  pending.reserve(10);
  for (int i = 0; i < 10; ++i) {
    pending.push_back(spawnGet(mi(), "pod-" + std::to_string(i % 3)));
  }
  poll();
  EXPECT_EQ(mi_.calls(), 1U);
  EXPECT_EQ(cache_->inFlightForTest(), 1U);
  for (const auto& p : pending) {
    EXPECT_FALSE(p->result.has_value());
  }
  mi_.releaseAll();
  poll();
  for (const auto& p : pending) {
    ASSERT_TRUE(p->result.has_value());
    ASSERT_TRUE(p->result->has_value());
    EXPECT_EQ((*p->result)->access_token, "token-1");
  }
  EXPECT_EQ(metric("nmi_token_cache_requests_total", R"(result="miss")"), 1.0);
  EXPECT_EQ(metric("nmi_token_cache_requests_total", R"(result="coalesced")"), 9.0);
  EXPECT_EQ(cache_->inFlightForTest(), 0U);
}

TEST_F(CachingTokenProviderTest, EveryWaiterGetsTheSameError) {
  mi_.hold(true);
  mi_.push(makeError(ErrorCode::Upstream, "imds answered 400"));
  auto a = spawnGet(mi(), "pod-a");
  auto b = spawnGet(mi(), "pod-b");
  poll();
  mi_.releaseAll();
  poll();
  ASSERT_TRUE(a->result && b->result);
  EXPECT_EQ(codeOf(*a->result), ErrorCode::Upstream);
  ASSERT_FALSE(b->result->has_value());
  EXPECT_EQ(b->result->error().message, "imds answered 400");
  EXPECT_EQ(mi_.calls(), 1U);
}

TEST_F(CachingTokenProviderTest, CancellingTheLastWaiterCancelsTheUpstreamCall) {
  mi_.hold(true);
  CancellationSignal cancel;
  auto pending = spawnGet(mi(), "pod-a", &cancel);
  poll();
  ASSERT_EQ(mi_.heldCount(), 1U);
  cancel.cancel();
  poll();
  ASSERT_TRUE(pending->result.has_value());
  EXPECT_EQ(codeOf(*pending->result), ErrorCode::Cancelled);
  EXPECT_EQ(mi_.cancelledCalls(), 1U);
  EXPECT_EQ(cache_->inFlightForTest(), 0U);
  EXPECT_EQ(cache_->size(), 0U);
  // The next caller starts afresh rather than joining the cancelled fetch.
  mi_.hold(false);
  const auto next = get(mi());
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(mi_.calls(), 2U);
}

TEST_F(CachingTokenProviderTest, CancellingOneOfTwoWaitersLetsTheFetchGoOn) {
  mi_.hold(true);
  CancellationSignal cancel;
  auto leaving = spawnGet(mi(), "pod-a", &cancel);
  auto staying = spawnGet(mi(), "pod-b");
  poll();
  cancel.cancel();
  poll();
  ASSERT_TRUE(leaving->result.has_value());
  EXPECT_EQ(codeOf(*leaving->result), ErrorCode::Cancelled);
  EXPECT_FALSE(staying->result.has_value());
  EXPECT_EQ(mi_.cancelledCalls(), 0U);
  mi_.releaseAll();
  poll();
  ASSERT_TRUE(staying->result.has_value());
  ASSERT_TRUE(staying->result->has_value());
  EXPECT_EQ(cache_->size(), 1U);
}

TEST_F(CachingTokenProviderTest, AnAlreadyCancelledRequestDoesNothing) {
  CancellationSignal cancel;
  cancel.cancel();
  const auto result = testing::runSync(io_, cache_->fetch(mi(), "pod-a", &cancel));
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, ErrorCode::Cancelled);
  EXPECT_EQ(mi_.calls(), 0U);
}

TEST_F(CachingTokenProviderTest, RefreshesAheadInTheBackgroundAndServesTheCachedToken) {
  ASSERT_TRUE(get(mi()));
  clock_.advance(56min);  // 4 min left: inside the 5 min window, above the 1 min minimum
  mi_.hold(true);
  auto during = spawnGet(mi());
  poll();
  ASSERT_TRUE(during->result.has_value());
  ASSERT_TRUE(during->result->has_value());
  EXPECT_EQ((*during->result)->access_token, "token-1");
  EXPECT_EQ(mi_.calls(), 2U);
  EXPECT_EQ(metric("nmi_token_cache_requests_total", R"(result="refresh")"), 1.0);
  // While the refresh runs, hits start no second one.
  auto again = spawnGet(mi());
  poll();
  ASSERT_TRUE(again->result.has_value());
  EXPECT_EQ(mi_.calls(), 2U);
  mi_.releaseAll();
  poll();
  ASSERT_TRUE(cache_->peekForTest(mi()).has_value());
  EXPECT_EQ(cache_->peekForTest(mi())->access_token, "token-2");
  EXPECT_EQ(cache_->inFlightForTest(), 0U);
}

TEST_F(CachingTokenProviderTest, LessThanTheMinimumLifetimeForcesAFetch) {
  ASSERT_TRUE(get(mi()));
  clock_.advance(59min + 30s);  // 30 s left
  const auto token = get(mi());
  ASSERT_TRUE(token.has_value());
  EXPECT_EQ(token->access_token, "token-2");
  EXPECT_EQ(mi_.calls(), 2U);
  EXPECT_EQ(metric("nmi_token_cache_requests_total", R"(result="miss")"), 2.0);
}

TEST_F(CachingTokenProviderTest, ALeavingWaiterNeverCancelsABackgroundRefresh) {
  ASSERT_TRUE(get(mi()));
  clock_.advance(56min);
  mi_.hold(true);
  auto hit = spawnGet(mi());  // starts the background refresh
  poll();
  ASSERT_TRUE(hit->result.has_value());
  clock_.advance(3min + 30s);  // 30 s left: a miss, which joins the running refresh
  CancellationSignal cancel;
  auto waiter = spawnGet(mi(), "pod-a", &cancel);
  poll();
  EXPECT_EQ(metric("nmi_token_cache_requests_total", R"(result="coalesced")"), 1.0);
  cancel.cancel();
  poll();
  ASSERT_TRUE(waiter->result.has_value());
  EXPECT_EQ(codeOf(*waiter->result), ErrorCode::Cancelled);
  EXPECT_EQ(mi_.cancelledCalls(), 0U);
  mi_.releaseAll();
  poll();
  EXPECT_EQ(cache_->peekForTest(mi())->access_token, "token-2");
}

TEST_F(CachingTokenProviderTest, ErrorsAreNotCached) {
  mi_.push(makeError(ErrorCode::Timeout, "budget spent"));
  const auto failed = get(mi());
  ASSERT_FALSE(failed.has_value());
  EXPECT_EQ(failed.error().code, ErrorCode::Timeout);
  EXPECT_EQ(cache_->size(), 0U);
  const auto ok = get(mi());
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(mi_.calls(), 2U);
}

TEST_F(CachingTokenProviderTest, AnExpiredTokenFromUpstreamIsAnError) {
  AccessToken expired;
  expired.access_token = "old";
  expired.expires_on = clock_.systemNow() - 1s;
  mi_.setNext(expired);
  const auto result = get(mi());
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, ErrorCode::Unavailable);
  EXPECT_EQ(cache_->size(), 0U);
}

TEST_F(CachingTokenProviderTest, EvictsTheLeastRecentlyUsedBeyondTheBound) {
  CacheOptions options;
  options.max_entries = 3;
  recreate(options);
  ASSERT_TRUE(get(mi("https://1")));
  ASSERT_TRUE(get(mi("https://2")));
  ASSERT_TRUE(get(mi("https://3")));
  ASSERT_TRUE(get(mi("https://1")));  // 2 is now the least recently used
  ASSERT_TRUE(get(mi("https://4")));
  EXPECT_EQ(cache_->size(), 3U);
  EXPECT_TRUE(cache_->peekForTest(mi("https://1")).has_value());
  EXPECT_FALSE(cache_->peekForTest(mi("https://2")).has_value());
  EXPECT_TRUE(cache_->peekForTest(mi("https://3")).has_value());
  EXPECT_TRUE(cache_->peekForTest(mi("https://4")).has_value());
  EXPECT_EQ(metric("nmi_token_cache_entries", ""), 3.0);
}

TEST_F(CachingTokenProviderTest, CapsTheDistinctTokensOnePodMayMissOn) {
  CacheOptions options;
  options.per_pod_max_keys = 2;
  recreate(options);
  ASSERT_TRUE(get(mi("https://1"), "pod-a"));
  ASSERT_TRUE(get(mi("https://2"), "pod-a"));
  const auto third = get(mi("https://3"), "pod-a");
  ASSERT_FALSE(third.has_value());
  EXPECT_EQ(third.error().code, ErrorCode::ResourceExhausted);
  EXPECT_EQ(third.error().message, "too many distinct tokens for this pod");
  EXPECT_EQ(metric("nmi_token_rejections_total", R"(reason="per_pod_keys")"), 1.0);
  // Other pods are not affected, hits are free, and a key it already has may be fetched again.
  EXPECT_TRUE(get(mi("https://3"), "pod-b"));
  EXPECT_TRUE(get(mi("https://1"), "pod-a"));
  clock_.advance(59min + 30s);
  EXPECT_TRUE(get(mi("https://1"), "pod-a"));
  EXPECT_EQ(mi_.calls(), 4U);
  // Keys unused for recent_use (30 min) no longer count.
  clock_.advance(31min);
  EXPECT_TRUE(get(mi("https://5"), "pod-a"));
}

TEST_F(CachingTokenProviderTest, RateLimitsMissesPerPod) {
  CacheOptions options;
  options.per_pod_miss_rate = 1.0;
  options.per_pod_miss_burst = 3;
  recreate(options);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(get(mi("https://" + std::to_string(i)), "pod-a"));
  }
  const auto limited = get(mi("https://9"), "pod-a");
  ASSERT_FALSE(limited.has_value());
  EXPECT_EQ(limited.error().code, ErrorCode::ResourceExhausted);
  EXPECT_EQ(metric("nmi_token_rejections_total", R"(reason="per_pod_rate")"), 1.0);
  EXPECT_TRUE(get(mi("https://0"), "pod-a"));  // a hit costs nothing
  EXPECT_TRUE(get(mi("https://8"), "pod-b"));
  clock_.advance(1s);
  EXPECT_TRUE(get(mi("https://9"), "pod-a"));
  EXPECT_EQ(mi_.calls(), 5U);
}

TEST_F(CachingTokenProviderTest, JoiningARunningFetchCostsNoRateToken) {
  CacheOptions options;
  options.per_pod_miss_rate = 0;
  options.per_pod_miss_burst = 1;
  recreate(options);
  mi_.hold(true);
  std::vector<std::shared_ptr<Pending>> pending;
  pending.reserve(5);
  for (int i = 0; i < 5; ++i) {
    pending.push_back(spawnGet(mi(), "pod-a"));
  }
  poll();
  mi_.releaseAll();
  poll();
  for (const auto& p : pending) {
    ASSERT_TRUE(p->result.has_value());
    EXPECT_TRUE(p->result->has_value());
  }
}

TEST_F(CachingTokenProviderTest, SweeperDropsExpiredEntries) {
  ASSERT_TRUE(get(mi("https://1")));
  clock_.advance(30min);
  ASSERT_TRUE(get(mi("https://2")));
  clock_.advance(31min);  // 1 expired, 2 has 29 min left
  cache_->sweepForTest(io_.get_executor());
  poll();
  EXPECT_FALSE(cache_->peekForTest(mi("https://1")).has_value());
  EXPECT_TRUE(cache_->peekForTest(mi("https://2")).has_value());
  EXPECT_EQ(metric("nmi_token_cache_entries", ""), 1.0);
  EXPECT_EQ(mi_.calls(), 2U);
}

TEST_F(CachingTokenProviderTest, SweeperRefreshesRecentlyUsedTokensOnly) {
  ASSERT_TRUE(get(mi("https://used")));
  ASSERT_TRUE(get(mi("https://idle")));
  clock_.advance(40min);
  ASSERT_TRUE(get(mi("https://used")));  // a hit: 20 min left, no refresh yet
  clock_.advance(16min);                 // 4 min left; used 16 min ago, idle 56 min ago
  cache_->sweepForTest(io_.get_executor());
  poll();
  EXPECT_EQ(mi_.calls(), 3U);
  EXPECT_EQ(mi_.requests().back(), mi("https://used"));
  EXPECT_EQ(cache_->peekForTest(mi("https://used"))->access_token, "token-3");
  EXPECT_EQ(metric("nmi_token_cache_requests_total", R"(result="refresh")"), 1.0);
}

TEST_F(CachingTokenProviderTest, AFailedBackgroundRefreshKeepsTheCachedToken) {
  ASSERT_TRUE(get(mi()));
  clock_.advance(56min);
  mi_.push(makeError(ErrorCode::Unavailable, "imds down"));
  const auto hit = get(mi());
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(mi_.calls(), 2U);
  EXPECT_EQ(cache_->peekForTest(mi())->access_token, "token-1");
}

TEST_F(CachingTokenProviderTest, SweeperStopsWhenAsked) {
  cache_->start(io_.get_executor());
  cache_->stop();
  const auto start = std::chrono::steady_clock::now();
  io_.restart();
  io_.run_for(5s);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}

TEST_F(CachingTokenProviderTest, ServesCallersOnSeveralThreads) {
  CacheOptions options;
  options.per_pod_miss_burst = 1000;
  recreate(options);
  std::atomic<int> ok{0};
  constexpr int kRequests = 400;
  for (int i = 0; i < kRequests; ++i) {
    asio::co_spawn(
        asio::make_strand(io_),
        [this, i, &ok]() -> Task<void> {
          const auto request = i % 2 == 0 ? mi("https://" + std::to_string(i % 7))
                                          : sp("https://" + std::to_string(i % 5));
          auto token = co_await cache_->fetch(request, "pod-" + std::to_string(i % 4), nullptr);
          ok += token.has_value() ? 1 : 0;
        },
        asio::detached);
  }
  std::vector<std::thread> threads;
  threads.reserve(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([this] { io_.run(); });
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(ok.load(), kRequests);
  EXPECT_GE(mi_.calls(), 7U);
  EXPECT_GE(sp_.calls(), 5U);
  EXPECT_EQ(cache_->size(), 12U);
}

}  // namespace
}  // namespace nmi::token
