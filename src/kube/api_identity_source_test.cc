#include "kube/api_identity_source.h"

#include <algorithm>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/base64.h"
#include "common/log.h"
#include "metrics/nmi_metrics.h"
#include "tests/fakes/fake_api_transport.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/run_sync.h"

namespace nmi::kube {
namespace {

using nlohmann::json;
using ::testing::AllOf;
using ::testing::Contains;
using testing::FakeApiTransport;
using ::testing::HasSubstr;
using ::testing::Not;

json pod(const std::string& name, const std::string& ip) {
  return {
      {"metadata", {{"namespace", "ns"}, {"name", name}, {"labels", {{"aadpodidbinding", "sel"}}}}},
      {"spec", {{"nodeName", "node-1"}}},
      {"status", {{"phase", "Running"}, {"podIPs", {{{"ip", ip}}}}}}};
}

json azureIdentity() {
  return {{"metadata", {{"namespace", "ns"}, {"name", "id"}}},
          {"spec",
           {{"type", 1},
            {"clientID", "cid"},
            {"clientPassword", {{"name", "sp"}, {"namespace", "ns"}}}}}};
}

json assigned(const std::string& state) {
  return {{"metadata",
           {{"namespace", "ns"}, {"name", "p-ns-id"}, {"labels", {{"nodename", "node-1"}}}}},
          {"spec",
           {{"pod", "p"},
            {"podNamespace", "ns"},
            {"nodename", "node-1"},
            {"azureIdentityRef", azureIdentity()}}},
          {"status", {{"status", state}}}};
}

class ApiIdentitySourceTest : public ::testing::Test {
 protected:
  std::unique_ptr<ApiIdentitySource> make(ApiSourceOptions options = {}) {
    if (options.node_name.empty()) {
      options.node_name = "node-1";
    }
    // Backoff waits end at once and the clock stands still: the tests move it themselves.
    options.backoff =
        BackoffPolicy{std::chrono::milliseconds(0), std::chrono::milliseconds(0), 0.0};
    auto source = std::make_unique<ApiIdentitySource>(io_.get_executor(), transport_, options,
                                                      clock_, &metrics_, logger("nmi.kube.test"));
    return source;
  }

  void scriptAll(const std::string& assigned_state = "Created") {
    transport_->addGet(pods_path_,
                       testing::okJson(testing::listBody("10", {pod("p", "10.0.0.1")})));
    transport_->addGet(assigned_path_,
                       testing::okJson(testing::listBody("10", {assigned(assigned_state)})));
    transport_->addGet(bindings_path_,
                       testing::okJson(testing::listBody(
                           "10", {{{"metadata", {{"namespace", "ns"}, {"name", "b"}}},
                                   {"spec", {{"azureIdentity", "id"}, {"selector", "sel"}}}}})));
    transport_->addGet(identities_path_,
                       testing::okJson(testing::listBody("10", {azureIdentity()})));
    transport_->addGet(exceptions_path_, testing::okJson(testing::listBody("10", {})));
  }

  // Runs handlers until `done` or nothing is left to run.
  void runUntil(const std::function<bool()>& done) {
    io_.restart();
    for (int i = 0; i < 100000 && !done(); ++i) {
      if (io_.poll_one() == 0) {
        break;
      }
    }
  }

  void finish(ApiIdentitySource& source) {
    source.stop();
    io_.restart();
    io_.run();
  }

  double counter(const std::string& operation) {
    return metrics_.kubernetes_api_errors.Add({{"operation_type", operation}}).Value();
  }

  const std::string pods_path_ = "/api/v1/pods";
  const std::string assigned_path_ = "/apis/aadpodidentity.k8s.io/v1/azureassignedidentities";
  const std::string bindings_path_ = "/apis/aadpodidentity.k8s.io/v1/azureidentitybindings";
  const std::string identities_path_ = "/apis/aadpodidentity.k8s.io/v1/azureidentities";
  const std::string exceptions_path_ = "/apis/aadpodidentity.k8s.io/v1/azurepodidentityexceptions";
  boost::asio::io_context io_;
  nmi::testing::FakeClock clock_;
  metrics::NmiMetrics metrics_;
  std::shared_ptr<FakeApiTransport> transport_ = std::make_shared<FakeApiTransport>();
};

TEST_F(ApiIdentitySourceTest, SyncsEveryCacheAndAnswersQueries) {
  scriptAll();
  auto source = make();
  EXPECT_FALSE(source->hasSynced());
  EXPECT_EQ(source->notReadyReason(), "the Kubernetes identity source is not started");
  const auto generation = source->changes().generation();
  source->start();
  runUntil([&] { return source->hasSynced(); });
  ASSERT_TRUE(source->hasSynced()) << source->notReadyReason();
  EXPECT_EQ(source->notReadyReason(), "");
  EXPECT_GE(source->changes().generation(), generation + 5);
  runUntil([&] {
    auto status = source->statusForTest();
    return std::all_of(status.begin(), status.end(), [](const auto& s) { return s.connected; });
  });
  EXPECT_EQ(source->staleness(), std::chrono::seconds(0));

  ASSERT_EQ(source->podsByIp("10.0.0.1").size(), 1U);
  EXPECT_EQ(source->podByName("ns", "p")->ips.front(), "10.0.0.1");
  ASSERT_EQ(source->assignedIdentities("ns", "p").size(), 1U);
  EXPECT_EQ(source->assignedIdentities("ns", "p")[0].state, identity::AssignedState::Created);
  EXPECT_EQ(source->bindingsBySelector("sel").size(), 1U);
  EXPECT_EQ(source->identity("ns", "id")->client_id, "cid");
  EXPECT_TRUE(source->exceptions("ns").empty());
  EXPECT_EQ(metrics_.pod_cache_pods.Value(), 1.0);

  const auto calls = transport_->calls();
  EXPECT_THAT(calls,
              Contains("GET /api/v1/pods?fieldSelector=spec.nodeName%3Dnode-1&resourceVersion=0"));
  EXPECT_THAT(calls, Contains("GET " + assigned_path_ +
                              "?labelSelector=nodename%3Dnode-1&resourceVersion=0"));
  EXPECT_THAT(calls, Contains("GET " + bindings_path_ + "?limit=500"));
  EXPECT_THAT(calls, Contains("GET " + identities_path_ + "?limit=500"));
  EXPECT_THAT(calls, Contains("GET " + exceptions_path_ + "?limit=500"));
  finish(*source);
}

TEST_F(ApiIdentitySourceTest, AnEventWakesAWaitingRequest) {
  scriptAll();
  FakeApiTransport::WatchScript assigned_watch;
  assigned_watch.held = true;
  assigned_watch.lines = {testing::eventLine("MODIFIED", assigned("Assigned"))};
  transport_->addWatch(assigned_path_, assigned_watch);
  auto source = make();
  source->start();
  runUntil([&] { return source->hasSynced() && transport_->held() == 1; });
  ASSERT_EQ(transport_->held(), 1U);
  EXPECT_EQ(source->assignedIdentities("ns", "p")[0].state, identity::AssignedState::Created);

  std::optional<ChangeNotifier::WaitResult> woken;
  const auto generation = source->changes().generation();
  boost::asio::co_spawn(
      boost::asio::make_strand(io_),
      [&]() -> Task<void> {
        const MonotonicTime deadline = clock_.monotonicNow() + std::chrono::hours(1);
        woken = co_await source->changes().waitForChange(generation, deadline, nullptr);
      },
      boost::asio::detached);
  runUntil([&] { return source->changes().waiters() == 1; });
  transport_->release();
  runUntil([&] { return woken.has_value(); });
  ASSERT_TRUE(woken.has_value());
  EXPECT_EQ(*woken, ChangeNotifier::WaitResult::Changed);
  EXPECT_EQ(source->assignedIdentities("ns", "p")[0].state, identity::AssignedState::Assigned);
  finish(*source);
}

TEST_F(ApiIdentitySourceTest, NotReadyNamesTheMissingCachesAndTheRbacError) {
  transport_->addGet(pods_path_, testing::okJson(testing::listBody("10", {})));
  transport_->addGet(
      assigned_path_,
      testing::statusAnswer(403, "Forbidden",
                            "azureassignedidentities.aadpodidentity.k8s.io is forbidden: User "
                            "\"system:serviceaccount:kube-system:nmi\" cannot list resource"));
  transport_->addGet(bindings_path_, testing::okJson(testing::listBody("10", {})));
  transport_->addGet(identities_path_, testing::okJson(testing::listBody("10", {})));
  transport_->addGet(exceptions_path_, testing::okJson(testing::listBody("10", {})));
  auto source = make();
  source->start();
  const auto four_synced = [&] {
    auto status = source->statusForTest();
    return std::count_if(status.begin(), status.end(), [](const auto& s) { return s.synced; }) == 4;
  };
  runUntil(
      [&] { return four_synced() && source->notReadyReason().find("403") != std::string::npos; });
  EXPECT_FALSE(source->hasSynced());
  EXPECT_THAT(source->notReadyReason(),
              AllOf(HasSubstr("waiting for the initial list of azureassignedidentities; "),
                    HasSubstr("list azureassignedidentities: HTTP 403 Forbidden: "
                              "azureassignedidentities.aadpodidentity.k8s.io is forbidden"),
                    Not(HasSubstr("pods"))));
  EXPECT_GE(counter("list"), 1.0);
  finish(*source);
}

TEST_F(ApiIdentitySourceTest, ManagedModeDoesNotWatchAssignedIdentities) {
  scriptAll();
  ApiSourceOptions options;
  options.watch_assigned_identities = false;
  auto source = make(options);
  source->start();
  runUntil([&] { return source->hasSynced(); });
  EXPECT_TRUE(source->hasSynced());
  for (const auto& call : transport_->calls()) {
    EXPECT_THAT(call, Not(HasSubstr("azureassignedidentities")));
  }
  EXPECT_TRUE(source->assignedIdentities("ns", "p").empty());
  finish(*source);
}

TEST_F(ApiIdentitySourceTest, WithoutScaleFeaturesEveryAssignedIdentityIsListed) {
  scriptAll();
  ApiSourceOptions options;
  options.scale_features = false;
  auto source = make(options);
  source->start();
  runUntil([&] { return source->hasSynced(); });
  EXPECT_THAT(transport_->calls(), Contains("GET " + assigned_path_ + "?limit=500"));
  finish(*source);
}

TEST_F(ApiIdentitySourceTest, SecretsAreReadThroughTheCacheAndErrorsCounted) {
  scriptAll();
  transport_->addGet("/api/v1/namespaces/ns/secrets/sp",
                     testing::okJson({{"metadata", {{"namespace", "ns"}, {"name", "sp"}}},
                                      {"data", {{"clientSecret", base64Encode("s3cret")}}}}));
  transport_->addGet("/api/v1/namespaces/ns/secrets/missing",
                     testing::statusAnswer(404, "NotFound", "secrets \"missing\" not found"));
  auto source = make();
  auto read = nmi::testing::runSync(io_, source->secret(identity::SecretRef{"sp", "ns"}));
  ASSERT_TRUE(read.has_value()) << read.error().message;
  EXPECT_EQ(read->data.at("clientSecret"), "s3cret");
  auto again = nmi::testing::runSync(io_, source->secret(identity::SecretRef{"sp", "ns"}));
  EXPECT_TRUE(again.has_value());
  auto missing = nmi::testing::runSync(io_, source->secret(identity::SecretRef{"missing", "ns"}));
  EXPECT_EQ(missing.error().code, ErrorCode::NotFound);
  EXPECT_EQ(counter("get_secret"), 1.0);
  const auto calls = transport_->calls();
  EXPECT_EQ(std::count_if(
                calls.begin(), calls.end(),
                [](const std::string& c) { return c.find("/secrets/sp") != std::string::npos; }),
            1);
}

TEST_F(ApiIdentitySourceTest, StaleCachesAreNamedAndCountedPerResource) {
  scriptAll();
  auto source = make();
  FakeApiTransport::WatchScript refused;
  refused.open = false;
  refused.end = makeError(ErrorCode::Unavailable, "connection refused");
  transport_->addWatch(pods_path_, refused);
  // While the pods watch is being retried after that failure:
  std::string in_backoff;
  double pods_gauge = -1;
  double identities_gauge = -1;
  std::size_t pods_served = 0;
  FakeApiTransport::WatchScript retry = refused;
  retry.before = [&] {
    in_backoff = source->staleReason();
    source->updateStaleGauges();
    pods_gauge = metrics_.source_stale.Add({{"resource", "pods"}}).Value();
    identities_gauge = metrics_.source_stale.Add({{"resource", "azureidentities"}}).Value();
    pods_served = source->podsByIp("10.0.0.1").size();  // serving goes on from the cache
  };
  transport_->addWatch(pods_path_, retry);
  source->start();
  runUntil([&] {
    auto status = source->statusForTest();
    return source->hasSynced() &&
           std::all_of(status.begin(), status.end(), [](const auto& s) { return s.connected; });
  });
  EXPECT_THAT(in_backoff, AllOf(HasSubstr("pods: in backoff after 1 failed attempt (watch pods: "
                                          "connection refused); last heard from the API server "
                                          "0.0 s ago"),
                                Not(HasSubstr("azureidentities"))));
  EXPECT_EQ(pods_gauge, 1.0);
  EXPECT_EQ(identities_gauge, 0.0);
  EXPECT_EQ(pods_served, 1U);
  // Every watch open again: current.
  EXPECT_EQ(source->staleReason(), "");
  source->updateStaleGauges();
  EXPECT_EQ(metrics_.source_stale.Add({{"resource", "pods"}}).Value(), 0.0);

  // Nothing from the API server for longer than the silence limit plus the head deadline (the
  // transport should have closed the watches long ago): every cache is stale.
  clock_.advance(std::chrono::seconds(101));
  const std::string reason = source->staleReason();
  for (const char* resource : {"pods: ", "azureassignedidentities: ", "azureidentitybindings: ",
                               "azureidentities: ", "azurepodidentityexceptions: "}) {
    EXPECT_THAT(reason, HasSubstr(resource));
  }
  EXPECT_THAT(reason, HasSubstr("azureidentities: no word from the API server for 101.0 s (limit "
                                "100.0 s)"));
  EXPECT_EQ(source->staleness(), std::chrono::seconds(101));
  source->updateStaleGauges();
  // One series per watched resource, and no other.
  const std::string exposition = metrics_.serialize();
  std::size_t series = 0;
  for (std::size_t at = exposition.find("nmi_identity_source_stale{"); at != std::string::npos;
       at = exposition.find("nmi_identity_source_stale{", at + 1)) {
    ++series;
  }
  EXPECT_EQ(series, 5U);
  EXPECT_EQ(metrics_.source_stale.Add({{"resource", "azurepodidentityexceptions"}}).Value(), 1.0);
  finish(*source);
}

TEST_F(ApiIdentitySourceTest, StopEndsEveryWatch) {
  scriptAll();
  auto source = make();
  source->start();
  runUntil([&] {
    auto status = source->statusForTest();
    return std::all_of(status.begin(), status.end(), [](const auto& s) { return s.connected; });
  });
  source->stop();
  io_.restart();
  io_.run();  // returns: nothing is left waiting
  for (const auto& status : source->statusForTest()) {
    EXPECT_FALSE(status.connected) << status.resource;
  }
}

}  // namespace
}  // namespace nmi::kube
