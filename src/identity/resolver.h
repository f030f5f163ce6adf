#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "identity/options.h"
#include "identity/pod_match.h"  // matchPodByIp: which pod sent a request
#include "identity/types.h"

namespace nmi::identity {

// The pod label whose value selects AzureIdentityBindings (spec.selector).
inline constexpr std::string_view kBindingLabel = "aadpodidbinding";

// The pod's aadpodidbinding label value; "" when the pod has no such label (as in the original,
// "" then matches bindings whose selector is empty).
std::string bindingSelector(const PodInfo& pod);

// ---- Which identity a pod gets ----------------------------------------------------------------

// The identity selectors of a token request. At most one may be set; resource_id is msi_res_id,
// or mi_res_id when msi_res_id is empty (the handler fills it).
struct IdentityRequest {
  std::string client_id;
  std::string resource_id;
  std::string object_id;
  bool operator==(const IdentityRequest&) const = default;
};

// Everything a decision needs, gathered beforehand (gather.h) so that resolve() does no I/O.
struct ResolveInput {
  PodInfo pod;
  // AzureAssignedIdentities of this pod (standard mode). Entries whose spec.pod/podNamespace
  // name another pod are ignored.
  std::vector<AzureAssignedIdentity> assigned;
  // AzureIdentityBindings, in any namespace, whose selector equals bindingSelector(pod). Others
  // are ignored.
  std::vector<AzureIdentityBinding> bindings_selecting_pod;
  // The AzureIdentities those bindings name, each looked up in its binding's namespace.
  std::vector<AzureIdentity> bound_identities;
  // AzurePodIdentityExceptions of the pod's namespace (others are ignored).
  std::vector<AzurePodIdentityException> exceptions;
};

struct ResolverOptions {
  Mode mode = Mode::Standard;
  bool force_namespaced = false;
  // True for the pod token endpoint; false for /host/token, which never bypasses.
  bool check_exceptions = true;
};

enum class DecisionKind : std::uint8_t {
  Grant,           // get a token for `identity`
  Exception,       // excepted pod: forward `forward` to IMDS as is (empty = node default)
  Wait,            // not yet decidable; wait (up to waitBudget(wait_reason)) for a change
  NotFound,        // no identity for this pod and request
  InvalidRequest,  // the request's selectors cannot be honoured
};

enum class WaitReason : std::uint8_t {
  Created,         // MIC created the assignment and is assigning the identity to the node
  BindingPending,  // a binding selects the pod; its assignment or identity is yet to appear
};

struct Decision {
  DecisionKind kind = DecisionKind::NotFound;
  AzureIdentity identity;                        // Grant
  IdentityRequest forward;                       // Exception: the request's selector, unchanged
  WaitReason wait_reason = WaitReason::Created;  // Wait
  // One line for the log: why. No secrets; client ids redacted. NotFound after a selection
  // failure reads as the original: "no azure identity found for request clientID <redacted>".
  std::string reason;
};

// Decides which identity the pod gets for `request`:
//  1. more than one of client_id / resource_id / object_id → InvalidRequest;
//  2. check_exceptions and an exception in the pod's namespace matches the pod (a podLabels key
//     present on the pod with a case-insensitively equal value) → Exception;
//  3. object_id alone → InvalidRequest (an AzureIdentity has no object id to match);
//  4. standard mode: assignments are grouped by state (Unassigned and unknown states ignored).
//     Candidates: with no request the Legacy group, else the Assigned group; with a request the
//     Legacy group if one of its identities is requested, else the Assigned group if one of its
//     is. Candidates whose identity is namespaced (flag or annotation) and of another namespace
//     are dropped; the rest are ordered by identity namespace, identity name, assignment name.
//     Grant the first (no request) or the first requested; otherwise NotFound. No candidates:
//     Wait(Created) if a Created assignment is requested (any, with no request); else
//     Wait(BindingPending) if MIC would assign a requested identity (pod has a non-empty
//     aadpodidbinding value, a binding with that selector names an existing identity, namespace
//     rule as MIC applies it); else NotFound.
//  5. managed mode: bindings and identities of the pod's namespace only; identities named by
//     those bindings, by name: Grant the first (no request) or the first requested. Otherwise
//     Wait(BindingPending) if such a binding names an identity that does not exist (yet), else
//     NotFound.
// "Requested": the request's client_id equals the identity's clientID, or its resource id the
// identity's resourceID, compared as IMDS compares them: without regard to case
// (common/identifier.h). Pure; the same input always gives the same decision.
Decision resolve(const ResolveInput& input, const IdentityRequest& request,
                 const ResolverOptions& options);

// How long a request whose decision is Wait may keep waiting: Created → (created + assigned
// attempts) × interval, BindingPending → created attempts × interval (100 s and 80 s with the
// defaults, the original's worst cases). Negative settings count as 0.
std::chrono::milliseconds waitBudget(WaitReason reason, const WaitBudgetConfig& config);

const char* decisionKindName(DecisionKind kind);
const char* waitReasonName(WaitReason reason);

}  // namespace nmi::identity
