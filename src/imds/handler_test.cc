#include "imds/handler.h"

#include <chrono>
#include <functional>
#include <string>
#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "metrics/nmi_metrics.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/fake_http_client.h"
#include "tests/fakes/fake_identity_source.h"
#include "tests/fakes/fake_token_cache.h"
#include "tests/fakes/run_sync.h"

namespace nmi::imds {
namespace {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using namespace std::chrono_literals;
using identity::AssignedState;

constexpr const char* kPodIp = "10.244.0.7";
constexpr const char* kClientId = "8A1E9F4C-1B2D-4E5F-8A9B-0C1D2E3F4A5B";
constexpr const char* kTokenPath =
    "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net";

identity::PodInfo pod(std::string name, std::string ip, std::string selector) {
  identity::PodInfo p;
  p.ns = "apps";
  p.name = std::move(name);
  p.uid = "uid-" + p.name;
  p.node_name = "node-1";
  p.phase = "Running";
  p.ips = {std::move(ip)};
  if (!selector.empty()) {
    p.labels = {{"aadpodidbinding", std::move(selector)}};
  }
  return p;
}

identity::AzureIdentity userAssigned(std::string name, std::string client_id) {
  identity::AzureIdentity id;
  id.ns = "apps";
  id.name = std::move(name);
  id.type = 0;
  id.client_id = std::move(client_id);
  id.resource_id =
      "/subscriptions/s/resourceGroups/rg/providers/"
      "Microsoft.ManagedIdentity/userAssignedIdentities/" +
      id.name;
  return id;
}

// A service principal with a client secret in `secret_ns`.
identity::AzureIdentity servicePrincipal(const std::string& secret_ns) {
  auto sp = userAssigned("sp-web", kClientId);
  sp.type = 1;
  sp.tenant_id = "72f988bf-86f1-41af-91ab-2d7cd011db47";
  sp.client_password = identity::SecretRef{"sp-secret", secret_ns};
  return sp;
}

identity::AzureIdentityBinding binding(const identity::AzureIdentity& id, std::string selector) {
  return identity::AzureIdentityBinding{id.ns, id.name + "-binding", id.name, std::move(selector)};
}

identity::AzureAssignedIdentity assigned(const identity::PodInfo& p,
                                         const identity::AzureIdentity& id,
                                         AssignedState state = AssignedState::Assigned) {
  identity::AzureAssignedIdentity a;
  a.ns = id.ns;
  a.name = p.name + "-" + id.name;
  a.identity = id;
  a.binding = binding(
      id, p.labels.contains("aadpodidbinding") ? p.labels.at("aadpodidbinding") : std::string());
  a.pod = p.name;
  a.pod_namespace = p.ns;
  a.node_name = p.node_name;
  a.state = state;
  return a;
}

http::Request get(const std::string& target, bool metadata_header = true) {
  http::Request r{bhttp::verb::get, target, 11};
  r.set(bhttp::field::host, "169.254.169.254");
  if (metadata_header) {
    r.set("Metadata", "true");
  }
  return r;
}

class HandlerTest : public ::testing::Test {
 protected:
  HandlerTest() {
    options_.pod_wait = 2s;
    options_.wait.interval = 5s;
    options_.wait.retry_attempts_for_created = 2;
    options_.wait.retry_attempts_for_assigned = 1;
  }

  http::Response call(http::Request request, const std::string& peer = kPodIp) {
    ImdsHandler handler(options_, source_, tokens_, proxy_client_, clock_, metrics_, audit_);
    const http::RequestContext context{asio::ip::make_address(peer), 40'000, clock_.monotonicNow(),
                                       nullptr};
    return nmi::testing::runSync(io_, handler.handle(request, context));
  }

  // Runs `change` once a request waits for identity data (checked on every turn of the loop), so
  // that a test proves the wait ends on the change itself. The waits' deadlines are on the fake
  // clock: they pass only when a test advances it (passTheDeadline).
  void whenWaiting(std::function<void()> change) {
    asio::post(io_, [this, change = std::move(change)]() mutable {
      if (source_.changes().waiters() > 0) {
        change();
      } else {
        whenWaiting(std::move(change));
      }
    });
  }

  // Lets the waiting request's deadline pass: advances the fake clock by `by` once it waits.
  void passTheDeadline(std::chrono::milliseconds by) {
    whenWaiting([this, by] { clock_.advance(by); });
  }

  // The standard-mode set-up of one pod and its identity, `state` as MIC left it.
  identity::PodInfo podWithIdentity(AssignedState state = AssignedState::Assigned) {
    return podWithIdentity(userAssigned("id-web", kClientId), state);
  }
  identity::PodInfo podWithIdentity(const identity::AzureIdentity& id,
                                    AssignedState state = AssignedState::Assigned) {
    auto p = pod("web", kPodIp, "web");
    source_.addPod(p);
    source_.addIdentity(id);
    source_.addBinding(binding(id, "web"));
    source_.addAssigned(assigned(p, id, state));
    return p;
  }

  static nlohmann::json body(const http::Response& r) { return nlohmann::json::parse(r.body()); }

  HandlerOptions options_;
  asio::io_context io_;
  nmi::testing::FakeClock clock_;
  nmi::testing::FakeIdentitySource source_{clock_};
  nmi::testing::FakeTokenCache tokens_{clock_};
  nmi::testing::FakeHttpClient proxy_client_;
  metrics::NmiMetrics metrics_;
  AuditLog audit_{metrics_};
};

TEST_F(HandlerTest, ProbesWithoutMetadataHeaderOrResourceAreAnsweredAtOnce) {
  podWithIdentity();
  EXPECT_EQ(call(get(kTokenPath, false)).result_int(), 400);
  EXPECT_EQ(call(get("/metadata/identity/oauth2/token?api-version=2018-02-01")).result_int(), 400);
  EXPECT_TRUE(tokens_.calls().empty());
}

TEST_F(HandlerTest, AssignedIdentityIsServedWithItsCanonicalClientId) {
  const auto p = podWithIdentity();
  const auto r = call(get(kTokenPath));
  ASSERT_EQ(r.result_int(), 200) << r.body();
  const auto j = body(r);
  EXPECT_EQ(j["access_token"], "token-1");
  EXPECT_EQ(j["resource"], "https://vault.azure.net");
  EXPECT_EQ(j["client_id"], "8a1e9f4c-1b2d-4e5f-8a9b-0c1d2e3f4a5b");
  EXPECT_EQ(j["expires_in"], "3600");
  const auto calls = tokens_.calls();
  ASSERT_EQ(calls.size(), 1U);
  const auto& call0 = calls[0];
  EXPECT_EQ(call0.requester, p.uid);
  EXPECT_EQ(call0.request.kind, token::TokenRequest::Kind::ManagedIdentity);
  EXPECT_EQ(call0.request.selector, token::Selector::ClientId);
  EXPECT_EQ(call0.request.selector_value, kClientId);
  EXPECT_EQ(call0.request.resource, "https://vault.azure.net");
}

TEST_F(HandlerTest, AnotherIdentitysClientIdIsNotFound) {
  podWithIdentity();
  const auto r =
      call(get(std::string(kTokenPath) + "&client_id=00000000-0000-0000-0000-00000000000b"));
  EXPECT_EQ(r.result_int(), 404);
  EXPECT_TRUE(tokens_.calls().empty());
}

TEST_F(HandlerTest, MoreThanOneSelectorIsABadRequest) {
  podWithIdentity();
  const auto r =
      call(get(std::string(kTokenPath) + "&client_id=" + kClientId + "&msi_res_id=%2Fx"));
  EXPECT_EQ(r.result_int(), 400);
  EXPECT_TRUE(tokens_.calls().empty());
}

TEST_F(HandlerTest, AnUnknownAddressWaitsForItsPodAndIsServedWhenItAppears) {
  const auto id = userAssigned("id-web", kClientId);
  source_.addIdentity(id);
  source_.addBinding(binding(id, "web"));
  whenWaiting([&] {
    const auto p = pod("web", kPodIp, "web");
    source_.addPod(p);
    source_.addAssigned(assigned(p, id));
  });
  EXPECT_EQ(call(get(kTokenPath)).result_int(), 200);
  EXPECT_EQ(metrics_.requests_waiting.Value(), 0);
}

TEST_F(HandlerTest, NoPodAtTheAddressAfterTheWaitIsPodNotFound) {
  source_.addPod(pod("other", "10.244.0.99", "web"));
  passTheDeadline(2s);
  EXPECT_EQ(call(get(kTokenPath)).result_int(), 500);
  EXPECT_TRUE(tokens_.calls().empty());
}

TEST_F(HandlerTest, DataNotSyncedAfterTheWaitIsNotReady) {
  source_.setSynced(false, "pods: not listed yet");
  passTheDeadline(2s);
  const auto r = call(get(kTokenPath));
  EXPECT_EQ(r.result_int(), 503);
  EXPECT_EQ(r[bhttp::field::retry_after], "1");
}

TEST_F(HandlerTest, TwoLivePodsClaimingTheAddressAreAConflict) {
  source_.addPod(pod("web", kPodIp, "web"));
  source_.addPod(pod("twin", kPodIp, "web"));
  EXPECT_EQ(call(get(kTokenPath)).result_int(), 500);
  EXPECT_TRUE(tokens_.calls().empty());
}

TEST_F(HandlerTest, AnAssignmentMadeDuringTheWaitIsServed) {
  const auto p = pod("web", kPodIp, "web");
  const auto id = userAssigned("id-web", kClientId);
  source_.addPod(p);
  source_.addIdentity(id);
  source_.addBinding(binding(id, "web"));
  source_.addAssigned(assigned(p, id, AssignedState::Created));
  whenWaiting([&] { source_.addAssigned(assigned(p, id, AssignedState::Assigned)); });
  EXPECT_EQ(call(get(kTokenPath)).result_int(), 200);
  ASSERT_EQ(tokens_.calls().size(), 1U);
}

TEST_F(HandlerTest, AnAssignmentThatNeverCompletesIs404OrRetryAfterWhenAsked) {
  podWithIdentity(AssignedState::Created);
  // The budget of a Created assignment: (2 + 1 lookups) x 5 s.
  passTheDeadline(15s);
  EXPECT_EQ(call(get(kTokenPath)).result_int(), 404);
  options_.set_retry_after_header = true;
  passTheDeadline(15s);
  const auto r = call(get(kTokenPath));
  EXPECT_EQ(r.result_int(), 503);
  EXPECT_EQ(r[bhttp::field::retry_after], "20");
  EXPECT_TRUE(tokens_.calls().empty());
  EXPECT_EQ(metrics_.requests_waiting.Value(), 0);
}

TEST_F(HandlerTest, AWaitLastsExactlyItsBudget) {
  podWithIdentity(AssignedState::Created);
  bool waiting_after_14s = false;
  whenWaiting([&] {
    clock_.advance(14s);
    asio::post(io_, [&] {
      waiting_after_14s = source_.changes().waiters() > 0;
      clock_.advance(1s);
    });
  });
  EXPECT_EQ(call(get(kTokenPath)).result_int(), 404);
  EXPECT_TRUE(waiting_after_14s);
}

TEST_F(HandlerTest, AnExceptedPodGetsTheNodeIdentityNarrowedByItsOwnSelector) {
  auto p = pod("agent", kPodIp, "");
  p.labels = {{"app", "agent"}};
  source_.addPod(p);
  identity::AzurePodIdentityException e;
  e.ns = "apps";
  e.name = "agents";
  e.pod_labels = {{"app", "agent"}};
  source_.addException(e);
  ASSERT_EQ(call(get(kTokenPath)).result_int(), 200);
  ASSERT_EQ(call(get(std::string(kTokenPath) + "&client_id=" + kClientId)).result_int(), 200);
  const auto calls = tokens_.calls();
  ASSERT_EQ(calls.size(), 2U);
  EXPECT_EQ(calls[0].request.selector, token::Selector::NodeDefault);
  EXPECT_EQ(calls[1].request.selector, token::Selector::ClientId);
  EXPECT_EQ(calls[1].request.selector_value, kClientId);
}

TEST_F(HandlerTest, TokenErrorsBecomeTheirReplies) {
  podWithIdentity();
  tokens_.push(makeError(ErrorCode::ResourceExhausted, "too many token fetches for this pod"));
  EXPECT_EQ(call(get(kTokenPath)).result_int(), 429);
  tokens_.push(makeError(ErrorCode::Unavailable, "imds unreachable"));
  EXPECT_EQ(call(get(kTokenPath)).result_int(), 503);
}

TEST_F(HandlerTest, ServicePrincipalSecretsStayInTheirNamespaceAndAadHostsAreChecked) {
  const auto sp = servicePrincipal("elsewhere");
  podWithIdentity(sp);
  options_.force_namespaced = true;
  EXPECT_EQ(call(get(kTokenPath)).result_int(), 403);
  EXPECT_TRUE(tokens_.calls().empty());

  options_.force_namespaced = false;
  EXPECT_EQ(call(get(kTokenPath)).result_int(), 200);
  ASSERT_EQ(tokens_.calls().size(), 1U);
  EXPECT_EQ(tokens_.calls()[0].request.kind, token::TokenRequest::Kind::ServicePrincipalSecret);
  EXPECT_EQ(tokens_.calls()[0].request.tenant_id, sp.tenant_id);
}

TEST_F(HandlerTest, AServicePrincipalOfAnAadHostNotAllowedIsRefused) {
  auto sp = servicePrincipal("apps");
  sp.ad_endpoint = "https://login.attacker.example/";
  podWithIdentity(sp);
  EXPECT_EQ(call(get(kTokenPath)).result_int(), 403);
  EXPECT_TRUE(tokens_.calls().empty());
}

TEST_F(HandlerTest, HostTokenServesTheNamedPodToLoopbackCallersOnly) {
  const auto p = podWithIdentity();
  auto request = get("/host/token/?resource=https%3A%2F%2Fvault.azure.net");
  request.set("podns", "apps");
  request.set("podname", "web");
  EXPECT_EQ(call(request, kPodIp).result_int(), 403);
  const auto r = call(request, "127.0.0.1");
  ASSERT_EQ(r.result_int(), 200) << r.body();
  EXPECT_EQ(body(r)["token"]["access_token"], "token-1");
  ASSERT_EQ(tokens_.calls().size(), 1U);
  EXPECT_EQ(tokens_.calls()[0].requester, p.uid);

  auto headless = get("/host/token/?resource=https%3A%2F%2Fvault.azure.net");
  EXPECT_EQ(call(headless, "127.0.0.1").result_int(), 400);
  options_.disable_host_token = true;
  EXPECT_EQ(call(request, "127.0.0.1").result_int(), 404);
}

TEST_F(HandlerTest, HostTokenForAPodThatNeverAppearsIs404) {
  auto request = get("/host/token/?resource=https%3A%2F%2Fvault.azure.net");
  request.set("podns", "apps");
  request.set("podname", "ghost");
  passTheDeadline(2s);
  EXPECT_EQ(call(request, "127.0.0.1").result_int(), 404);
}

TEST_F(HandlerTest, InstanceMetadataIsForwardedUnlessBlocked) {
  proxy_client_.reply(200, R"({"compute":{}})", {{"Content-Type", "application/json"}});
  const auto r = call(get("/metadata/instance?api-version=2021-02-01"));
  EXPECT_EQ(r.result_int(), 200);
  EXPECT_EQ(r.body(), R"({"compute":{}})");
  EXPECT_EQ(proxy_client_.calls(), 1U);
  options_.block_instance_metadata = true;
  EXPECT_EQ(call(get("/metadata/instance?api-version=2021-02-01")).result_int(), 403);
  EXPECT_EQ(proxy_client_.calls(), 1U);
}

TEST_F(HandlerTest, OtherIdentityEndpointsAndBadTargetsAreRefused) {
  EXPECT_EQ(call(get("/metadata/identity/credentials?api-version=2018-02-01")).result_int(), 403);
  EXPECT_EQ(call(get("/metadata/identity/oauth2/token/extra?resource=x")).result_int(), 400);
  EXPECT_EQ(call(get("/nope")).result_int(), 404);
  EXPECT_TRUE(tokens_.calls().empty());
  EXPECT_EQ(proxy_client_.calls(), 0U);
}

}  // namespace
}  // namespace nmi::imds
