#include "identity/gather.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace nmi::identity {
namespace {

// An in-memory IdentitySource that answers from plain lists and counts lookups.
class ListIdentitySource final : public IdentitySource {
 public:
  std::vector<AzureAssignedIdentity> assigned;
  std::vector<AzureIdentityBinding> bindings;
  std::vector<AzureIdentity> identities;
  std::vector<AzurePodIdentityException> exception_list;
  mutable int assigned_queries = 0;
  mutable int identity_queries = 0;

  bool hasSynced() const override { return true; }
  std::string notReadyReason() const override { return {}; }
  std::chrono::seconds staleness() const override { return std::chrono::seconds{0}; }
  std::vector<PodInfo> podsByIp(std::string_view /*ip*/) const override { return {}; }
  IpClaims ipClaims(std::string_view /*ip*/) const override { return {}; }
  std::optional<PodInfo> podByName(std::string_view /*ns*/,
                                   std::string_view /*name*/) const override {
    return std::nullopt;
  }
  std::vector<AzureAssignedIdentity> assignedIdentities(std::string_view pod_ns,
                                                        std::string_view pod_name) const override {
    ++assigned_queries;
    std::vector<AzureAssignedIdentity> out;
    for (const auto& a : assigned) {
      if (a.pod_namespace == pod_ns && a.pod == pod_name) {
        out.push_back(a);
      }
    }
    return out;
  }
  std::vector<AzureIdentityBinding> bindingsBySelector(std::string_view selector) const override {
    std::vector<AzureIdentityBinding> out;
    for (const auto& b : bindings) {
      if (b.selector == selector) {
        out.push_back(b);
      }
    }
    return out;
  }
  std::optional<AzureIdentity> identity(std::string_view ns, std::string_view name) const override {
    ++identity_queries;
    for (const auto& id : identities) {
      if (id.ns == ns && id.name == name) {
        return id;
      }
    }
    return std::nullopt;
  }
  std::vector<AzurePodIdentityException> exceptions(std::string_view ns) const override {
    std::vector<AzurePodIdentityException> out;
    for (const auto& e : exception_list) {
      if (e.ns == ns) {
        out.push_back(e);
      }
    }
    return out;
  }
  Task<Result<SecretData>> secret(const SecretRef& /*ref*/) override { return notFound(); }
  ChangeNotifier& changes() override { return notifier_; }

 private:
  static Task<Result<SecretData>> notFound() { co_return makeError(ErrorCode::NotFound, "none"); }
  ChangeNotifier notifier_;
};

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

void populate(ListIdentitySource& source) {
  AzureAssignedIdentity mine;
  mine.name = "web-apps-id";
  mine.pod = "web";
  mine.pod_namespace = "apps";
  AzureAssignedIdentity theirs = mine;
  theirs.pod = "other";
  source.assigned = {mine, theirs};
  source.bindings = {{"apps", "bind-1", "id", "demo"},
                     {"apps", "bind-2", "id", "demo"},  // same identity twice
                     {"team", "bind-3", "team-id", "demo"},
                     {"apps", "bind-4", "unused", "other-selector"},
                     {"apps", "bind-5", "missing", "demo"}};
  source.identities = {makeIdentity("apps", "id"), makeIdentity("team", "team-id"),
                       makeIdentity("apps", "unused"), makeIdentity("apps", "team-id")};
  source.exception_list = {{"apps", "e1", {{"app", "mic"}}}, {"kube-system", "e2", {}}};
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
  ListIdentitySource source;
  populate(source);
  const auto input = gatherInput(source, webPod(), Mode::Standard);
  EXPECT_EQ(input.pod, webPod());
  ASSERT_EQ(input.assigned.size(), 1U);
  EXPECT_EQ(input.assigned[0].pod, "web");
  EXPECT_EQ(names(input.bindings_selecting_pod),
            (std::vector<std::string>{"apps/bind-1", "apps/bind-2", "team/bind-3", "apps/bind-5"}));
  // Each binding's identity in the binding's namespace, once; missing ones are simply absent.
  EXPECT_EQ(names(input.bound_identities), (std::vector<std::string>{"apps/id", "team/team-id"}));
  EXPECT_EQ(source.identity_queries, 3);
  ASSERT_EQ(input.exceptions.size(), 1U);
  EXPECT_EQ(input.exceptions[0].name, "e1");
}

TEST(GatherInputTest, ManagedModeSkipsAssignmentsAndOtherNamespaces) {
  ListIdentitySource source;
  populate(source);
  const auto input = gatherInput(source, webPod(), Mode::Managed);
  EXPECT_EQ(source.assigned_queries, 0);
  EXPECT_TRUE(input.assigned.empty());
  EXPECT_EQ(names(input.bindings_selecting_pod),
            (std::vector<std::string>{"apps/bind-1", "apps/bind-2", "apps/bind-5"}));
  EXPECT_EQ(names(input.bound_identities), (std::vector<std::string>{"apps/id"}));
}

TEST(GatherInputTest, UnlabelledPodLooksUpBindingsWithEmptySelector) {
  ListIdentitySource source;
  populate(source);
  source.bindings.push_back({"apps", "catch-all", "unused", ""});
  PodInfo pod = webPod();
  pod.labels.clear();
  const auto input = gatherInput(source, pod, Mode::Managed);
  EXPECT_EQ(names(input.bindings_selecting_pod), (std::vector<std::string>{"apps/catch-all"}));
  EXPECT_EQ(names(input.bound_identities), (std::vector<std::string>{"apps/unused"}));
}

TEST(GatherInputTest, GatheredInputResolves) {
  ListIdentitySource source;
  populate(source);
  source.assigned.clear();
  const auto input = gatherInput(source, webPod(), Mode::Managed);
  const auto d = resolve(input, {}, ResolverOptions{Mode::Managed, true, true});
  ASSERT_EQ(d.kind, DecisionKind::Grant) << d.reason;
  EXPECT_EQ(d.identity.name, "id");
}

}  // namespace
}  // namespace nmi::identity
