#include "kube/owner_check.h"

#include <array>
#include <chrono>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "kube/fake_api_transport.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/run_sync.h"

namespace nmi::kube {
namespace {

using testing::eventLine;
using testing::FakeApiTransport;
using testing::listBody;
using testing::okJson;
using testing::statusAnswer;

nlohmann::json daemonSet(const std::string& name, bool deleting = false) {
  nlohmann::json meta = {{"name", name}, {"namespace", "kube-system"}, {"resourceVersion", "7"}};
  if (deleting) {
    meta["deletionTimestamp"] = "2026-11-29T21:00:00Z";
    meta["finalizers"] = {"foregroundDeletion"};
  }
  return {{"apiVersion", "apps/v1"}, {"kind", "DaemonSet"}, {"metadata", meta}};
}

TEST(OwnerStateTest, DeletionTimestampMeansDeleting) {
  EXPECT_EQ(ownerStateOf(daemonSet("nmi")), OwnerState::Present);
  EXPECT_EQ(ownerStateOf(daemonSet("nmi", true)), OwnerState::Deleting);
  auto null_timestamp = daemonSet("nmi");
  null_timestamp["metadata"]["deletionTimestamp"] = nullptr;
  EXPECT_EQ(ownerStateOf(null_timestamp), OwnerState::Present);
}

TEST(OwnerStateTest, GetAnswersMapToStates) {
  EXPECT_EQ(ownerStateFromGet(okJson(daemonSet("nmi"))), OwnerState::Present);
  EXPECT_EQ(ownerStateFromGet(okJson(daemonSet("nmi", true))), OwnerState::Deleting);
  EXPECT_EQ(ownerStateFromGet(statusAnswer(404, "NotFound", "not found")), OwnerState::Absent);
  // Whatever is not a clear answer is Unknown: refused, failing, garbled, unreachable.
  EXPECT_EQ(ownerStateFromGet(statusAnswer(401, "Unauthorized", "x")), OwnerState::Unknown);
  EXPECT_EQ(ownerStateFromGet(statusAnswer(403, "Forbidden", "x")), OwnerState::Unknown);
  EXPECT_EQ(ownerStateFromGet(statusAnswer(500, "InternalError", "x")), OwnerState::Unknown);
  EXPECT_EQ(ownerStateFromGet(statusAnswer(429, "TooManyRequests", "x")), OwnerState::Unknown);
  EXPECT_EQ(ownerStateFromGet(ApiResponse{200, "not json", std::nullopt}), OwnerState::Unknown);
  EXPECT_EQ(ownerStateFromGet(ApiResponse{200, "[]", std::nullopt}), OwnerState::Unknown);
  EXPECT_EQ(ownerStateFromGet(ApiResponse{200, "{}", std::nullopt}), OwnerState::Unknown);
  EXPECT_EQ(ownerStateFromGet(makeError(ErrorCode::Timeout, "timed out")), OwnerState::Unknown);
  EXPECT_EQ(ownerStateFromGet(makeError(ErrorCode::Unavailable, "refused")), OwnerState::Unknown);
}

TEST(DecideOnExitTest, RemovesOnlyWhenGoneOrDeleting) {
  using S = OwnerState;
  const std::array<S, 4> all = {S::Unknown, S::Present, S::Deleting, S::Absent};
  for (const S watched : all) {
    for (const S fetched : all) {
      const S basis = fetched != S::Unknown ? fetched : watched;
      const bool remove = basis == S::Absent || basis == S::Deleting;
      const ExitDecision d = decideOnExit(watched, fetched);
      EXPECT_EQ(d.action == ExitAction::RemoveRules, remove)
          << ownerStateName(watched) << " / " << ownerStateName(fetched) << ": " << d.reason;
      EXPECT_FALSE(d.reason.empty());
    }
  }
}

TEST(DecideOnExitTest, FreshAnswerWinsOverTheWatch) {
  // Re-created under the same name since the watch last saw it: keep (its pods take over).
  EXPECT_EQ(decideOnExit(OwnerState::Absent, OwnerState::Present).action, ExitAction::KeepRules);
  // The watch lagged behind a deletion.
  EXPECT_EQ(decideOnExit(OwnerState::Present, OwnerState::Absent).action, ExitAction::RemoveRules);
  // The request failed (the ServiceAccount is already gone): the watch decides.
  EXPECT_EQ(decideOnExit(OwnerState::Absent, OwnerState::Unknown).action, ExitAction::RemoveRules);
  EXPECT_EQ(decideOnExit(OwnerState::Unknown, OwnerState::Unknown).action, ExitAction::KeepRules);
}

TEST(OwnerStoreTest, FollowsListsAndEventsOfItsDaemonSetOnly) {
  OwnerStore store("nmi");
  EXPECT_EQ(store.state(), OwnerState::Unknown);
  store.beginReplace();
  ASSERT_TRUE(store.stage(daemonSet("other")).has_value());
  store.commitReplace();
  EXPECT_EQ(store.state(), OwnerState::Absent);  // a list without it
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
  ASSERT_TRUE(store.apply(EventType::Added, daemonSet("nmi")).has_value());
  EXPECT_EQ(store.state(), OwnerState::Present);
}

class OwnerWatchTest : public ::testing::Test {
 protected:
  static constexpr const char* kCollection = "/apis/apps/v1/namespaces/kube-system/daemonsets";
  static constexpr const char* kObject = "/apis/apps/v1/namespaces/kube-system/daemonsets/nmi";

  std::unique_ptr<OwnerWatch> makeWatch() {
    OwnerWatchOptions options;
    options.ns = "kube-system";
    options.name = "nmi";
    return std::make_unique<OwnerWatch>(io_.get_executor(), transport_, options, clock_, nullptr);
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
  const auto calls = transport_->calls();
  ASSERT_GE(calls.size(), 2U);
  EXPECT_NE(calls[0].find("fieldSelector=metadata.name%3Dnmi"), std::string::npos) << calls[0];

  // The ServiceAccount was deleted with the DaemonSet: the GET on exit gets a 401.
  transport_->addGet(kObject, statusAnswer(401, "Unauthorized", "Unauthorized"));
  const ExitDecision d = nmi::testing::runSync(io_, watch->decide());
  EXPECT_EQ(d.action, ExitAction::RemoveRules) << d.reason;
}

TEST_F(OwnerWatchTest, GetDecidesWithoutAWatch) {
  auto watch = makeWatch();  // not started: the watch knows nothing
  transport_->addGet(kObject, okJson(daemonSet("nmi")));
  EXPECT_EQ(nmi::testing::runSync(io_, watch->decide()).action, ExitAction::KeepRules);
  transport_->addGet(kObject, okJson(daemonSet("nmi", true)));
  EXPECT_EQ(nmi::testing::runSync(io_, watch->decide()).action, ExitAction::RemoveRules);
  transport_->addGet(kObject, statusAnswer(404, "NotFound", "daemonsets.apps \"nmi\" not found"));
  EXPECT_EQ(nmi::testing::runSync(io_, watch->decide()).action, ExitAction::RemoveRules);
  transport_->addGet(kObject, statusAnswer(403, "Forbidden", "forbidden"));
  EXPECT_EQ(nmi::testing::runSync(io_, watch->decide()).action, ExitAction::KeepRules);
  transport_->addGet(kObject, makeError(ErrorCode::Timeout, "timed out"));
  EXPECT_EQ(nmi::testing::runSync(io_, watch->decide()).action, ExitAction::KeepRules);
}

}  // namespace
}  // namespace nmi::kube
