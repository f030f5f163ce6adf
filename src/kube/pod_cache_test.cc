#include "kube/pod_cache.h"

#include <algorithm>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "kube/crd_cache.h"

namespace nmi::kube {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

json pod(const std::string& ns, const std::string& name, const std::vector<std::string>& ips,
         const std::string& node = "node-1", bool host_network = false,
         const std::string& phase = "Running") {
  json pod_ips = json::array();
  for (const auto& ip : ips) {
    pod_ips.push_back({{"ip", ip}});
  }
  json status = {{"phase", phase}, {"podIPs", pod_ips}};
  if (!ips.empty()) {
    status["podIP"] = ips.front();
  }
  return {{"metadata", {{"namespace", ns}, {"name", name}, {"uid", name + "-uid"}}},
          {"spec", {{"nodeName", node}, {"hostNetwork", host_network}}},
          {"status", status}};
}

std::vector<std::string> names(const std::vector<identity::PodInfo>& pods) {
  std::vector<std::string> out;
  out.reserve(pods.size());
  for (const auto& p : pods) {
    out.push_back(p.ns + "/" + p.name);
  }
  return out;
}

void replace(ObjectStore& store, const std::vector<json>& objects) {
  store.beginReplace();
  for (const auto& object : objects) {
    ASSERT_TRUE(store.stage(object).has_value());
  }
  store.commitReplace();
}

TEST(PodCacheTest, IndexesEveryReportedIp) {
  PodCache cache("node-1");
  replace(cache, {pod("a", "dual", {"10.0.0.1", "fd00::1"}), pod("a", "single", {"10.0.0.2"})});
  EXPECT_THAT(names(cache.podsByIp("10.0.0.1")), ElementsAre("a/dual"));
  EXPECT_THAT(names(cache.podsByIp("fd00::1")), ElementsAre("a/dual"));
  EXPECT_THAT(names(cache.podsByIp("10.0.0.2")), ElementsAre("a/single"));
  EXPECT_THAT(cache.podsByIp("10.0.0.3"), IsEmpty());
  ASSERT_TRUE(cache.podByName("a", "dual").has_value());
  EXPECT_EQ(cache.podByName("a", "dual")->uid, "dual-uid");
  EXPECT_FALSE(cache.podByName("a", "nope").has_value());
  EXPECT_EQ(cache.size(), 2U);
}

TEST(PodCacheTest, FallsBackToPodIpWhenPodIpsIsEmpty) {
  PodCache cache("node-1");
  json legacy = pod("a", "legacy", {});
  legacy["status"]["podIP"] = "10.0.0.9";
  ASSERT_TRUE(cache.apply(EventType::Added, legacy).has_value());
  EXPECT_THAT(names(cache.podsByIp("10.0.0.9")), ElementsAre("a/legacy"));
}

TEST(PodCacheTest, HostNetworkPodsAreNotFoundByIp) {
  PodCache cache("node-1");
  ASSERT_TRUE(
      cache.apply(EventType::Added, pod("kube-system", "hostnet", {"10.240.0.4"}, "node-1", true))
          .has_value());
  EXPECT_THAT(cache.podsByIp("10.240.0.4"), IsEmpty());
  EXPECT_TRUE(cache.podByName("kube-system", "hostnet").has_value());
}

TEST(PodCacheTest, ADeletedPodLeavesTheIndexAtOnce) {
  PodCache cache("node-1");
  ASSERT_TRUE(cache.apply(EventType::Added, pod("a", "old", {"10.0.0.1"})).has_value());
  ASSERT_TRUE(cache.apply(EventType::Deleted, pod("a", "old", {"10.0.0.1"})).has_value());
  EXPECT_THAT(cache.podsByIp("10.0.0.1"), IsEmpty());
  EXPECT_FALSE(cache.podByName("a", "old").has_value());
  EXPECT_EQ(cache.store().indexSizeForTest(0), 0U);
  // DELETED needs only the metadata.
  ASSERT_TRUE(cache.apply(EventType::Added, pod("a", "x", {"10.0.0.5"})).has_value());
  ASSERT_TRUE(
      cache.apply(EventType::Deleted, json{{"metadata", {{"namespace", "a"}, {"name", "x"}}}})
          .has_value());
  EXPECT_THAT(cache.podsByIp("10.0.0.5"), IsEmpty());
}

TEST(PodCacheTest, TwoLivePodsClaimingOneIpAreBothReturned) {
  PodCache cache("node-1");
  ASSERT_TRUE(cache.apply(EventType::Added, pod("a", "one", {"10.0.0.1"})).has_value());
  ASSERT_TRUE(cache.apply(EventType::Added, pod("b", "two", {"10.0.0.1"})).has_value());
  EXPECT_THAT(names(cache.podsByIp("10.0.0.1")), ElementsAre("a/one", "b/two"));
}

TEST(PodCacheTest, PodsOfEveryPhaseAreIndexed) {
  PodCache cache("node-1");
  ASSERT_TRUE(
      cache.apply(EventType::Added, pod("a", "done", {"10.0.0.1"}, "node-1", false, "Succeeded"))
          .has_value());
  EXPECT_THAT(names(cache.podsByIp("10.0.0.1")), ElementsAre("a/done"));
}

TEST(PodCacheTest, AnUpdateMovesThePodsIp) {
  PodCache cache("node-1");
  ASSERT_TRUE(cache.apply(EventType::Added, pod("a", "p", {"10.0.0.1"})).has_value());
  ASSERT_TRUE(cache.apply(EventType::Modified, pod("a", "p", {"10.0.0.2"})).has_value());
  EXPECT_THAT(cache.podsByIp("10.0.0.1"), IsEmpty());
  EXPECT_THAT(names(cache.podsByIp("10.0.0.2")), ElementsAre("a/p"));
  ASSERT_TRUE(cache.apply(EventType::Modified, pod("a", "p", {})).has_value());
  EXPECT_THAT(cache.podsByIp("10.0.0.2"), IsEmpty());
  EXPECT_EQ(cache.size(), 1U);
}

TEST(PodCacheTest, PodsOfOtherNodesAreIgnored) {
  PodCache cache("node-1");
  ASSERT_TRUE(cache.apply(EventType::Added, pod("a", "p", {"10.0.0.1"}, "node-2")).has_value());
  EXPECT_THAT(cache.podsByIp("10.0.0.1"), IsEmpty());
  // A pod that moves away (a stale update) leaves.
  ASSERT_TRUE(cache.apply(EventType::Added, pod("a", "q", {"10.0.0.3"})).has_value());
  ASSERT_TRUE(cache.apply(EventType::Modified, pod("a", "q", {"10.0.0.3"}, "node-2")).has_value());
  EXPECT_THAT(cache.podsByIp("10.0.0.3"), IsEmpty());
  EXPECT_EQ(cache.size(), 0U);
}

TEST(PodCacheTest, AnUndecodableUpdateRemovesThePreviousVersion) {
  PodCache cache("node-1");
  ASSERT_TRUE(cache.apply(EventType::Added, pod("a", "p", {"10.0.0.1"})).has_value());
  json bad = pod("a", "p", {"10.0.0.1"});
  bad["status"]["podIPs"][0]["ip"] = "not-an-ip";
  auto applied = cache.apply(EventType::Modified, bad);
  EXPECT_FALSE(applied.has_value());
  EXPECT_THAT(cache.podsByIp("10.0.0.1"), IsEmpty());
  EXPECT_FALSE(cache.podByName("a", "p").has_value());
}

TEST(PodCacheTest, ARelistReplacesEverythingAtOnce) {
  PodCache cache("node-1");
  replace(cache, {pod("a", "old", {"10.0.0.1"}), pod("a", "kept", {"10.0.0.2"})});
  cache.beginReplace();
  ASSERT_TRUE(cache.stage(pod("a", "kept", {"10.0.0.3"})).has_value());
  ASSERT_TRUE(cache.stage(pod("a", "new", {"10.0.0.1"})).has_value());
  ASSERT_FALSE(cache.stage(json{{"metadata", {{"name", 3}}}}).has_value());  // skipped
  // Until the commit, readers see the old set.
  EXPECT_THAT(names(cache.podsByIp("10.0.0.1")), ElementsAre("a/old"));
  cache.commitReplace();
  EXPECT_THAT(names(cache.podsByIp("10.0.0.1")), ElementsAre("a/new"));
  EXPECT_THAT(cache.podsByIp("10.0.0.2"), IsEmpty());
  EXPECT_THAT(names(cache.podsByIp("10.0.0.3")), ElementsAre("a/kept"));
  EXPECT_EQ(cache.size(), 2U);
}

TEST(PodCacheTest, AnAbortedRelistChangesNothing) {
  PodCache cache("node-1");
  replace(cache, {pod("a", "old", {"10.0.0.1"})});
  cache.beginReplace();
  ASSERT_TRUE(cache.stage(pod("a", "new", {"10.0.0.2"})).has_value());
  cache.abortReplace();
  cache.beginReplace();
  cache.commitReplace();  // an empty list empties the cache
  EXPECT_EQ(cache.size(), 0U);
}

// ---- Addresses lost by pods being deleted --------------------------------------------------

json deleting(json object, const std::string& deadline = "2030-01-01T00:00:30Z") {
  object["metadata"]["deletionTimestamp"] = deadline;
  return object;
}

std::vector<std::string> lostAt(const PodCache& cache, const std::string& ip) {
  auto lost = cache.ipClaims(ip).lost;
  std::sort(lost.begin(), lost.end());
  return lost;
}

TEST(PodCacheTest, ADeletingPodLosesItsAddressForGoodOnceAnotherPodClaimsIt) {
  PodCache cache("node-1");
  ASSERT_TRUE(cache.apply(EventType::Added, pod("a", "old", {"10.0.0.1"})).has_value());
  ASSERT_TRUE(
      cache.apply(EventType::Modified, deleting(pod("a", "old", {"10.0.0.1"}))).has_value());
  EXPECT_THAT(lostAt(cache, "10.0.0.1"), IsEmpty());  // alone: inside its window it is served

  // The new pod's status shows the address: the old pod loses it.
  ASSERT_TRUE(
      cache.apply(EventType::Added, pod("b", "new", {"10.0.0.1"}, "node-1", false, "Pending"))
          .has_value());
  const auto claims = cache.ipClaims("10.0.0.1");
  EXPECT_THAT(names(claims.pods), ElementsAre("a/old", "b/new"));
  EXPECT_THAT(claims.lost, ElementsAre("a/old/old-uid"));

  // The new pod goes away again: the old one does not get the address back.
  ASSERT_TRUE(cache.apply(EventType::Deleted, pod("b", "new", {"10.0.0.1"})).has_value());
  EXPECT_THAT(names(cache.podsByIp("10.0.0.1")), ElementsAre("a/old"));
  EXPECT_THAT(lostAt(cache, "10.0.0.1"), ElementsAre("a/old/old-uid"));
  // Nor after a later update of its own, nor a relist that still shows it.
  ASSERT_TRUE(
      cache.apply(EventType::Modified, deleting(pod("a", "old", {"10.0.0.1"}))).has_value());
  EXPECT_THAT(lostAt(cache, "10.0.0.1"), ElementsAre("a/old/old-uid"));
  replace(cache, {deleting(pod("a", "old", {"10.0.0.1"}))});
  EXPECT_THAT(lostAt(cache, "10.0.0.1"), ElementsAre("a/old/old-uid"));

  // Once it leaves, nothing is remembered.
  ASSERT_TRUE(cache.apply(EventType::Deleted, pod("a", "old", {"10.0.0.1"})).has_value());
  EXPECT_THAT(cache.ipClaims("10.0.0.1").lost, IsEmpty());
  EXPECT_EQ(cache.lossesForTest(), 0U);
}

TEST(PodCacheTest, AClaimSeenBeforeTheDeletionCountsWhileBothReportTheAddress) {
  PodCache cache("node-1");
  ASSERT_TRUE(cache.apply(EventType::Added, pod("a", "old", {"10.0.0.1"})).has_value());
  ASSERT_TRUE(cache.apply(EventType::Added, pod("b", "new", {"10.0.0.1"})).has_value());
  EXPECT_THAT(lostAt(cache, "10.0.0.1"), IsEmpty());  // a conflict, not a loss
  ASSERT_TRUE(
      cache.apply(EventType::Modified, deleting(pod("a", "old", {"10.0.0.1"}))).has_value());
  EXPECT_THAT(lostAt(cache, "10.0.0.1"), ElementsAre("a/old/old-uid"));
}

TEST(PodCacheTest, FinishedPodsClaimNothing) {
  PodCache cache("node-1");
  ASSERT_TRUE(
      cache.apply(EventType::Added, pod("a", "job", {"10.0.0.1"}, "node-1", false, "Succeeded"))
          .has_value());
  ASSERT_TRUE(cache.apply(EventType::Added, deleting(pod("a", "old", {"10.0.0.1"}))).has_value());
  EXPECT_THAT(lostAt(cache, "10.0.0.1"), IsEmpty());
}

TEST(PodCacheTest, ARelistShowsClaimsTheWatchMissed) {
  PodCache cache("node-1");
  replace(cache, {deleting(pod("a", "old", {"10.0.0.1"}))});
  replace(cache, {deleting(pod("a", "old", {"10.0.0.1"})), pod("b", "new", {"10.0.0.1"})});
  EXPECT_THAT(lostAt(cache, "10.0.0.1"), ElementsAre("a/old/old-uid"));
  // A relist without the old pod forgets it.
  replace(cache, {pod("b", "new", {"10.0.0.1"})});
  EXPECT_EQ(cache.lossesForTest(), 0U);
}

TEST(PodCacheTest, ALossIsPerAddressAndPerPod) {
  PodCache cache("node-1");
  ASSERT_TRUE(cache.apply(EventType::Added, deleting(pod("a", "old", {"10.0.0.1", "fd00::1"})))
                  .has_value());
  ASSERT_TRUE(cache.apply(EventType::Added, pod("b", "new", {"10.0.0.1"})).has_value());
  EXPECT_THAT(lostAt(cache, "10.0.0.1"), ElementsAre("a/old/old-uid"));
  EXPECT_THAT(lostAt(cache, "fd00::1"), IsEmpty());
  // The old pod moves off the address: what it lost there is forgotten.
  ASSERT_TRUE(cache.apply(EventType::Modified, deleting(pod("a", "old", {"fd00::1"}))).has_value());
  EXPECT_THAT(lostAt(cache, "10.0.0.1"), IsEmpty());
  EXPECT_EQ(cache.lossesForTest(), 0U);
}

TEST(PodCacheTest, APodCreatedAgainUnderTheNameInheritsNoLoss) {
  PodCache cache("node-1");
  ASSERT_TRUE(cache.apply(EventType::Added, deleting(pod("a", "web-0", {"10.0.0.1"}))).has_value());
  ASSERT_TRUE(cache.apply(EventType::Added, pod("b", "new", {"10.0.0.1"})).has_value());
  EXPECT_THAT(lostAt(cache, "10.0.0.1"), ElementsAre("a/web-0/web-0-uid"));
  // The StatefulSet's pod comes back with another uid (the old object was deleted in between,
  // as the API server requires); the other claimant has gone.
  json again = pod("a", "web-0", {"10.0.0.1"});
  again["metadata"]["uid"] = "web-0-uid-2";
  ASSERT_TRUE(cache.apply(EventType::Deleted, pod("a", "web-0", {"10.0.0.1"})).has_value());
  ASSERT_TRUE(cache.apply(EventType::Deleted, pod("b", "new", {"10.0.0.1"})).has_value());
  ASSERT_TRUE(cache.apply(EventType::Added, deleting(again)).has_value());
  EXPECT_THAT(lostAt(cache, "10.0.0.1"), IsEmpty());
}

TEST(PodCacheTest, RememberedLossesAreBoundedByThePodsHeld) {
  PodCache cache("node-1");
  // Churn on one address: each deleting pod loses it to the next, then leaves.
  for (int i = 0; i < 200; ++i) {
    const std::string name = "p" + std::to_string(i);
    ASSERT_TRUE(cache.apply(EventType::Added, pod("a", name, {"10.0.0.1"})).has_value());
    if (i > 0) {
      const std::string prev = "p" + std::to_string(i - 1);
      ASSERT_TRUE(
          cache.apply(EventType::Modified, deleting(pod("a", prev, {"10.0.0.1"}))).has_value());
      ASSERT_TRUE(cache.apply(EventType::Deleted, pod("a", prev, {"10.0.0.1"})).has_value());
    }
    EXPECT_LE(cache.lossesForTest(), cache.size());
  }
  EXPECT_EQ(cache.lossesForTest(), 0U);
  EXPECT_EQ(cache.size(), 1U);
}

json assignedIdentity(const std::string& name, const std::string& pod_ns,
                      const std::string& pod_name, const std::string& state) {
  return {{"metadata", {{"namespace", "default"}, {"name", name}}},
          {"spec",
           {{"pod", pod_name},
            {"podNamespace", pod_ns},
            {"nodename", "node-1"},
            {"azureIdentityRef",
             {{"metadata", {{"namespace", "default"}, {"name", "id"}}},
              {"spec", {{"type", 0}, {"clientID", "cid"}}}}}}},
          {"status", {{"status", state}}}};
}

TEST(CrdCacheTest, AssignedIdentitiesByPod) {
  AssignedIdentityCache cache;
  ASSERT_TRUE(cache.apply(EventType::Added, assignedIdentity("x1", "ns", "p", "Created")));
  ASSERT_TRUE(cache.apply(EventType::Added, assignedIdentity("x2", "ns", "p", "Assigned")));
  ASSERT_TRUE(cache.apply(EventType::Added, assignedIdentity("y", "ns", "q", "Assigned")));
  auto found = cache.byPod("ns", "p");
  ASSERT_EQ(found.size(), 2U);
  EXPECT_EQ(found[0].name, "x1");
  EXPECT_EQ(found[0].state, identity::AssignedState::Created);
  ASSERT_TRUE(cache.apply(EventType::Modified, assignedIdentity("x1", "ns", "p", "Assigned")));
  EXPECT_EQ(cache.byPod("ns", "p")[0].state, identity::AssignedState::Assigned);
  ASSERT_TRUE(cache.apply(EventType::Deleted, assignedIdentity("x1", "ns", "p", "Assigned")));
  EXPECT_EQ(cache.byPod("ns", "p").size(), 1U);
  EXPECT_TRUE(cache.byPod("ns", "none").empty());
}

TEST(CrdCacheTest, BindingsIdentitiesAndExceptions) {
  BindingCache bindings;
  ASSERT_TRUE(bindings.apply(EventType::Added,
                             json{{"metadata", {{"namespace", "a"}, {"name", "b1"}}},
                                  {"spec", {{"azureIdentity", "id"}, {"selector", "sel"}}}}));
  ASSERT_TRUE(bindings.apply(EventType::Added,
                             json{{"metadata", {{"namespace", "b"}, {"name", "b2"}}},
                                  {"spec", {{"azureIdentity", "id"}, {"selector", "sel"}}}}));
  EXPECT_EQ(bindings.bySelector("sel").size(), 2U);
  ASSERT_TRUE(bindings.apply(EventType::Modified,
                             json{{"metadata", {{"namespace", "b"}, {"name", "b2"}}},
                                  {"spec", {{"azureIdentity", "id"}, {"selector", "other"}}}}));
  EXPECT_EQ(bindings.bySelector("sel").size(), 1U);
  EXPECT_EQ(bindings.bySelector("other").size(), 1U);

  AzureIdentityCache identities;
  ASSERT_TRUE(
      identities.apply(EventType::Added, json{{"metadata", {{"namespace", "a"}, {"name", "id"}}},
                                              {"spec", {{"type", 0}, {"clientID", "c1"}}}}));
  ASSERT_TRUE(identities.get("a", "id").has_value());
  EXPECT_EQ(identities.get("a", "id")->client_id, "c1");
  EXPECT_FALSE(identities.get("b", "id").has_value());

  ExceptionCache exceptions;
  ASSERT_TRUE(exceptions.apply(EventType::Added,
                               json{{"metadata", {{"namespace", "kube-system"}, {"name", "e"}}},
                                    {"spec", {{"podLabels", {{"app", "mic"}}}}}}));
  EXPECT_EQ(exceptions.byNamespace("kube-system").size(), 1U);
  EXPECT_TRUE(exceptions.byNamespace("default").empty());
}

}  // namespace
}  // namespace nmi::kube
