#include "identity/gather.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/fakes/fake_identity_source.h"

namespace nmi::identity {
namespace {

using nmi::testing::FakeIdentitySource;

PodInfo webPod() {
  PodInfo pod;
  pod.ns = "apps";
  pod.name = "web";
  pod.labels = {{"aadpodidbinding", "demo"}};
  return pod;
}

AzureIdentity makeIdentity(std::string ns, std::string name) {
  AzureIdentity id;
  id.ns = std::move(ns);
  id.name = std::move(name);
  id.client_id = id.name + "-client";
  return id;
}

void populate(FakeIdentitySource& source, bool with_assignments = true) {
  if (with_assignments) {
    AzureAssignedIdentity mine;
    mine.name = "web-apps-id";
    mine.pod = "web";
    mine.pod_namespace = "apps";
    AzureAssignedIdentity theirs = mine;
    theirs.pod = "other";
    source.addAssigned(mine);
    source.addAssigned(theirs);
  }
  for (const AzureIdentityBinding& b :
       std::vector<AzureIdentityBinding>{{"apps", "bind-1", "id", "demo"},
                                         {"apps", "bind-2", "id", "demo"},  // same identity twice
                                         {"team", "bind-3", "team-id", "demo"},
                                         {"apps", "bind-4", "unused", "other-selector"},
                                         {"apps", "bind-5", "missing", "demo"}}) {
    source.addBinding(b);
  }
  for (const AzureIdentity& id :
       {makeIdentity("apps", "id"), makeIdentity("team", "team-id"), makeIdentity("apps", "unused"),
        makeIdentity("apps", "team-id")}) {
    source.addIdentity(id);
  }
  source.addException({"apps", "e1", {{"app", "mic"}}});
  source.addException({"kube-system", "e2", {}});
}

std::vector<std::string> names(const std::vector<AzureIdentityBinding>& bindings) {
  std::vector<std::string> out;
  out.reserve(bindings.size());
  for (const auto& b : bindings) {
    out.push_back(b.ns + "/" + b.name);
  }
  return out;
}

std::vector<std::string> names(const std::vector<AzureIdentity>& ids) {
  std::vector<std::string> out;
  out.reserve(ids.size());
  for (const auto& id : ids) {
    out.push_back(id.ns + "/" + id.name);
  }
  return out;
}

TEST(GatherInputTest, StandardModeCollectsEverythingAboutThePod) {
  FakeIdentitySource source;
  populate(source);
  const auto input = gatherInput(source, webPod(), Mode::Standard);
  EXPECT_EQ(input.pod, webPod());
  ASSERT_EQ(input.assigned.size(), 1U);
  EXPECT_EQ(input.assigned[0].pod, "web");
  EXPECT_EQ(names(input.bindings_selecting_pod),
            (std::vector<std::string>{"apps/bind-1", "apps/bind-2", "team/bind-3", "apps/bind-5"}));
  // Each binding's identity in the binding's namespace, once; missing ones are simply absent.
  EXPECT_EQ(names(input.bound_identities), (std::vector<std::string>{"apps/id", "team/team-id"}));
  EXPECT_EQ(source.identityQueries(), 3);
  ASSERT_EQ(input.exceptions.size(), 1U);
  EXPECT_EQ(input.exceptions[0].name, "e1");
}

TEST(GatherInputTest, ManagedModeSkipsAssignmentsAndOtherNamespaces) {
  FakeIdentitySource source;
  populate(source);
  const auto input = gatherInput(source, webPod(), Mode::Managed);
  EXPECT_EQ(source.assignedQueries(), 0);
  EXPECT_TRUE(input.assigned.empty());
  EXPECT_EQ(names(input.bindings_selecting_pod),
            (std::vector<std::string>{"apps/bind-1", "apps/bind-2", "apps/bind-5"}));
  EXPECT_EQ(names(input.bound_identities), (std::vector<std::string>{"apps/id"}));
}

TEST(GatherInputTest, UnlabelledPodLooksUpBindingsWithEmptySelector) {
  FakeIdentitySource source;
  populate(source);
  source.addBinding({"apps", "catch-all", "unused", ""});
  PodInfo pod = webPod();
  pod.labels.clear();
  const auto input = gatherInput(source, pod, Mode::Managed);
  EXPECT_EQ(names(input.bindings_selecting_pod), (std::vector<std::string>{"apps/catch-all"}));
  EXPECT_EQ(names(input.bound_identities), (std::vector<std::string>{"apps/unused"}));
}

TEST(GatherInputTest, GatheredInputResolves) {
  FakeIdentitySource source;
  populate(source, /*with_assignments=*/false);
  const auto input = gatherInput(source, webPod(), Mode::Managed);
  const auto d = resolve(input, {}, ResolverOptions{Mode::Managed, true, true});
  ASSERT_EQ(d.kind, DecisionKind::Grant) << d.reason;
  EXPECT_EQ(d.identity.name, "id");
}

}  // namespace
}  // namespace nmi::identity
