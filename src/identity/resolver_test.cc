#include "identity/resolver.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace nmi::identity {
namespace {

using namespace std::chrono_literals;

constexpr const char* kClientA = "aaaaaaaa-1111-1111-1111-aaaaaaaaaaaa";
constexpr const char* kClientAUpper = "AAAAAAAA-1111-1111-1111-AAAAAAAAAAAA";
constexpr const char* kClientB = "bbbbbbbb-2222-2222-2222-bbbbbbbbbbbb";
constexpr const char* kResourceA = "/subscriptions/s/resourceGroups/rg/providers/id/a";
constexpr const char* kResourceAUpper = "/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/ID/A";
constexpr const char* kClientAMixed = "aAaAaAaA-1111-1111-1111-AaAaAaAaAaAa";
constexpr const char* kResourceAMixed = "/Subscriptions/S/ResourceGroups/rg/Providers/Id/a";
constexpr const char* kClientBUpper = "BBBBBBBB-2222-2222-2222-BBBBBBBBBBBB";

PodInfo makePod(std::string ns = "apps", std::string name = "web",
                const std::string& selector = "demo") {
  PodInfo pod;
  pod.ns = std::move(ns);
  pod.name = std::move(name);
  pod.phase = "Running";
  pod.node_name = "node-1";
  pod.ips = {"10.0.0.1"};
  if (!selector.empty()) {
    pod.labels["aadpodidbinding"] = selector;
  }
  return pod;
}

AzureIdentity makeIdentity(std::string ns, std::string name, std::string client_id,
                           std::string resource_id = "", bool namespaced = false) {
  AzureIdentity id;
  id.ns = std::move(ns);
  id.name = std::move(name);
  id.client_id = std::move(client_id);
  id.resource_id = std::move(resource_id);
  id.namespaced = namespaced;
  return id;
}

AzureIdentity identityA() {
  return makeIdentity("apps", "id-a", kClientA, kResourceA);
}
AzureIdentity identityB() {
  return makeIdentity("apps", "id-b", kClientB);
}

AzureAssignedIdentity makeAssigned(const AzureIdentity& id, AssignedState state,
                                   const PodInfo& pod = makePod()) {
  AzureAssignedIdentity a;
  a.ns = "default";
  a.name = pod.name + "-" + pod.ns + "-" + id.name;
  a.identity = id;
  a.pod = pod.name;
  a.pod_namespace = pod.ns;
  a.node_name = pod.node_name;
  a.state = state;
  return a;
}

AzureIdentityBinding makeBinding(std::string ns, std::string name, std::string identity,
                                 std::string selector = "demo") {
  return AzureIdentityBinding{std::move(ns), std::move(name), std::move(identity),
                              std::move(selector)};
}

IdentityRequest byClientId(std::string id) {
  return IdentityRequest{std::move(id), "", ""};
}
IdentityRequest byResourceId(std::string id) {
  return IdentityRequest{"", std::move(id), ""};
}
IdentityRequest byObjectId(std::string id) {
  return IdentityRequest{"", "", std::move(id)};
}

ResolverOptions standard() {
  return ResolverOptions{Mode::Standard, false, true};
}
ResolverOptions managed() {
  return ResolverOptions{Mode::Managed, true, true};
}

ResolveInput inputWith(std::vector<AzureAssignedIdentity> assigned) {
  ResolveInput input;
  input.pod = makePod();
  input.assigned = std::move(assigned);
  return input;
}

// ---- InvalidRequest --------------------------------------------------------------------------

TEST(ResolveTest, MoreThanOneSelectorIsInvalid) {
  const std::vector<IdentityRequest> requests = {
      {kClientA, kResourceA, ""},
      {kClientA, "", "object"},
      {"", kResourceA, "object"},
      {kClientA, kResourceA, "object"},
  };
  const auto input = inputWith({makeAssigned(identityA(), AssignedState::Assigned)});
  for (const auto& options : {standard(), managed()}) {
    for (const auto& request : requests) {
      const auto d = resolve(input, request, options);
      EXPECT_EQ(d.kind, DecisionKind::InvalidRequest) << d.reason;
      EXPECT_NE(d.reason.find("only one of"), std::string::npos) << d.reason;
    }
  }
}

TEST(ResolveTest, ObjectIdAloneIsInvalid) {
  const auto input = inputWith({makeAssigned(identityA(), AssignedState::Assigned)});
  for (const auto& options : {standard(), managed()}) {
    const auto d = resolve(input, byObjectId("00000000-0000-0000-0000-000000000001"), options);
    EXPECT_EQ(d.kind, DecisionKind::InvalidRequest);
    EXPECT_NE(d.reason.find("object_id"), std::string::npos) << d.reason;
  }
}

// ---- Exceptions ------------------------------------------------------------------------------

AzurePodIdentityException makeException(std::string ns, std::map<std::string, std::string> labels) {
  return AzurePodIdentityException{std::move(ns), "mic-exception", std::move(labels)};
}

ResolveInput exceptedInput(std::map<std::string, std::string> pod_labels,
                           std::vector<AzurePodIdentityException> exceptions) {
  ResolveInput input = inputWith({makeAssigned(identityA(), AssignedState::Assigned)});
  input.pod.labels = std::move(pod_labels);
  input.exceptions = std::move(exceptions);
  return input;
}

TEST(ResolveTest, ExceptedPodForwardsTheRequestUnchanged) {
  const auto input = exceptedInput({{"app", "mic"}}, {makeException("apps", {{"app", "mic"}})});
  for (const auto& request : {IdentityRequest{}, byClientId(kClientB), byClientId(kClientBUpper),
                              byResourceId(kResourceAMixed), byObjectId("object")}) {
    const auto d = resolve(input, request, standard());
    ASSERT_EQ(d.kind, DecisionKind::Exception) << d.reason;
    EXPECT_EQ(d.forward, request);
  }
}

TEST(ResolveTest, ExceptionLabelValueIgnoresCaseButKeyDoesNot) {
  const auto exception = makeException("apps", {{"app", "mic"}});
  EXPECT_EQ(resolve(exceptedInput({{"app", "MIC"}}, {exception}), {}, standard()).kind,
            DecisionKind::Exception);
  EXPECT_EQ(resolve(exceptedInput({{"App", "mic"}}, {exception}), {}, standard()).kind,
            DecisionKind::Grant);
  EXPECT_EQ(resolve(exceptedInput({{"app", "mic2"}}, {exception}), {}, standard()).kind,
            DecisionKind::Grant);
}

TEST(ResolveTest, AnySingleExceptionLabelIsEnough) {
  const auto exception = makeException("apps", {{"app", "mic"}, {"component", "mic"}});
  EXPECT_EQ(resolve(exceptedInput({{"component", "mic"}}, {exception}), {}, standard()).kind,
            DecisionKind::Exception);
}

TEST(ResolveTest, EmptyExceptionMatchesNothing) {
  EXPECT_EQ(
      resolve(exceptedInput({{"app", "mic"}}, {makeException("apps", {})}), {}, standard()).kind,
      DecisionKind::Grant);
}

TEST(ResolveTest, ExceptionInAnotherNamespaceIsIgnored) {
  const auto d =
      resolve(exceptedInput({{"app", "mic"}}, {makeException("kube-system", {{"app", "mic"}})}), {},
              standard());
  EXPECT_EQ(d.kind, DecisionKind::Grant);
}

TEST(ResolveTest, HostEndpointIgnoresExceptions) {
  auto options = standard();
  options.check_exceptions = false;
  const auto input = exceptedInput({{"app", "mic"}}, {makeException("apps", {{"app", "mic"}})});
  EXPECT_EQ(resolve(input, {}, options).kind, DecisionKind::Grant);
  EXPECT_EQ(resolve(input, byObjectId("object"), options).kind, DecisionKind::InvalidRequest);
}

TEST(ResolveTest, SeveralSelectorsAreInvalidEvenForExceptedPods) {
  const auto input = exceptedInput({{"app", "mic"}}, {makeException("apps", {{"app", "mic"}})});
  EXPECT_EQ(resolve(input, {kClientA, kResourceA, ""}, standard()).kind,
            DecisionKind::InvalidRequest);
}

TEST(ResolveTest, ExceptionAppliesInManagedMode) {
  const auto input = exceptedInput({{"app", "mic"}}, {makeException("apps", {{"app", "mic"}})});
  EXPECT_EQ(resolve(input, byClientId(kClientB), managed()).kind, DecisionKind::Exception);
}

// ---- Standard mode: states and requests ------------------------------------------------------

struct StandardCase {  // NOLINT(clang-analyzer-optin.performance.Padding): a test table
  const char* name;
  std::vector<AzureAssignedIdentity> assigned;
  IdentityRequest request;
  DecisionKind kind;
  const char* granted = "";  // identity name, for Grant
  WaitReason wait = WaitReason::Created;
};

TEST(ResolveStandardTest, StateAndRequestCombinations) {
  using S = AssignedState;
  const auto a = identityA();
  const auto b = identityB();
  const std::vector<StandardCase> cases = {
      {"no request, nothing assigned", {}, {}, DecisionKind::NotFound},
      {"no request, legacy", {makeAssigned(a, S::Legacy)}, {}, DecisionKind::Grant, "id-a"},
      {"no request, assigned", {makeAssigned(a, S::Assigned)}, {}, DecisionKind::Grant, "id-a"},
      {"no request, legacy preferred over assigned",
       {makeAssigned(a, S::Assigned), makeAssigned(b, S::Legacy)},
       {},
       DecisionKind::Grant,
       "id-b"},
      {"no request, only created",
       {makeAssigned(a, S::Created)},
       {},
       DecisionKind::Wait,
       "",
       WaitReason::Created},
      {"no request, assigned beats created",
       {makeAssigned(a, S::Created), makeAssigned(b, S::Assigned)},
       {},
       DecisionKind::Grant,
       "id-b"},
      {"no request, unassigned ignored",
       {makeAssigned(a, S::Unassigned)},
       {},
       DecisionKind::NotFound},
      {"no request, unknown status ignored",
       {makeAssigned(a, S::Other)},
       {},
       DecisionKind::NotFound},
      {"client id, assigned exact",
       {makeAssigned(a, S::Assigned), makeAssigned(b, S::Assigned)},
       byClientId(kClientB),
       DecisionKind::Grant,
       "id-b"},
      {"client id, legacy exact",
       {makeAssigned(a, S::Legacy)},
       byClientId(kClientA),
       DecisionKind::Grant,
       "id-a"},
      {"client id, assigned, upper case",
       {makeAssigned(a, S::Assigned)},
       byClientId(kClientAUpper),
       DecisionKind::Grant,
       "id-a"},
      {"client id, assigned, mixed case",
       {makeAssigned(a, S::Assigned), makeAssigned(b, S::Assigned)},
       byClientId(kClientAMixed),
       DecisionKind::Grant,
       "id-a"},
      {"client id, legacy other case",
       {makeAssigned(a, S::Legacy)},
       byClientId(kClientAUpper),
       DecisionKind::Grant,
       "id-a"},
      {"client id, created",
       {makeAssigned(a, S::Created)},
       byClientId(kClientA),
       DecisionKind::Wait,
       "",
       WaitReason::Created},
      {"client id, created other case still waits",
       {makeAssigned(a, S::Created)},
       byClientId(kClientAUpper),
       DecisionKind::Wait,
       "",
       WaitReason::Created},
      {"client id, created for another identity",
       {makeAssigned(b, S::Created)},
       byClientId(kClientA),
       DecisionKind::NotFound},
      {"client id, not assigned to pod",
       {makeAssigned(b, S::Assigned)},
       byClientId(kClientA),
       DecisionKind::NotFound},
      {"client id, only unassigned",
       {makeAssigned(a, S::Unassigned)},
       byClientId(kClientA),
       DecisionKind::NotFound},
      {"client id, assigned beats created of the same identity",
       {makeAssigned(a, S::Created), makeAssigned(a, S::Assigned)},
       byClientId(kClientA),
       DecisionKind::Grant,
       "id-a"},
      {"client id, legacy of other identity does not hide assigned one",
       {makeAssigned(b, S::Legacy), makeAssigned(a, S::Assigned)},
       byClientId(kClientA),
       DecisionKind::Grant,
       "id-a"},
      {"client id, legacy group wins over assigned (original), whatever the spelling",
       {makeAssigned(a, S::Legacy),
        makeAssigned(makeIdentity("apps", "id-a2", kClientAUpper), S::Assigned)},
       byClientId(kClientAUpper),
       DecisionKind::Grant,
       "id-a"},
      {"client id, another pod's identity in any spelling",
       {makeAssigned(a, S::Assigned)},
       byClientId(kClientBUpper),
       DecisionKind::NotFound},
      {"resource id, assigned exact",
       {makeAssigned(b, S::Assigned), makeAssigned(a, S::Assigned)},
       byResourceId(kResourceA),
       DecisionKind::Grant,
       "id-a"},
      {"resource id, upper case",
       {makeAssigned(a, S::Assigned)},
       byResourceId(kResourceAUpper),
       DecisionKind::Grant,
       "id-a"},
      {"resource id, mixed case",
       {makeAssigned(b, S::Assigned), makeAssigned(a, S::Assigned)},
       byResourceId(kResourceAMixed),
       DecisionKind::Grant,
       "id-a"},
      {"resource id, created, other case",
       {makeAssigned(a, S::Created)},
       byResourceId(kResourceAUpper),
       DecisionKind::Wait,
       "",
       WaitReason::Created},
      {"resource id, created",
       {makeAssigned(a, S::Created)},
       byResourceId(kResourceA),
       DecisionKind::Wait,
       "",
       WaitReason::Created},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const auto d = resolve(inputWith(c.assigned), c.request, standard());
    ASSERT_EQ(d.kind, c.kind) << decisionKindName(d.kind) << ": " << d.reason;
    if (c.kind == DecisionKind::Grant) {
      EXPECT_EQ(d.identity.name, c.granted);
    }
    if (c.kind == DecisionKind::Wait) {
      EXPECT_EQ(d.wait_reason, c.wait);
    }
    EXPECT_FALSE(d.reason.empty());
  }
}

TEST(ResolveStandardTest, NotFoundReadsLikeTheOriginal) {
  const auto d = resolve(inputWith({makeAssigned(identityB(), AssignedState::Assigned)}),
                         byClientId(kClientA), standard());
  ASSERT_EQ(d.kind, DecisionKind::NotFound);
  EXPECT_EQ(d.reason.rfind("no azure identity found for request clientID aaaa##### REDACTED "
                           "#####aaaa",
                           0),
            0U)
      << d.reason;
}

TEST(ResolveStandardTest, ReasonsNeverCarryTheFullClientId) {
  const std::vector<IdentityRequest> requests = {byClientId(kClientA), byClientId(kClientB)};
  const auto input = inputWith({makeAssigned(identityA(), AssignedState::Assigned)});
  for (const auto& request : requests) {
    const auto d = resolve(input, request, standard());
    EXPECT_EQ(d.reason.find(request.client_id), std::string::npos) << d.reason;
  }
}

TEST(ResolveStandardTest, IgnoresAssignmentsOfOtherPods) {
  auto other = makeAssigned(identityA(), AssignedState::Assigned, makePod("apps", "other"));
  EXPECT_EQ(resolve(inputWith({other}), {}, standard()).kind, DecisionKind::NotFound);
}

TEST(ResolveStandardTest, ChoosesDeterministicallyByNamespaceThenNameThenAssignmentName) {
  using S = AssignedState;
  const auto zeta = makeIdentity("apps", "zeta", "zeta-client-id-0000");
  const auto alpha = makeIdentity("apps", "alpha", "alpha-client-id-0000");
  const auto other_ns = makeIdentity("aaa", "zzz", "other-client-id-0000");
  EXPECT_EQ(resolve(inputWith({makeAssigned(zeta, S::Assigned), makeAssigned(alpha, S::Assigned)}),
                    {}, standard())
                .identity.name,
            "alpha");
  EXPECT_EQ(resolve(inputWith({makeAssigned(alpha, S::Assigned), makeAssigned(zeta, S::Assigned)}),
                    {}, standard())
                .identity.name,
            "alpha");
  EXPECT_EQ(
      resolve(inputWith({makeAssigned(alpha, S::Assigned), makeAssigned(other_ns, S::Assigned)}),
              {}, standard())
          .identity.ns,
      "aaa");

  // The same identity through two assignments (two bindings): the assignment name decides.
  auto first = makeAssigned(alpha, S::Assigned);
  first.name = "a-assignment";
  first.identity.client_id = "first-client-id-000";
  auto second = makeAssigned(alpha, S::Assigned);
  second.name = "b-assignment";
  second.identity.client_id = "second-client-id-00";
  EXPECT_EQ(resolve(inputWith({second, first}), {}, standard()).identity.client_id,
            "first-client-id-000");
}

// ---- Standard mode: namespaced identities ----------------------------------------------------

TEST(ResolveStandardTest, ForceNamespacedDropsIdentitiesOfOtherNamespaces) {
  auto options = standard();
  options.force_namespaced = true;
  const auto elsewhere = makeIdentity("other", "id-x", kClientA);
  const auto here = makeIdentity("apps", "id-y", kClientB);
  // Only an identity of another namespace: NotFound (the original panicked into a 500).
  const auto alone =
      resolve(inputWith({makeAssigned(elsewhere, AssignedState::Assigned)}), {}, options);
  EXPECT_EQ(alone.kind, DecisionKind::NotFound);
  EXPECT_NE(alone.reason.find("namespace"), std::string::npos) << alone.reason;
  // Without the flag the same identity is granted.
  EXPECT_EQ(
      resolve(inputWith({makeAssigned(elsewhere, AssignedState::Assigned)}), {}, standard()).kind,
      DecisionKind::Grant);
  // With one in the pod's namespace too, that one is granted though the other sorts first.
  auto early = makeIdentity("aaa", "id-x", kClientA);
  const auto d = resolve(inputWith({makeAssigned(early, AssignedState::Assigned),
                                    makeAssigned(here, AssignedState::Assigned)}),
                         {}, options);
  ASSERT_EQ(d.kind, DecisionKind::Grant);
  EXPECT_EQ(d.identity.name, "id-y");
  // Asking for the dropped one by client id: NotFound.
  EXPECT_EQ(resolve(inputWith({makeAssigned(elsewhere, AssignedState::Assigned),
                               makeAssigned(here, AssignedState::Assigned)}),
                    byClientId(kClientA), options)
                .kind,
            DecisionKind::NotFound);
}

TEST(ResolveStandardTest, NoSpellingReachesAnIdentityOfAnotherNamespace) {
  auto options = standard();
  options.force_namespaced = true;
  const auto elsewhere = makeIdentity("other", "id-x", kClientA, kResourceA);
  const auto here = makeIdentity("apps", "id-y", kClientB);
  const auto input = inputWith({makeAssigned(elsewhere, AssignedState::Assigned),
                                makeAssigned(here, AssignedState::Assigned)});
  for (const auto& request : {byClientId(kClientA), byClientId(kClientAUpper),
                              byClientId(kClientAMixed), byResourceId(kResourceAMixed)}) {
    SCOPED_TRACE(request.client_id + request.resource_id);
    EXPECT_EQ(resolve(input, request, options).kind, DecisionKind::NotFound);
  }
  EXPECT_EQ(resolve(input, byClientId(kClientBUpper), options).identity.name, "id-y");
}

TEST(ResolveStandardTest, HostTokenMatchesInAnySpellingToo) {
  auto options = standard();
  options.check_exceptions = false;  // /host/token
  const auto input = inputWith({makeAssigned(identityA(), AssignedState::Assigned)});
  EXPECT_EQ(resolve(input, byClientId(kClientAMixed), options).identity.name, "id-a");
  EXPECT_EQ(resolve(input, byClientId(kClientBUpper), options).kind, DecisionKind::NotFound);
}

TEST(ResolveStandardTest, NamespacedAnnotationActsWithoutTheFlag) {
  const auto elsewhere = makeIdentity("other", "id-x", kClientA, "", /*namespaced=*/true);
  EXPECT_EQ(
      resolve(inputWith({makeAssigned(elsewhere, AssignedState::Assigned)}), {}, standard()).kind,
      DecisionKind::NotFound);
  const auto here = makeIdentity("apps", "id-x", kClientA, "", /*namespaced=*/true);
  EXPECT_EQ(resolve(inputWith({makeAssigned(here, AssignedState::Assigned)}), {}, standard()).kind,
            DecisionKind::Grant);
}

// ---- Standard mode: nothing assigned yet -----------------------------------------------------

ResolveInput withBinding(AzureIdentityBinding binding, std::vector<AzureIdentity> identities) {
  ResolveInput input = inputWith({});
  input.bindings_selecting_pod = {std::move(binding)};
  input.bound_identities = std::move(identities);
  return input;
}

TEST(ResolveStandardTest, WaitsForMicWhenABindingSelectsThePod) {
  const auto input = withBinding(makeBinding("apps", "bind-a", "id-a"), {identityA()});
  const auto d = resolve(input, {}, standard());
  ASSERT_EQ(d.kind, DecisionKind::Wait) << d.reason;
  EXPECT_EQ(d.wait_reason, WaitReason::BindingPending);
  EXPECT_EQ(resolve(input, byClientId(kClientA), standard()).wait_reason,
            WaitReason::BindingPending);
  EXPECT_EQ(resolve(input, byResourceId(kResourceA), standard()).kind, DecisionKind::Wait);
}

TEST(ResolveStandardTest, BindingWaitNeedsARequestedIdentity) {
  const auto input = withBinding(makeBinding("apps", "bind-a", "id-a"), {identityA()});
  EXPECT_EQ(resolve(input, byClientId(kClientB), standard()).kind, DecisionKind::NotFound);
  EXPECT_EQ(resolve(input, byClientId(kClientBUpper), standard()).kind, DecisionKind::NotFound);
  EXPECT_EQ(resolve(input, byClientId(kClientAUpper), standard()).kind, DecisionKind::Wait);
  EXPECT_EQ(resolve(input, byResourceId(kResourceAMixed), standard()).kind, DecisionKind::Wait);
}

TEST(ResolveStandardTest, BindingToMissingIdentityIsNotFound) {
  EXPECT_EQ(resolve(withBinding(makeBinding("apps", "bind-a", "id-a"), {}), {}, standard()).kind,
            DecisionKind::NotFound);
}

TEST(ResolveStandardTest, BindingOfAnotherSelectorIsIgnored) {
  const auto input = withBinding(makeBinding("apps", "bind-a", "id-a", "other"), {identityA()});
  EXPECT_EQ(resolve(input, {}, standard()).kind, DecisionKind::NotFound);
}

TEST(ResolveStandardTest, BindingWaitFollowsTheNamespaceRule) {
  auto options = standard();
  options.force_namespaced = true;
  // The binding in another namespace than the pod's: MIC would not assign it.
  const auto binding_elsewhere = withBinding(makeBinding("other", "bind-a", "id-a"),
                                             {makeIdentity("other", "id-a", kClientA)});
  EXPECT_EQ(resolve(binding_elsewhere, {}, options).kind, DecisionKind::NotFound);
  EXPECT_EQ(resolve(binding_elsewhere, {}, standard()).kind, DecisionKind::Wait);
  // A namespaced identity elsewhere, without the flag.
  const auto namespaced_elsewhere = withBinding(
      makeBinding("other", "bind-a", "id-a"), {makeIdentity("other", "id-a", kClientA, "", true)});
  EXPECT_EQ(resolve(namespaced_elsewhere, {}, standard()).kind, DecisionKind::NotFound);
  // Everything in the pod's namespace.
  EXPECT_EQ(
      resolve(withBinding(makeBinding("apps", "bind-a", "id-a"), {identityA()}), {}, options).kind,
      DecisionKind::Wait);
}

TEST(ResolveStandardTest, PodWithoutBindingLabelNeverWaits) {
  // MIC ignores pods without an aadpodidbinding value, so nothing will ever be assigned.
  auto input = withBinding(makeBinding("apps", "bind-a", "id-a", ""), {identityA()});
  input.pod.labels.clear();
  EXPECT_EQ(resolve(input, {}, standard()).kind, DecisionKind::NotFound);
}

TEST(ResolveStandardTest, CreatedWaitTakesPrecedenceOverBindingWait) {
  auto input = withBinding(makeBinding("apps", "bind-a", "id-a"), {identityA()});
  input.assigned = {makeAssigned(identityA(), AssignedState::Created)};
  const auto d = resolve(input, {}, standard());
  ASSERT_EQ(d.kind, DecisionKind::Wait);
  EXPECT_EQ(d.wait_reason, WaitReason::Created);
}

// ---- Managed mode ----------------------------------------------------------------------------

ResolveInput managedInput(std::vector<AzureIdentityBinding> bindings,
                          std::vector<AzureIdentity> identities) {
  ResolveInput input;
  input.pod = makePod();
  input.bindings_selecting_pod = std::move(bindings);
  input.bound_identities = std::move(identities);
  return input;
}

TEST(ResolveManagedTest, GrantsTheBoundIdentity) {
  const auto d =
      resolve(managedInput({makeBinding("apps", "bind-a", "id-a")}, {identityA()}), {}, managed());
  ASSERT_EQ(d.kind, DecisionKind::Grant) << d.reason;
  EXPECT_EQ(d.identity, identityA());
}

TEST(ResolveManagedTest, ChoosesFirstIdentityByName) {
  const auto input =
      managedInput({makeBinding("apps", "bind-b", "id-b"), makeBinding("apps", "bind-a", "id-a")},
                   {identityB(), identityA()});
  EXPECT_EQ(resolve(input, {}, managed()).identity.name, "id-a");
}

TEST(ResolveManagedTest, SelectsRequestedIdentityInAnySpelling) {
  const auto input =
      managedInput({makeBinding("apps", "bind-a", "id-a"), makeBinding("apps", "bind-b", "id-b")},
                   {identityA(), identityB()});
  EXPECT_EQ(resolve(input, byClientId(kClientB), managed()).identity.name, "id-b");
  EXPECT_EQ(resolve(input, byClientId(kClientBUpper), managed()).identity.name, "id-b");
  EXPECT_EQ(resolve(input, byResourceId(kResourceA), managed()).identity.name, "id-a");
  EXPECT_EQ(resolve(input, byClientId(kClientAUpper), managed()).identity.name, "id-a");
  EXPECT_EQ(resolve(input, byClientId(kClientAMixed), managed()).identity.name, "id-a");
  EXPECT_EQ(resolve(input, byResourceId(kResourceAUpper), managed()).identity.name, "id-a");
  EXPECT_EQ(resolve(input, byClientId("cccccccc-3333"), managed()).kind, DecisionKind::NotFound);
  EXPECT_EQ(resolve(input, byClientId("CCCCCCCC-3333"), managed()).kind, DecisionKind::NotFound);
}

TEST(ResolveManagedTest, AnotherPodsIdentityIsRefusedInAnySpelling) {
  // The pod is bound to id-a only; id-b exists in its namespace, bound to other pods.
  const auto input = managedInput({makeBinding("apps", "bind-a", "id-a")}, {identityA()});
  for (const auto* spelling : {kClientB, kClientBUpper, "bBbBbBbB-2222-2222-2222-BbBbBbBbBbBb"}) {
    SCOPED_TRACE(spelling);
    EXPECT_EQ(resolve(input, byClientId(spelling), managed()).kind, DecisionKind::NotFound);
  }
}

TEST(ResolveManagedTest, OnlyThePodsNamespaceCounts) {
  // A binding elsewhere names an identity elsewhere: neither counts.
  const auto elsewhere = managedInput({makeBinding("other", "bind-a", "id-a")},
                                      {makeIdentity("other", "id-a", kClientA)});
  EXPECT_EQ(resolve(elsewhere, {}, managed()).kind, DecisionKind::NotFound);
  // A binding here naming an identity that only exists elsewhere: it may yet be created here.
  const auto identity_elsewhere = managedInput({makeBinding("apps", "bind-a", "id-a")},
                                               {makeIdentity("other", "id-a", kClientA)});
  const auto d = resolve(identity_elsewhere, {}, managed());
  EXPECT_EQ(d.kind, DecisionKind::Wait);
  EXPECT_EQ(d.wait_reason, WaitReason::BindingPending);
}

TEST(ResolveManagedTest, WaitsForAnIdentityTheBindingNames) {
  const auto input = managedInput({makeBinding("apps", "bind-a", "id-a")}, {});
  const auto d = resolve(input, byClientId(kClientA), managed());
  ASSERT_EQ(d.kind, DecisionKind::Wait) << d.reason;
  EXPECT_EQ(d.wait_reason, WaitReason::BindingPending);
}

TEST(ResolveManagedTest, NoBindingIsNotFound) {
  EXPECT_EQ(resolve(managedInput({}, {}), {}, managed()).kind, DecisionKind::NotFound);
  // Assignments are a standard-mode matter.
  auto input = managedInput({}, {});
  input.assigned = {makeAssigned(identityA(), AssignedState::Assigned)};
  EXPECT_EQ(resolve(input, {}, managed()).kind, DecisionKind::NotFound);
}

TEST(ResolveManagedTest, UnlabelledPodMatchesBindingWithEmptySelector) {
  auto input = managedInput({makeBinding("apps", "bind-a", "id-a", "")}, {identityA()});
  input.pod.labels.clear();
  EXPECT_EQ(resolve(input, {}, managed()).kind, DecisionKind::Grant);
  input.bindings_selecting_pod = {makeBinding("apps", "bind-a", "id-a", "demo")};
  EXPECT_EQ(resolve(input, {}, managed()).kind, DecisionKind::NotFound);
}

// ---- waitBudget ------------------------------------------------------------------------------

TEST(WaitBudgetTest, DefaultsGiveTheOriginalsWorstCases) {
  const WaitBudgetConfig defaults;
  EXPECT_EQ(waitBudget(WaitReason::Created, defaults), 100s);
  EXPECT_EQ(waitBudget(WaitReason::BindingPending, defaults), 80s);
}

TEST(WaitBudgetTest, FollowsTheSettings) {
  const WaitBudgetConfig quick{1, 1, 1s};
  EXPECT_EQ(waitBudget(WaitReason::Created, quick), 2s);
  EXPECT_EQ(waitBudget(WaitReason::BindingPending, quick), 1s);
  const WaitBudgetConfig fine{3, 2, 250ms};
  EXPECT_EQ(waitBudget(WaitReason::Created, fine), 1250ms);
  EXPECT_EQ(waitBudget(WaitReason::BindingPending, fine), 750ms);
}

TEST(WaitBudgetTest, NegativeSettingsCountAsZero) {
  const WaitBudgetConfig negative{-1, -5, 5s};
  EXPECT_EQ(waitBudget(WaitReason::Created, negative), 0ms);
  EXPECT_EQ(waitBudget(WaitReason::BindingPending, WaitBudgetConfig{16, 4, -1s}), 0ms);
}

TEST(BindingSelectorTest, IsTheLabelValueOrEmpty) {
  EXPECT_EQ(bindingSelector(makePod("apps", "web", "demo")), "demo");
  EXPECT_EQ(bindingSelector(makePod("apps", "web", "")), "");
}

TEST(DecisionNamesTest, NameEveryKindAndReason) {
  EXPECT_STREQ(decisionKindName(DecisionKind::Grant), "Grant");
  EXPECT_STREQ(decisionKindName(DecisionKind::Exception), "Exception");
  EXPECT_STREQ(decisionKindName(DecisionKind::Wait), "Wait");
  EXPECT_STREQ(decisionKindName(DecisionKind::NotFound), "NotFound");
  EXPECT_STREQ(decisionKindName(DecisionKind::InvalidRequest), "InvalidRequest");
  EXPECT_STREQ(waitReasonName(WaitReason::Created), "Created");
  EXPECT_STREQ(waitReasonName(WaitReason::BindingPending), "BindingPending");
}

}  // namespace
}  // namespace nmi::identity
