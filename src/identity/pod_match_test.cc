#include "identity/pod_match.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace nmi::identity {
namespace {

using namespace std::chrono_literals;

// The node's wall clock in these tests.
constexpr SystemTime kNow{std::chrono::seconds{1'700'000'000}};

PodInfo podIn(std::string name, std::string phase, bool deleting = false,
              bool host_network = false) {
  PodInfo pod;
  pod.ns = "apps";
  pod.name = std::move(name);
  pod.uid = "uid-" + pod.name;
  pod.phase = std::move(phase);
  pod.node_name = "node-1";
  pod.ips = {"10.0.0.1"};
  pod.host_network = host_network;
  pod.deleting = deleting;
  if (deleting) {
    pod.deletion_deadline = kNow + 30s;  // deleted just now with the default grace period
  }
  return pod;
}

// A pod being deleted whose deletionTimestamp is `deadline`.
PodInfo deletingPod(std::string name, SystemTime deadline) {
  PodInfo pod = podIn(std::move(name), "Running", true);
  pod.deletion_deadline = deadline;
  return pod;
}

PodMatch match(std::vector<PodInfo> pods, std::vector<std::string> lost = {},
               SystemTime now = kNow) {
  return matchPodByIp(IpClaims{std::move(pods), std::move(lost)}, now);
}

// ---- matchPodByIp: live pods ---------------------------------------------------------------

TEST(MatchPodByIpTest, NoCandidatesIsUnknown) {
  EXPECT_EQ(match({}).kind, PodMatch::Kind::Unknown);
}

TEST(MatchPodByIpTest, FindsTheOneRunningOrPendingPod) {
  for (const char* phase : {"Running", "Pending"}) {
    const auto m = match({podIn("web", phase)});
    ASSERT_EQ(m.kind, PodMatch::Kind::Found) << phase;
    EXPECT_EQ(m.pod.name, "web");
  }
}

TEST(MatchPodByIpTest, IgnoresFinishedPodsAndHostNetworkPods) {
  const auto m =
      match({podIn("done", "Succeeded"), podIn("failed", "Failed"), podIn("unknown", "Unknown"),
             podIn("blank", ""), podIn("host", "Running", false, true)});
  EXPECT_EQ(m.kind, PodMatch::Kind::Unknown);
  const auto with_live = match({podIn("done", "Succeeded"), podIn("web", "Running")});
  ASSERT_EQ(with_live.kind, PodMatch::Kind::Found);
  EXPECT_EQ(with_live.pod.name, "web");
}

TEST(MatchPodByIpTest, TwoLivePodsConflict) {
  const auto m = match({podIn("web-2", "Running"), podIn("web-1", "Pending")});
  ASSERT_EQ(m.kind, PodMatch::Kind::Conflict);
  EXPECT_EQ(m.conflicting, (std::vector<std::string>{"apps/web-1", "apps/web-2"}));
}

TEST(MatchPodByIpTest, PodNotBeingDeletedWinsOverDeletingOne) {
  const auto m = match({podIn("old", "Running", true), podIn("new", "Pending")});
  ASSERT_EQ(m.kind, PodMatch::Kind::Found);
  EXPECT_EQ(m.pod.name, "new");
}

TEST(MatchPodByIpTest, SamePodListedTwiceCountsOnce) {
  EXPECT_EQ(match({podIn("web", "Running"), podIn("web", "Running")}).kind, PodMatch::Kind::Found);
}

// ---- matchPodByIp: pods being deleted ------------------------------------------------------

TEST(MatchPodByIpTest, DeletingPodIsServedInsideItsGraceWindowWhenAlone) {
  const auto m = match({podIn("old", "Running", true), podIn("done", "Succeeded")});
  ASSERT_EQ(m.kind, PodMatch::Kind::Found);
  EXPECT_EQ(m.pod.name, "old");
  EXPECT_TRUE(m.pod.deleting);
  EXPECT_TRUE(m.refused.empty());
}

TEST(MatchPodByIpTest, DeletingPodIsRefusedOnceItsGraceWindowEnds) {
  // The window ends `deletion_clock_allowance` (1 s) before deletionTimestamp.
  struct Case {
    std::chrono::milliseconds before_deadline;
    bool served;
  };
  for (const Case c : {Case{30'000ms, true}, Case{1'001ms, true}, Case{1'000ms, false},
                       Case{999ms, false}, Case{0ms, false}, Case{-5'000ms, false}}) {
    const SystemTime deadline = kNow + c.before_deadline;
    const auto m = match({deletingPod("old", deadline)});
    EXPECT_EQ(m.kind == PodMatch::Kind::Found, c.served) << c.before_deadline.count() << " ms";
    if (!c.served) {
      ASSERT_EQ(m.kind, PodMatch::Kind::Unknown);
      ASSERT_EQ(m.refused.size(), 1U);
      EXPECT_NE(m.refused[0].find("apps/old (being deleted; its grace period ended at "),
                std::string::npos)
          << m.refused[0];
    }
  }
}

TEST(MatchPodByIpTest, ClockAllowanceIsAPolicy) {
  const SystemTime deadline = kNow + 500ms;
  EXPECT_EQ(match({deletingPod("old", deadline)}).kind, PodMatch::Kind::Unknown);
  PodMatchPolicy trusting;
  trusting.deletion_clock_allowance = 0ms;
  EXPECT_EQ(matchPodByIp(IpClaims{{deletingPod("old", deadline)}, {}}, kNow, trusting).kind,
            PodMatch::Kind::Found);
}

TEST(MatchPodByIpTest, DeletingPodThatLostTheAddressIsRefusedInsideItsWindow) {
  const PodInfo old = deletingPod("old", kNow + 60s);
  const auto m = match({old}, {podClaimKey(old)});
  EXPECT_EQ(m.kind, PodMatch::Kind::Unknown);
  EXPECT_EQ(
      m.refused,
      (std::vector<std::string>{"apps/old (being deleted; another pod has claimed the address)"}));
  // Another pod's loss says nothing about this one.
  EXPECT_EQ(match({old}, {"apps/old/another-uid", "apps/other/uid-other"}).kind,
            PodMatch::Kind::Found);
}

TEST(MatchPodByIpTest, TwoDeletingPodsInTheirWindowsConflict) {
  const auto m = match({podIn("a", "Running", true), podIn("b", "Running", true)});
  ASSERT_EQ(m.kind, PodMatch::Kind::Conflict);
  EXPECT_EQ(m.conflicting, (std::vector<std::string>{"apps/a", "apps/b"}));
  // One of them out of its window: the other is the pod.
  const auto one = match({deletingPod("a", kNow - 1s), podIn("b", "Running", true)});
  ASSERT_EQ(one.kind, PodMatch::Kind::Found);
  EXPECT_EQ(one.pod.name, "b");
  EXPECT_EQ(one.refused.size(), 1U);
}

TEST(MatchPodByIpTest, GraceWindowIsTheNodesWallClock) {
  const PodInfo old = deletingPod("old", kNow + 10s);
  EXPECT_EQ(match({old}, {}, kNow + 8s).kind, PodMatch::Kind::Found);
  EXPECT_EQ(match({old}, {}, kNow + 9s).kind, PodMatch::Kind::Unknown);
  EXPECT_EQ(match({old}, {}, kNow + 1h).kind, PodMatch::Kind::Unknown);
}

// ---- podsLosingIp --------------------------------------------------------------------------

TEST(PodsLosingIpTest, DeletingPodLosesTheAddressToAnotherLivePod) {
  const PodInfo old = podIn("old", "Running", true);
  for (const char* phase : {"Pending", "Running"}) {
    EXPECT_EQ(podsLosingIp({old, podIn("new", phase)}),
              (std::vector<std::string>{podClaimKey(old)}))
        << phase;
  }
}

TEST(PodsLosingIpTest, NothingIsLostWithoutAnotherLivePod) {
  const PodInfo old = podIn("old", "Running", true);
  EXPECT_TRUE(podsLosingIp({old}).empty());
  // A finished pod keeps its old address in its status: it claims nothing.
  EXPECT_TRUE(podsLosingIp({old, podIn("job", "Succeeded"), podIn("crashed", "Failed")}).empty());
  EXPECT_TRUE(podsLosingIp({old, podIn("host", "Running", false, true)}).empty());
  // The same pod listed twice is not another pod.
  EXPECT_TRUE(podsLosingIp({old, old}).empty());
}

TEST(PodsLosingIpTest, PodsNotBeingDeletedLoseNothing) {
  // Two live pods conflict (matchPodByIp): neither loses the address for good.
  EXPECT_TRUE(podsLosingIp({podIn("a", "Running"), podIn("b", "Running")}).empty());
}

TEST(PodsLosingIpTest, RecreatedPodOfTheSameNameIsAnotherPod) {
  const PodInfo old = podIn("web-0", "Running", true);
  PodInfo again = podIn("web-0", "Pending");
  again.uid = "uid-web-0-second";
  EXPECT_EQ(podsLosingIp({old, again}), (std::vector<std::string>{podClaimKey(old)}));
}

TEST(PodsLosingIpTest, TwoDeletingPodsBothLose) {
  const PodInfo a = podIn("a", "Running", true);
  const PodInfo b = podIn("b", "Running", true);
  EXPECT_EQ(podsLosingIp({b, a}), (std::vector<std::string>{podClaimKey(a), podClaimKey(b)}));
}

}  // namespace
}  // namespace nmi::identity
