#include "kube/reflector.h"

#include <string>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/log.h"
#include "kube/crd_cache.h"
#include "kube/pod_cache.h"
#include "tests/fakes/fake_api_transport.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/run_sync.h"

namespace nmi::kube {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using namespace std::chrono_literals;  // NOLINT(google-build-using-namespace): literals only
using testing::FakeApiTransport;

constexpr std::string_view kPods = "/api/v1/pods";
constexpr std::string_view kBindings = "/apis/aadpodidentity.k8s.io/v1/azureidentitybindings";

json pod(const std::string& name, const std::string& ip, const std::string& rv) {
  return {{"kind", "Pod"},
          {"apiVersion", "v1"},
          {"metadata", {{"namespace", "ns"}, {"name", name}, {"resourceVersion", rv}}},
          {"spec", {{"nodeName", "node-1"}}},
          {"status", {{"phase", "Running"}, {"podIP", ip}, {"podIPs", {{{"ip", ip}}}}}}};
}

json binding(const std::string& name, const std::string& selector) {
  return {{"metadata", {{"namespace", "ns"}, {"name", name}}},
          {"spec", {{"azureIdentity", "id"}, {"selector", selector}}}};
}

std::string podsTarget(const std::string& rv) {
  return "GET /api/v1/pods?fieldSelector=spec.nodeName%3Dnode-1&resourceVersion=" + rv;
}

std::string podsWatch(const std::string& rv) {
  return "WATCH /api/v1/pods?fieldSelector=spec.nodeName%3Dnode-1&resourceVersion=" + rv +
         "&watch=1&allowWatchBookmarks=true&timeoutSeconds=270";
}

class ReflectorTest : public ::testing::Test {
 protected:
  ReflectorTest() {
    clock_.setAutoAdvance(true);  // backoff waits return at once (clock_.delays())
    transport_.onExhausted([this] { stop_.cancel(); });
  }

  ReflectorOptions podOptions() {
    ReflectorOptions options;
    options.resource = "pods";
    options.path = std::string(kPods);
    options.field_selector = "spec.nodeName=node-1";
    options.paginate = false;
    return options;
  }

  std::unique_ptr<Reflector> make(ReflectorOptions options, ObjectStore& store) {
    ReflectorHooks hooks;
    hooks.changed = [this] { ++changes_; };
    hooks.failed = [this](std::string_view operation) { failed_.emplace_back(operation); };
    return std::make_unique<Reflector>(transport_, store, std::move(options), clock_,
                                       std::move(hooks), logger("nmi.kube.test"),
                                       [] { return 0.5; });
  }

  void run(Reflector& reflector) { nmi::testing::runSync(io_, reflector.run(stop_)); }

  boost::asio::io_context io_;
  nmi::testing::FakeClock clock_;
  FakeApiTransport transport_;
  CancellationSignal stop_;
  PodCache pods_{"node-1"};
  int changes_ = 0;
  std::vector<std::string> failed_;
};

TEST_F(ReflectorTest, ListWatchBookmarkGoneRelist) {
  const std::string path(kPods);
  transport_.addGet(path, testing::okJson(testing::listBody("10", {pod("a", "10.0.0.1", "9")})));
  FakeApiTransport::WatchScript first;
  first.lines = {testing::eventLine("ADDED", pod("b", "10.0.0.2", "11")),
                 testing::bookmarkLine("15"),
                 testing::errorEventLine(410, "Expired", "too old resource version: 15 (30)")};
  transport_.addWatch(path, first);
  transport_.addGet(path, testing::okJson(testing::listBody("20", {pod("b", "10.0.0.2", "11")})));
  FakeApiTransport::WatchScript second;
  second.lines = {testing::eventLine("DELETED", pod("b", "10.0.0.2", "21"))};
  transport_.addWatch(path, second);

  auto reflector = make(podOptions(), pods_);
  run(*reflector);

  EXPECT_THAT(transport_.calls(), ElementsAre(podsTarget("0"), podsWatch("10"), podsTarget("15"),
                                              podsWatch("20"), podsWatch("21")));
  EXPECT_EQ(pods_.size(), 0U);
  EXPECT_EQ(changes_, 4);  // list, ADDED, relist, DELETED
  EXPECT_THAT(clock_.delays(), IsEmpty());
  EXPECT_TRUE(reflector->hasSynced());
  const ReflectorStats stats = reflector->stats();
  EXPECT_EQ(stats.lists, 2U);
  EXPECT_EQ(stats.events, 2U);
  EXPECT_EQ(stats.bookmarks, 1U);
  EXPECT_EQ(stats.gone, 1U);
  EXPECT_EQ(stats.failures, 0U);
  EXPECT_EQ(reflector->resourceVersion(), "21");
  EXPECT_THAT(failed_, IsEmpty());
}

TEST_F(ReflectorTest, TheStoreFollowsEvents) {
  const std::string path(kPods);
  transport_.addGet(path, testing::okJson(testing::listBody("1", {pod("a", "10.0.0.1", "1")})));
  FakeApiTransport::WatchScript watch;
  watch.lines = {testing::eventLine("MODIFIED", pod("a", "10.0.0.9", "2")),
                 testing::eventLine("ADDED", pod("c", "10.0.0.3", "3"))};
  watch.before = [this] {
    // Synced with the list's content before the watch starts.
    EXPECT_EQ(pods_.podsByIp("10.0.0.1").size(), 1U);
  };
  transport_.addWatch(path, watch);
  auto reflector = make(podOptions(), pods_);
  run(*reflector);
  EXPECT_TRUE(pods_.podsByIp("10.0.0.1").empty());
  EXPECT_EQ(pods_.podsByIp("10.0.0.9").size(), 1U);
  EXPECT_EQ(pods_.podsByIp("10.0.0.3").size(), 1U);
}

TEST_F(ReflectorTest, ErrorsBackOffWithJitterAndHonourRetryAfter) {
  const std::string path(kPods);
  transport_.addGet(path, makeError(ErrorCode::Unavailable, "connect: connection refused"));
  transport_.addGet(path, testing::statusAnswer(500, "InternalError", "etcd is down"));
  transport_.addGet(
      path, testing::statusAnswer(429, "TooManyRequests", "storage is (re)initializing", 3s));
  transport_.addGet(path, makeError(ErrorCode::Timeout, "timed out"));
  transport_.addGet(path, makeError(ErrorCode::Timeout, "timed out"));
  transport_.addGet(path, makeError(ErrorCode::Timeout, "timed out"));
  transport_.addGet(path, testing::okJson(testing::listBody("5", {})));
  auto reflector = make(podOptions(), pods_);
  run(*reflector);
  EXPECT_THAT(clock_.delays(), ElementsAre(100ms, 200ms, 3000ms, 800ms, 1000ms, 1000ms));
  EXPECT_TRUE(reflector->hasSynced());
  EXPECT_EQ(reflector->stats().failures, 6U);
  EXPECT_EQ(failed_.size(), 6U);
  EXPECT_EQ(failed_.front(), "list");
  EXPECT_EQ(reflector->lastError(), "");
}

TEST_F(ReflectorTest, ASuccessResetsTheBackoff) {
  const std::string path(kPods);
  transport_.addGet(path, makeError(ErrorCode::Unavailable, "refused"));
  transport_.addGet(path, makeError(ErrorCode::Unavailable, "refused"));
  transport_.addGet(path, testing::okJson(testing::listBody("5", {})));
  FakeApiTransport::WatchScript broken;
  broken.lines = {testing::eventLine("ADDED", pod("a", "10.0.0.1", "6"))};
  broken.end = makeError(ErrorCode::Unavailable, "watch stream: end of stream");
  transport_.addWatch(path, broken);
  auto reflector = make(podOptions(), pods_);
  run(*reflector);
  EXPECT_THAT(clock_.delays(), ElementsAre(100ms, 200ms, 100ms));
  // The failed watch resumes from the last version seen, without a relist.
  EXPECT_EQ(transport_.calls().back(), podsWatch("6"));
  EXPECT_EQ(failed_.back(), "watch");
}

TEST_F(ReflectorTest, ASilentWatchIsReopenedAtOnce) {
  const std::string path(kPods);
  transport_.addGet(path, testing::okJson(testing::listBody("5", {})));
  FakeApiTransport::WatchScript silent;
  silent.lines = {testing::eventLine("ADDED", pod("a", "10.0.0.1", "6"))};
  silent.end = makeError(ErrorCode::Timeout, "watch silent for 90000 ms");
  transport_.addWatch(path, silent);
  auto reflector = make(podOptions(), pods_);
  run(*reflector);
  EXPECT_THAT(transport_.calls(), ElementsAre(podsTarget("0"), podsWatch("5"), podsWatch("6")));
  EXPECT_THAT(clock_.delays(), IsEmpty());
  EXPECT_EQ(reflector->stats().silences, 1U);
  EXPECT_THAT(failed_, IsEmpty());
}

TEST_F(ReflectorTest, ATimeoutBeforeTheWatchOpensIsAFailure) {
  const std::string path(kPods);
  transport_.addGet(path, testing::okJson(testing::listBody("5", {})));
  FakeApiTransport::WatchScript unanswered;
  unanswered.open = false;
  unanswered.end = makeError(ErrorCode::Timeout, "connect: timed out");
  transport_.addWatch(path, unanswered);
  auto reflector = make(podOptions(), pods_);
  run(*reflector);
  EXPECT_THAT(clock_.delays(), ElementsAre(100ms));
  EXPECT_EQ(reflector->stats().silences, 0U);
}

TEST_F(ReflectorTest, HttpGoneOnAWatchRelists) {
  const std::string path(kPods);
  transport_.addGet(path, testing::okJson(testing::listBody("5", {})));
  FakeApiTransport::WatchScript gone;
  gone.open = false;
  gone.end = testing::statusAnswer(410, "Gone", "too old");
  transport_.addWatch(path, gone);
  transport_.addGet(path, testing::okJson(testing::listBody("9", {})));
  auto reflector = make(podOptions(), pods_);
  run(*reflector);
  EXPECT_THAT(transport_.calls(),
              ElementsAre(podsTarget("0"), podsWatch("5"), podsTarget("5"), podsWatch("9")));
  EXPECT_THAT(clock_.delays(), IsEmpty());
}

TEST_F(ReflectorTest, RepeatedGoneBacksOff) {
  const std::string path(kPods);
  transport_.addGet(path, testing::okJson(testing::listBody("5", {})));
  FakeApiTransport::WatchScript gone;
  gone.open = false;
  gone.end = testing::statusAnswer(410, "Gone", "too old");
  transport_.addWatch(path, gone);
  transport_.addGet(path, testing::okJson(testing::listBody("5", {})));
  transport_.addWatch(path, gone);
  transport_.addGet(path, testing::okJson(testing::listBody("6", {})));
  auto reflector = make(podOptions(), pods_);
  run(*reflector);
  // The first 410 relists at once; a second one in a row waits first.
  EXPECT_THAT(clock_.delays(), ElementsAre(100ms));
  EXPECT_THAT(transport_.calls(), ElementsAre(podsTarget("0"), podsWatch("5"), podsTarget("5"),
                                              podsWatch("5"), podsTarget("5"), podsWatch("6")));
  EXPECT_EQ(reflector->stats().gone, 2U);
}

TEST_F(ReflectorTest, AGoneListAsksForTheCurrentState) {
  const std::string path(kPods);
  transport_.addGet(path, testing::okJson(testing::listBody("5", {})));
  FakeApiTransport::WatchScript gone;
  gone.lines = {testing::errorEventLine(410, "Expired", "too old")};
  transport_.addWatch(path, gone);
  transport_.addGet(path, testing::statusAnswer(410, "Expired", "too old resource version"));
  transport_.addGet(path, testing::okJson(testing::listBody("9", {})));
  auto reflector = make(podOptions(), pods_);
  run(*reflector);
  EXPECT_THAT(transport_.calls(),
              ElementsAre(podsTarget("0"), podsWatch("5"), podsTarget("5"),
                          "GET /api/v1/pods?fieldSelector=spec.nodeName%3Dnode-1", podsWatch("9")));
}

TEST_F(ReflectorTest, OtherErrorEventsBackOffAndResume) {
  const std::string path(kPods);
  transport_.addGet(path, testing::okJson(testing::listBody("5", {})));
  FakeApiTransport::WatchScript failing;
  failing.lines = {testing::eventLine("ADDED", pod("a", "10.0.0.1", "6")),
                   testing::errorEventLine(500, "InternalError", "boom"),
                   testing::eventLine("ADDED", pod("b", "10.0.0.2", "7"))};
  transport_.addWatch(path, failing);
  auto reflector = make(podOptions(), pods_);
  run(*reflector);
  EXPECT_EQ(pods_.size(), 1U);  // nothing after the ERROR event is applied
  EXPECT_EQ(transport_.calls().back(), podsWatch("6"));
  EXPECT_THAT(clock_.delays(), ElementsAre(100ms));
}

TEST_F(ReflectorTest, HostileLinesEndTheWatchButNotTheReflector) {
  const std::string path(kPods);
  transport_.addGet(path, testing::okJson(testing::listBody("5", {})));
  FakeApiTransport::WatchScript hostile;
  hostile.lines = {R"({"type":"ADDED","object":"not an object"})"};
  transport_.addWatch(path, hostile);
  FakeApiTransport::WatchScript bad_object;
  json broken = pod("x", "10.0.0.7", "8");
  broken["status"]["podIPs"] = "not-a-list";
  bad_object.lines = {testing::eventLine("ADDED", broken),
                      testing::eventLine("ADDED", pod("y", "10.0.0.8", "9"))};
  transport_.addWatch(path, bad_object);
  auto reflector = make(podOptions(), pods_);
  run(*reflector);
  // A broken line: back off and watch again from the same version. A broken object: skipped.
  EXPECT_THAT(transport_.calls(),
              ElementsAre(podsTarget("0"), podsWatch("5"), podsWatch("5"), podsWatch("9")));
  EXPECT_EQ(pods_.size(), 1U);
  EXPECT_EQ(reflector->stats().bad_objects, 1U);
}

TEST_F(ReflectorTest, AWatchClosedAtOnceBacksOff) {
  const std::string path(kPods);
  transport_.addGet(path, testing::okJson(testing::listBody("5", {})));
  transport_.addWatch(path, FakeApiTransport::WatchScript{});
  auto reflector = make(podOptions(), pods_);
  run(*reflector);
  EXPECT_THAT(clock_.delays(), ElementsAre(100ms));
}

TEST_F(ReflectorTest, ForbiddenIsReportedAndNotSynced) {
  const std::string path(kPods);
  transport_.addGet(
      path, testing::statusAnswer(403, "Forbidden",
                                  "pods is forbidden: User \"system:serviceaccount:ns:nmi\" "
                                  "cannot list resource \"pods\" in API group \"\" at the "
                                  "cluster scope"));
  auto reflector = make(podOptions(), pods_);
  run(*reflector);
  EXPECT_FALSE(reflector->hasSynced());
  EXPECT_THAT(reflector->lastError(),
              HasSubstr("list pods: HTTP 403 Forbidden: pods is forbidden"));
}

TEST(StaleReasonTest, WhatMakesASyncedCacheStale) {
  FreshnessInput healthy;
  healthy.synced = true;
  healthy.since_contact = 95s;  // a quiet watch about to be re-opened
  healthy.limit = 100s;
  EXPECT_EQ(staleReason(healthy), "");

  FreshnessInput not_synced = healthy;
  not_synced.synced = false;
  not_synced.failures = 3;
  not_synced.since_contact = 1h;
  EXPECT_EQ(staleReason(not_synced), "") << "readiness waits for the first list instead";

  FreshnessInput backoff = healthy;
  backoff.failures = 2;
  backoff.since_contact = 2500ms;
  backoff.last_error = "watch pods: connection refused";
  EXPECT_EQ(staleReason(backoff),
            "in backoff after 2 failed attempts (watch pods: connection refused); last heard "
            "from the API server 2.5 s ago");

  FreshnessInput relisting = healthy;
  relisting.relisting = true;
  relisting.since_contact = 10ms;
  EXPECT_EQ(staleReason(relisting),
            "listing again (the watch's history is gone); last heard from the API server 0.0 s "
            "ago");

  FreshnessInput silent = healthy;
  silent.since_contact = 100001ms;
  EXPECT_EQ(staleReason(silent), "no word from the API server for 100.0 s (limit 100.0 s)");
  silent.since_contact = 100s;
  EXPECT_EQ(staleReason(silent), "");
}

TEST_F(ReflectorTest, FreshnessFollowsFailuresRelistsAndSilence) {
  const std::string path(kPods);
  transport_.addGet(path, testing::okJson(testing::listBody("5", {})));
  FakeApiTransport::WatchScript gone;
  gone.lines = {testing::errorEventLine(410, "Expired", "too old resource version")};
  transport_.addWatch(path, gone);
  Freshness during_relist;
  auto reflector = make(podOptions(), pods_);
  transport_.addGet(path, testing::okJson(testing::listBody("9", {})),
                    [&] { during_relist = reflector->freshness(); });
  FakeApiTransport::WatchScript refused;
  refused.open = false;
  refused.end = makeError(ErrorCode::Unavailable, "refused");
  transport_.addWatch(path, refused);
  Freshness in_backoff;
  Freshness open;
  FakeApiTransport::WatchScript observe;
  observe.before = [&] {
    in_backoff = reflector->freshness();
    clock_.advance(1000ms);  // a healthy watch: it stays open a while
  };
  observe.lines = {testing::bookmarkLine("10")};
  transport_.addWatch(path, observe);
  transport_.onExhausted([&] {
    open = reflector->freshness();
    stop_.cancel();
  });
  run(*reflector);
  EXPECT_TRUE(during_relist.stale);
  EXPECT_THAT(during_relist.reason, HasSubstr("listing again"));
  EXPECT_TRUE(in_backoff.stale);
  EXPECT_THAT(in_backoff.reason, HasSubstr("in backoff after 1 failed attempt (watch pods: "));
  EXPECT_FALSE(open.stale) << open.reason;
  EXPECT_EQ(open.staleness, 0ms);
}

TEST_F(ReflectorTest, StalenessIsZeroWhileWatchingAndGrowsAfter) {
  const std::string path(kPods);
  transport_.addGet(path, testing::okJson(testing::listBody("5", {})));
  std::chrono::milliseconds while_open{-1};
  std::chrono::milliseconds after_backoff{-1};
  std::chrono::milliseconds later{-1};
  auto reflector = make(podOptions(), pods_);
  FakeApiTransport::WatchScript watch;
  watch.lines = {testing::bookmarkLine("6")};
  watch.end = makeError(ErrorCode::Unavailable, "reset");
  transport_.addWatch(path, watch);
  FakeApiTransport::WatchScript observe;
  observe.open = false;
  observe.before = [&] {
    after_backoff = reflector->staleness();
    clock_.advance(7000ms);
    later = reflector->staleness();
  };
  observe.end = makeError(ErrorCode::Unavailable, "refused");
  transport_.addWatch(path, observe);
  FakeApiTransport::WatchScript open;
  open.lines = {testing::bookmarkLine("7")};
  open.before = [&] { clock_.advance(1000ms); };
  transport_.addWatch(path, open);
  // The last watch is open when the script runs out: staleness is 0 then.
  transport_.onExhausted([&] {
    while_open = reflector->staleness();
    stop_.cancel();
  });
  run(*reflector);
  EXPECT_EQ(after_backoff, 100ms);  // not connected: the time since the bookmark
  EXPECT_EQ(later, 7100ms);
  EXPECT_EQ(while_open, 0ms);
  EXPECT_FALSE(reflector->connected());
}

TEST_F(ReflectorTest, ClusterWideListsArePaginatedAndReplaceAtOnce) {
  BindingCache bindings;
  ReflectorOptions options;
  options.resource = "azureidentitybindings";
  options.path = std::string(kBindings);
  options.page_limit = 2;
  const std::string path(kBindings);
  ASSERT_TRUE(bindings.apply(EventType::Added, binding("stale", "old")));
  transport_.addGet(path, testing::okJson(testing::listBody(
                              "", {binding("b1", "s"), binding("b2", "s")}, "next+page=")));
  transport_.addGet(path, testing::okJson(testing::listBody("30", {binding("b3", "t")})), [&] {
    // The second page is being fetched: readers still see the old set.
    EXPECT_EQ(bindings.bySelector("old").size(), 1U);
    EXPECT_TRUE(bindings.bySelector("s").empty());
  });
  auto reflector = make(options, bindings);
  run(*reflector);
  const std::string base = "/apis/aadpodidentity.k8s.io/v1/azureidentitybindings";
  EXPECT_THAT(
      transport_.calls(),
      ElementsAre("GET " + base + "?limit=2", "GET " + base + "?limit=2&continue=next%2Bpage%3D",
                  "WATCH " + base +
                      "?resourceVersion=30&watch=1&allowWatchBookmarks=true&timeoutSeconds=270"));
  EXPECT_TRUE(bindings.bySelector("old").empty());
  EXPECT_EQ(bindings.bySelector("s").size(), 2U);
  EXPECT_EQ(bindings.bySelector("t").size(), 1U);
}

TEST_F(ReflectorTest, AFailedPageKeepsTheOldSet) {
  BindingCache bindings;
  ReflectorOptions options;
  options.resource = "azureidentitybindings";
  options.path = std::string(kBindings);
  const std::string path(kBindings);
  ASSERT_TRUE(bindings.apply(EventType::Added, binding("stale", "old")));
  transport_.addGet(path, testing::okJson(testing::listBody("", {binding("b1", "s")}, "tok")));
  transport_.addGet(path, testing::statusAnswer(410, "Expired", "continue token expired"));
  transport_.addGet(path, testing::okJson(testing::listBody("40", {binding("b9", "z")})));
  auto reflector = make(options, bindings);
  run(*reflector);
  EXPECT_TRUE(bindings.bySelector("old").empty());
  EXPECT_TRUE(bindings.bySelector("s").empty());
  EXPECT_EQ(bindings.bySelector("z").size(), 1U);
  const auto calls = transport_.calls();
  ASSERT_EQ(calls.size(), 4U);
  EXPECT_EQ(calls[2], "GET " + path + "?limit=500");  // restarted from the first page
}

TEST_F(ReflectorTest, StopEndsAnOpenWatchAtOnce) {
  const std::string path(kPods);
  transport_.addGet(path, testing::okJson(testing::listBody("5", {})));
  transport_.onExhausted({});  // the watch stays open until cancelled
  auto reflector = make(podOptions(), pods_);
  boost::asio::co_spawn(
      io_,
      [&]() -> Task<void> {
        while (!reflector->connected()) {
          co_await boost::asio::post(io_, boost::asio::use_awaitable);
        }
        stop_.cancel();
      },
      boost::asio::detached);
  run(*reflector);
  EXPECT_FALSE(reflector->connected());
  EXPECT_TRUE(reflector->hasSynced());
  EXPECT_THAT(clock_.delays(), IsEmpty());
}

}  // namespace
}  // namespace nmi::kube
