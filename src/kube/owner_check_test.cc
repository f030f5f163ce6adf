#include "kube/owner_check.h"

#include <array>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/fakes/fake_api_transport.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/run_sync.h"

namespace nmi::kube {
namespace {

using testing::eventLine;
using testing::FakeApiTransport;
using ::testing::HasSubstr;
using testing::listBody;
using testing::okJson;
using testing::statusAnswer;

nlohmann::json daemonSet(const std::string& name, bool deleting = false,
                         const std::string& uid = "uid-1") {
  nlohmann::json meta = {
      {"name", name}, {"namespace", "kube-system"}, {"uid", uid}, {"resourceVersion", "7"}};
  if (deleting) {
    meta["deletionTimestamp"] = "2026-11-29T21:00:00Z";
    meta["finalizers"] = {"foregroundDeletion"};
  }
  return {{"apiVersion", "apps/v1"}, {"kind", "DaemonSet"}, {"metadata", meta}};
}

// ---- Answers -------------------------------------------------------------------------------

TEST(OwnerStateTest, DeletionTimestampMeansDeleting) {
  EXPECT_EQ(ownerStateOf(daemonSet("nmi")), OwnerState::Present);
  EXPECT_EQ(ownerStateOf(daemonSet("nmi", true)), OwnerState::Deleting);
  auto null_timestamp = daemonSet("nmi");
  null_timestamp["metadata"]["deletionTimestamp"] = nullptr;
  EXPECT_EQ(ownerStateOf(null_timestamp), OwnerState::Present);
  EXPECT_EQ(observationOf(daemonSet("nmi", true, "u-7")),
            (OwnerObservation{OwnerState::Deleting, "u-7"}));
}

TEST(OwnerStateTest, GetAnswersMapToObservations) {
  using O = OwnerObservation;
  EXPECT_EQ(observationFromGet(okJson(daemonSet("nmi"))), (O{OwnerState::Present, "uid-1"}));
  EXPECT_EQ(observationFromGet(okJson(daemonSet("nmi", true))), (O{OwnerState::Deleting, "uid-1"}));
  EXPECT_EQ(observationFromGet(statusAnswer(404, "NotFound", "not found")),
            (O{OwnerState::Absent, ""}));
  // Whatever is not a clear answer is Unknown: refused, failing, garbled, unreachable.
  const std::vector<Result<ApiResponse>> unclear = {
      statusAnswer(401, "Unauthorized", "x"),       statusAnswer(403, "Forbidden", "x"),
      statusAnswer(500, "InternalError", "x"),      statusAnswer(429, "TooManyRequests", "x"),
      ApiResponse{200, "not json", std::nullopt},   ApiResponse{200, "[]", std::nullopt},
      ApiResponse{200, "{}", std::nullopt},         makeError(ErrorCode::Timeout, "timed out"),
      makeError(ErrorCode::Unavailable, "refused"),
  };
  for (const auto& answer : unclear) {
    EXPECT_EQ(observationFromGet(answer), O{});
  }
}

// ---- History -------------------------------------------------------------------------------

using O = OwnerObservation;
O unknown() {  // no answer
  return {};
}
O absent() {  // a 404 or a list without it
  return {OwnerState::Absent, ""};
}
O present(const std::string& uid = "u1") {
  return {OwnerState::Present, uid};
}
O deleting(const std::string& uid = "u1") {
  return {OwnerState::Deleting, uid};
}
O deleted(const std::string& uid = "u1") {  // a DELETED event
  return {OwnerState::Absent, uid};
}

OwnerHistory historyOf(const std::vector<O>& answers) {
  OwnerHistory h;
  for (const auto& answer : answers) {
    h = observe(std::move(h), answer);
  }
  return h;
}

TEST(OwnerHistoryTest, FoldsAnswersPerObject) {
  EXPECT_EQ(historyOf({}), OwnerHistory{});
  EXPECT_EQ(historyOf({unknown(), unknown()}), OwnerHistory{});
  const OwnerHistory h =
      historyOf({absent(), present("u1"), deleting("u1"), deleted("u1"), present("u2"), unknown()});
  EXPECT_TRUE(h.answered);
  ASSERT_EQ(h.seen.size(), 2U);
  EXPECT_EQ(h.seen[0], (OwnerHistory::Seen{"u1", true, true}));
  EXPECT_EQ(h.seen[1], (OwnerHistory::Seen{"u2", false, false}));
  EXPECT_EQ(h.last, present("u2"));
  // Another object holding the name means the earlier ones are gone; a 404 means all are.
  EXPECT_TRUE(historyOf({present("u1"), present("u2")}).seen[0].gone);
  const OwnerHistory all_gone = historyOf({present("u1"), present("u2"), absent()});
  EXPECT_TRUE(all_gone.seen[0].gone && all_gone.seen[1].gone);
  // A DELETED event of another object leaves this one alone.
  EXPECT_FALSE(historyOf({present("u1"), deleted("u0")}).seen[0].gone);
}

TEST(OwnerHistoryTest, LatestAnswerWinsButADeletionStays) {
  // A relist from a lagging watch cache said "absent", a fresh answer says present: doubt.
  EXPECT_FALSE(historyOf({present("u1"), absent(), present("u1")}).seen[0].gone);
  EXPECT_TRUE(historyOf({deleting("u1"), present("u1")}).seen[0].deleting);
}

TEST(OwnerHistoryTest, IsBoundedAndKeepsTheFirstObject) {
  std::vector<O> answers;
  for (int i = 0; i < 100; ++i) {
    answers.push_back(present("u" + std::to_string(i)));
    answers.push_back(deleted("u" + std::to_string(i)));
  }
  const OwnerHistory h = historyOf(answers);
  ASSERT_EQ(h.seen.size(), kMaxOwnersSeen);
  EXPECT_EQ(h.seen.front().uid, "u0");
  EXPECT_EQ(h.seen.back().uid, "u99");
}

// ---- The decision: a table of histories ----------------------------------------------------

OwnerTarget target() {
  return {"kube-system", "nmi"};
}

PodController controlledBy(const std::string& uid, const std::string& name = "nmi",
                           const std::string& kind = "DaemonSet") {
  return {true, kind, name, uid};
}

TEST(PodControllerTest, TheControllerReferenceOfNmisPod) {
  EXPECT_EQ(podControllerOf(std::nullopt), PodController{});
  identity::PodInfo pod;
  pod.owners = {{"Node", "node-1", "n-1", false}};
  EXPECT_EQ(podControllerOf(pod), PodController{});  // a static pod: no controller
  pod.owners.push_back({"DaemonSet", "nmi", "uid-1", true});
  EXPECT_EQ(podControllerOf(pod), controlledBy("uid-1"));
}

struct HistoryCase {
  const char* what;
  std::vector<O> watched;
  O fetched;  // the GET on SIGTERM
  PodController pod;
  ExitAction expected;
  const char* reason;  // a part of the reason
};

TEST(DecideOnExitTest, RemovesOnlyAfterSeeingItsOwnDaemonSetThenItsDeletion) {
  const auto keep = ExitAction::KeepRules;
  const auto remove = ExitAction::RemoveRules;
  const std::vector<HistoryCase> cases = {
      // Never seen: a misspelt name or another namespace. A 404 is then no uninstall.
      {"never seen + 404", {absent()}, absent(), {}, keep, "never seen present"},
      {"never seen, watch refused + 404", {}, absent(), {}, keep, "never seen present"},
      {"never seen + GET refused", {absent()}, unknown(), {}, keep, "never seen present"},
      {"wrong namespace: RBAC refuses everything", {}, unknown(), {}, keep, "state unknown"},
      {"watch never synced, GET fails", {unknown()}, unknown(), {}, keep, "state unknown"},
      // Seen, then gone or being deleted: an uninstall.
      {"seen + 404", {present()}, absent(), {}, remove, "the API server says gone"},
      {"seen + DELETED, GET refused (ServiceAccount gone)",
       {present(), deleted()},
       unknown(),
       {},
       remove,
       "last watched: gone"},
      {"seen + list without it, GET refused",
       {present(), absent()},
       unknown(),
       {},
       remove,
       "last watched: gone"},
      {"seen + deletionTimestamp (foreground, orphan)",
       {present(), deleting()},
       unknown(),
       {},
       remove,
       "last watched: being deleted"},
      {"seen + GET shows deletionTimestamp",
       {present()},
       deleting(),
       {},
       remove,
       "the API server says being deleted"},
      {"first seen already being deleted", {deleting()}, unknown(), {}, remove, "being deleted"},
      {"watch never synced + GET shows it being deleted",
       {},
       deleting(),
       {},
       remove,
       "being deleted"},
      {"orphan deletion, then the pod deleted",
       {present(), deleting(), deleted()},
       absent(),
       {},
       remove,
       "gone"},
      // Seen, still there: a restart, an upgrade, a drain.
      {"seen + present", {present()}, present(), {}, keep, "the API server says present"},
      {"seen + 403 at SIGTERM", {present()}, unknown(), {}, keep, "last watched: present"},
      {"seen, watch lagging, fresh GET says present",
       {present(), absent()},
       present(),
       {},
       keep,
       "present"},
      {"watch never synced + GET present", {}, present(), {}, keep, "present"},
      // Another object of the name.
      {"deleted and created again (kubectl delete + apply)",
       {present("u1"), deleted("u1"), present("u2")},
       present("u2"),
       {},
       keep,
       "deleted and created again (uid u1 → uid u2)"},
      {"created again, seen only by the GET",
       {present("u1")},
       present("u2"),
       {},
       keep,
       "created again"},
      {"created again and deleted too",
       {present("u1"), deleted("u1"), present("u2")},
       absent(),
       {},
       remove,
       "gone (uid u1"},
      {"created again, the new one being deleted",
       {present("u1"), deleting("u2")},
       unknown(),
       {},
       remove,
       "gone (uid u1"},
      // nmi's pod names its controller.
      {"pod's controller seen, then deleted",
       {present("u1"), deleted("u1")},
       unknown(),
       controlledBy("u1"),
       remove,
       "gone"},
      {"pod adopted by the new DaemonSet, which is there",
       {present("u1"), deleted("u1"), present("u2")},
       present("u2"),
       controlledBy("u2"),
       keep,
       "present"},
      {"pod's controller never seen (only another object of the name)",
       {present("u2")},
       absent(),
       controlledBy("u1"),
       keep,
       "never seen present"},
      {"misspelt --daemonset-name: the pod is controlled by another DaemonSet",
       {absent()},
       absent(),
       controlledBy("u1", "nmi-real"),
       keep,
       "nmi's pod is controlled by DaemonSet nmi-real, not daemonset kube-system/nmi"},
      {"--daemonset-name names another DaemonSet that is being uninstalled",
       {present("u9"), deleted("u9")},
       absent(),
       controlledBy("u1", "nmi-real"),
       keep,
       "controlled by DaemonSet nmi-real"},
      {"the pod is not controlled by a DaemonSet",
       {present("u1")},
       absent(),
       controlledBy("u1", "nmi", "ReplicaSet"),
       keep,
       "controlled by ReplicaSet nmi"},
  };
  for (const auto& c : cases) {
    const ExitDecision d = decideOnExit(historyOf(c.watched), c.fetched, target(), c.pod);
    EXPECT_EQ(d.action, c.expected) << c.what << ": " << d.reason;
    EXPECT_THAT(d.reason, HasSubstr(c.reason)) << c.what;
    EXPECT_THAT(d.reason, HasSubstr(c.expected == remove ? "removing the iptables rules"
                                                         : "keeping the iptables rules"))
        << c.what;
  }
}

TEST(OwnerProblemTest, NamesWhyAnUninstallCouldNotBeDetected) {
  // Waiting for the first answer: nothing to say yet.
  EXPECT_EQ(ownerProblem(historyOf({}), target(), {}, ""), "");
  EXPECT_EQ(ownerProblem(historyOf({}), target(), {},
                         "list daemonset kube-system/nmi: HTTP 403 Forbidden: forbidden"),
            "daemonset kube-system/nmi cannot be read (list daemonset kube-system/nmi: HTTP 403 "
            "Forbidden: forbidden): the iptables rules stay on exit, also on an uninstall");
  EXPECT_EQ(ownerProblem(historyOf({absent()}), target(), {}, ""),
            "daemonset kube-system/nmi not found (never seen since nmi started): the iptables "
            "rules stay on exit, also on an uninstall (check --daemonset-name and POD_NAMESPACE)");
  EXPECT_EQ(ownerProblem(historyOf({present()}), target(), {}, ""), "");
  EXPECT_EQ(ownerProblem(historyOf({present(), deleted()}), target(), {}, ""), "");
  EXPECT_EQ(ownerProblem(historyOf({present("u1")}), target(), controlledBy("u1"), ""), "");
  EXPECT_THAT(ownerProblem(historyOf({present("u2")}), target(), controlledBy("u1"), ""),
              HasSubstr("daemonset kube-system/nmi (uid u1, nmi's pod's controller) never seen"));
  EXPECT_THAT(ownerProblem(historyOf({}), target(), controlledBy("u1", "nmi-real"), ""),
              HasSubstr("nmi's pod is controlled by DaemonSet nmi-real, not daemonset "
                        "kube-system/nmi"));
}

// ---- OwnerStore ----------------------------------------------------------------------------

TEST(OwnerStoreTest, FollowsListsAndEventsOfItsDaemonSetOnly) {
  OwnerStore store("nmi");
  EXPECT_EQ(store.state(), OwnerState::Unknown);
  store.beginReplace();
  ASSERT_TRUE(store.stage(daemonSet("other")).has_value());
  store.commitReplace();
  EXPECT_EQ(store.state(), OwnerState::Absent);  // a list without it
  EXPECT_TRUE(store.history().seen.empty());
  store.beginReplace();
  ASSERT_TRUE(store.stage(daemonSet("nmi")).has_value());
  store.abortReplace();
  EXPECT_EQ(store.state(), OwnerState::Absent);  // an aborted list changes nothing
  store.beginReplace();
  ASSERT_TRUE(store.stage(daemonSet("nmi")).has_value());
  store.commitReplace();
  EXPECT_EQ(store.state(), OwnerState::Present);
  EXPECT_EQ(store.size(), 1U);
  ASSERT_TRUE(store.apply(EventType::Deleted, daemonSet("other")).has_value());
  EXPECT_EQ(store.state(), OwnerState::Present);
  ASSERT_TRUE(store.apply(EventType::Modified, daemonSet("nmi", true)).has_value());
  EXPECT_EQ(store.state(), OwnerState::Deleting);
  ASSERT_TRUE(store.apply(EventType::Deleted, daemonSet("nmi", true)).has_value());
  EXPECT_EQ(store.state(), OwnerState::Absent);
  EXPECT_EQ(store.size(), 0U);
  ASSERT_TRUE(store.apply(EventType::Added, daemonSet("nmi", false, "uid-2")).has_value());
  EXPECT_EQ(store.state(), OwnerState::Present);
  const OwnerHistory h = store.history();
  ASSERT_EQ(h.seen.size(), 2U);
  EXPECT_EQ(h.seen[0], (OwnerHistory::Seen{"uid-1", true, true}));
  EXPECT_EQ(h.seen[1], (OwnerHistory::Seen{"uid-2", false, false}));
}

// ---- OwnerWatch ----------------------------------------------------------------------------

class OwnerWatchTest : public ::testing::Test {
 protected:
  static constexpr const char* kCollection = "/apis/apps/v1/namespaces/kube-system/daemonsets";
  static constexpr const char* kObject = "/apis/apps/v1/namespaces/kube-system/daemonsets/nmi";

  std::unique_ptr<OwnerWatch> makeWatch(std::function<PodController()> pod = {}) {
    OwnerWatchOptions options;
    options.ns = "kube-system";
    options.name = "nmi";
    return std::make_unique<OwnerWatch>(io_.get_executor(), transport_, options, clock_, nullptr,
                                        std::move(pod));
  }

  boost::asio::io_context io_;
  nmi::testing::FakeClock clock_;
  std::shared_ptr<FakeApiTransport> transport_ = std::make_shared<FakeApiTransport>();
};

TEST_F(OwnerWatchTest, WatchedDeletionDecidesWhenTheGetIsRefused) {
  auto watch = makeWatch();
  transport_->addGet(kCollection, okJson(listBody("5", {daemonSet("nmi")})));
  FakeApiTransport::WatchScript script;
  script.lines = {eventLine("MODIFIED", daemonSet("nmi", true)),
                  eventLine("DELETED", daemonSet("nmi", true))};
  transport_->addWatch(kCollection, script);
  transport_->onExhausted([&watch] { watch->stop(); });
  watch->start();
  io_.run();
  EXPECT_EQ(watch->watched(), OwnerState::Absent);
  EXPECT_TRUE(watch->armed());
  EXPECT_EQ(watch->problem(), "");
  const auto calls = transport_->calls();
  ASSERT_GE(calls.size(), 2U);
  EXPECT_NE(calls[0].find("fieldSelector=metadata.name%3Dnmi"), std::string::npos) << calls[0];

  // The ServiceAccount was deleted with the DaemonSet: the GET on exit gets a 401.
  transport_->addGet(kObject, statusAnswer(401, "Unauthorized", "Unauthorized"));
  const ExitDecision d = nmi::testing::runSync(io_, watch->decide());
  EXPECT_EQ(d.action, ExitAction::RemoveRules) << d.reason;
}

TEST_F(OwnerWatchTest, ANameNeverSeenKeepsTheRulesAndSaysWhy) {
  auto watch = makeWatch();
  transport_->addGet(kCollection, okJson(listBody("5", {})));  // misspelt, or another namespace
  transport_->onExhausted([&watch] { watch->stop(); });
  watch->start();
  io_.run();
  EXPECT_EQ(watch->watched(), OwnerState::Absent);
  EXPECT_FALSE(watch->armed());
  EXPECT_THAT(watch->problem(), HasSubstr("daemonset kube-system/nmi not found"));
  transport_->addGet(kObject, statusAnswer(404, "NotFound", "daemonsets.apps \"nmi\" not found"));
  const ExitDecision d = nmi::testing::runSync(io_, watch->decide());
  EXPECT_EQ(d.action, ExitAction::KeepRules);
  EXPECT_THAT(d.reason, HasSubstr("never seen present"));
}

TEST_F(OwnerWatchTest, GetAloneNeverProvesAnUninstall) {
  auto watch = makeWatch();  // not started: the watch knows nothing
  transport_->addGet(kObject, okJson(daemonSet("nmi")));
  EXPECT_EQ(nmi::testing::runSync(io_, watch->decide()).action, ExitAction::KeepRules);
  transport_->addGet(kObject, statusAnswer(404, "NotFound", "daemonsets.apps \"nmi\" not found"));
  EXPECT_EQ(nmi::testing::runSync(io_, watch->decide()).action, ExitAction::KeepRules);
  transport_->addGet(kObject, statusAnswer(403, "Forbidden", "forbidden"));
  EXPECT_EQ(nmi::testing::runSync(io_, watch->decide()).action, ExitAction::KeepRules);
  transport_->addGet(kObject, makeError(ErrorCode::Timeout, "timed out"));
  EXPECT_EQ(nmi::testing::runSync(io_, watch->decide()).action, ExitAction::KeepRules);
  // An object that exists with a deletionTimestamp is seen existing and being deleted.
  transport_->addGet(kObject, okJson(daemonSet("nmi", true)));
  EXPECT_EQ(nmi::testing::runSync(io_, watch->decide()).action, ExitAction::RemoveRules);
}

TEST_F(OwnerWatchTest, ThePodsControllerIsRememberedWhenItsReferenceGoes) {
  // Orphan deletion: the garbage collector removes the pod's ownerReferences.
  PodController answer = {true, "DaemonSet", "nmi", "uid-1"};
  auto watch = makeWatch([&answer] { return answer; });
  transport_->addGet(kCollection, okJson(listBody("5", {daemonSet("nmi")})));
  FakeApiTransport::WatchScript script;
  script.lines = {eventLine("DELETED", daemonSet("nmi", true))};
  transport_->addWatch(kCollection, script);
  transport_->onExhausted([&watch] { watch->stop(); });
  watch->start();
  io_.run();
  EXPECT_EQ(watch->problem(), "");  // reads the controller while the reference is there
  answer = PodController{};
  transport_->addGet(kObject, statusAnswer(404, "NotFound", "not found"));
  EXPECT_EQ(nmi::testing::runSync(io_, watch->decide()).action, ExitAction::RemoveRules);
}

TEST_F(OwnerWatchTest, APodControlledByAnotherDaemonSetIsAProblem) {
  auto watch = makeWatch([] { return PodController{true, "DaemonSet", "nmi-real", "uid-9"}; });
  transport_->addGet(kCollection, okJson(listBody("5", {daemonSet("nmi")})));
  transport_->onExhausted([&watch] { watch->stop(); });
  watch->start();
  io_.run();
  EXPECT_FALSE(watch->armed());
  EXPECT_THAT(watch->problem(), HasSubstr("controlled by DaemonSet nmi-real"));
  transport_->addGet(kObject, statusAnswer(404, "NotFound", "not found"));
  EXPECT_EQ(nmi::testing::runSync(io_, watch->decide()).action, ExitAction::KeepRules);
}

}  // namespace
}  // namespace nmi::kube
