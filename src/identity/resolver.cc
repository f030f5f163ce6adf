#include "identity/resolver.h"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>
#include <utility>

#include "common/identifier.h"
#include "common/text.h"
#include "identity/redact.h"

namespace nmi::identity {

namespace {

std::string podKey(const PodInfo& pod) {
  return pod.ns + "/" + pod.name;
}

// "client_id 1111##### REDACTED #####1111", "resource_id /subscriptions/...", ...
std::string describeRequest(const IdentityRequest& request) {
  std::string out;
  const auto add = [&out](std::string_view part) {
    if (!out.empty()) {
      out += ", ";
    }
    out += part;
  };
  if (!request.client_id.empty()) {
    add("client_id " + redactClientId(request.client_id));
  }
  if (!request.resource_id.empty()) {
    add("resource_id " + request.resource_id);
  }
  if (!request.object_id.empty()) {
    add("object_id " + redactClientId(request.object_id));
  }
  return out.empty() ? std::string("no identity requested") : out;
}

std::string identityKey(const AzureIdentity& id) {
  return id.ns + "/" + id.name;
}

Decision grant(const AzureIdentity& id, std::string reason) {
  Decision d;
  d.kind = DecisionKind::Grant;
  d.identity = id;
  d.reason = std::move(reason);
  return d;
}

Decision wait(WaitReason why, std::string reason) {
  Decision d;
  d.kind = DecisionKind::Wait;
  d.wait_reason = why;
  d.reason = std::move(reason);
  return d;
}

Decision notFound(std::string reason) {
  Decision d;
  d.kind = DecisionKind::NotFound;
  d.reason = std::move(reason);
  return d;
}

Decision invalid(std::string reason) {
  Decision d;
  d.kind = DecisionKind::InvalidRequest;
  d.reason = std::move(reason);
  return d;
}

// The original's text for a failed selection, so that logs read the same.
std::string noIdentityFound(const IdentityRequest& request) {
  return "no azure identity found for request clientID " + redactClientId(request.client_id);
}

bool hasRequest(const IdentityRequest& request) {
  return !request.client_id.empty() || !request.resource_id.empty();
}

// The request names this identity: its client id or its resource id, in any spelling (IMDS
// compares GUIDs and resource ids without regard to case, and so does every check here).
bool requested(const IdentityRequest& request, const AzureIdentity& id) {
  return (!request.client_id.empty() && sameIdentifier(request.client_id, id.client_id)) ||
         (!request.resource_id.empty() && sameIdentifier(request.resource_id, id.resource_id));
}

// The first exception (by name) of the pod's namespace with a podLabels entry the pod carries
// with an equal value (ignoring case; the key is exact). Null when none.
const AzurePodIdentityException* matchingException(const ResolveInput& input) {
  const AzurePodIdentityException* match = nullptr;
  for (const auto& exception : input.exceptions) {
    if (exception.ns != input.pod.ns) {
      continue;
    }
    const bool matches = std::any_of(
        exception.pod_labels.begin(), exception.pod_labels.end(), [&](const auto& entry) {
          const auto it = input.pod.labels.find(entry.first);
          return it != input.pod.labels.end() && equalsIgnoreCase(it->second, entry.second);
        });
    if (matches && (match == nullptr || exception.name < match->name)) {
      match = &exception;
    }
  }
  return match;
}

// An identity namespaced (by the flag or its annotation) may only serve pods of its namespace.
bool namespaceAllows(const AzureIdentity& id, const PodInfo& pod, const ResolverOptions& options) {
  return !(options.force_namespaced || id.namespaced) || id.ns == pod.ns;
}

const AzureIdentity* findIdentity(const std::vector<AzureIdentity>& ids, std::string_view ns,
                                  std::string_view name) {
  for (const auto& id : ids) {
    if (id.ns == ns && id.name == name) {
      return &id;
    }
  }
  return nullptr;
}

// Would MIC create an assignment of a requested identity for this pod? As MIC does: the pod has a
// non-empty aadpodidbinding value, a binding with that selector names an existing identity, and
// when namespaced (flag or annotation) identity, binding and pod share a namespace.
bool assignmentPending(const ResolveInput& input, const IdentityRequest& request,
                       const ResolverOptions& options) {
  const std::string selector = bindingSelector(input.pod);
  if (selector.empty()) {
    return false;  // MIC ignores pods without a binding label value
  }
  return std::any_of(input.bindings_selecting_pod.begin(), input.bindings_selecting_pod.end(),
                     [&](const AzureIdentityBinding& binding) {
                       if (binding.selector != selector) {
                         return false;
                       }
                       const AzureIdentity* id =
                           findIdentity(input.bound_identities, binding.ns, binding.azure_identity);
                       if (id == nullptr) {
                         return false;
                       }
                       if ((options.force_namespaced || id->namespaced) &&
                           !(id->ns == binding.ns && binding.ns == input.pod.ns)) {
                         return false;
                       }
                       return !hasRequest(request) || requested(request, *id);
                     });
}

Decision resolveStandard(const ResolveInput& input, const IdentityRequest& request,
                         const ResolverOptions& options) {
  const PodInfo& pod = input.pod;
  std::vector<const AzureAssignedIdentity*> legacy;
  std::vector<const AzureAssignedIdentity*> created;
  std::vector<const AzureAssignedIdentity*> assigned;
  for (const auto& a : input.assigned) {
    if (a.pod != pod.name || a.pod_namespace != pod.ns) {
      continue;
    }
    switch (a.state) {
      case AssignedState::Legacy:
        legacy.push_back(&a);
        break;
      case AssignedState::Created:
        created.push_back(&a);
        break;
      case AssignedState::Assigned:
        assigned.push_back(&a);
        break;
      case AssignedState::Unassigned:
      case AssignedState::Other:
        break;
    }
  }

  const bool any_request = hasRequest(request);
  const auto names = [&request](const AzureAssignedIdentity* a) {
    return requested(request, a->identity);
  };
  std::vector<const AzureAssignedIdentity*>* group = nullptr;
  if (!any_request) {
    if (!legacy.empty()) {
      group = &legacy;
    } else if (!assigned.empty()) {
      group = &assigned;
    }
  } else if (std::any_of(legacy.begin(), legacy.end(), names)) {
    group = &legacy;
  } else if (std::any_of(assigned.begin(), assigned.end(), names)) {
    group = &assigned;
  }

  if (group != nullptr) {
    std::vector<const AzureAssignedIdentity*> candidates;
    for (const auto* a : *group) {
      if (namespaceAllows(a->identity, pod, options)) {
        candidates.push_back(a);
      }
    }
    std::sort(candidates.begin(), candidates.end(), [](const auto* x, const auto* y) {
      return std::tie(x->identity.ns, x->identity.name, x->name) <
             std::tie(y->identity.ns, y->identity.name, y->name);
    });
    const char* state = group == &legacy ? "legacy (no status)" : "Assigned";
    if (candidates.empty()) {
      return notFound(noIdentityFound(request) + ": every identity assigned to pod " + podKey(pod) +
                      " is namespaced in another namespace");
    }
    if (!any_request) {
      return grant(candidates.front()->identity, "no identity requested; pod " + podKey(pod) +
                                                     " matched " + state + " identity " +
                                                     identityKey(candidates.front()->identity));
    }
    for (const auto* a : candidates) {
      if (requested(request, a->identity)) {
        return grant(a->identity, describeRequest(request) + "; pod " + podKey(pod) + " matched " +
                                      state + " identity " + identityKey(a->identity));
      }
    }
    return notFound(noIdentityFound(request) + " (" + describeRequest(request) +
                    " matches only identities namespaced in another namespace)");
  }

  const bool created_pending =
      any_request ? std::any_of(created.begin(), created.end(), names) : !created.empty();
  if (created_pending) {
    return wait(WaitReason::Created, describeRequest(request) + "; identity for pod " +
                                         podKey(pod) + " is in Created state, waiting for MIC");
  }
  if (assignmentPending(input, request, options)) {
    return wait(WaitReason::BindingPending, describeRequest(request) + "; a binding selects pod " +
                                                podKey(pod) +
                                                " but MIC has not assigned its identity yet");
  }
  return notFound(noIdentityFound(request) + " (" + describeRequest(request) +
                  "; no AzureAssignedIdentity for pod " + podKey(pod) +
                  " and no binding that would assign one)");
}

Decision resolveManaged(const ResolveInput& input, const IdentityRequest& request) {
  const PodInfo& pod = input.pod;
  const std::string selector = bindingSelector(pod);
  std::set<std::string, std::less<>> names;  // identities named by the pod's bindings
  for (const auto& binding : input.bindings_selecting_pod) {
    if (binding.ns == pod.ns && binding.selector == selector) {
      names.insert(binding.azure_identity);
    }
  }
  std::map<std::string, const AzureIdentity*, std::less<>> identities;  // by name
  for (const auto& id : input.bound_identities) {
    if (id.ns == pod.ns && names.contains(id.name)) {
      identities.emplace(id.name, &id);
    }
  }
  const bool any_request = hasRequest(request);
  for (const auto& [name, id] : identities) {
    if (!any_request) {
      return grant(*id, "no identity requested; pod " + podKey(pod) + " matched identity " +
                            identityKey(*id));
    }
    if (requested(request, *id)) {
      return grant(*id, describeRequest(request) + "; pod " + podKey(pod) + " matched identity " +
                            identityKey(*id));
    }
  }
  for (const auto& name : names) {
    if (!identities.contains(name)) {
      return wait(WaitReason::BindingPending,
                  describeRequest(request) + "; a binding selects pod " + podKey(pod) +
                      " but its AzureIdentity " + pod.ns + "/" + name + " does not exist yet");
    }
  }
  return notFound(noIdentityFound(request) + " (" + describeRequest(request) + "; pod " +
                  podKey(pod) + ")");
}

}  // namespace

std::string bindingSelector(const PodInfo& pod) {
  const auto it = pod.labels.find(std::string(kBindingLabel));
  return it == pod.labels.end() ? std::string() : it->second;
}

Decision resolve(const ResolveInput& input, const IdentityRequest& request,
                 const ResolverOptions& options) {
  const int selectors = static_cast<int>(!request.client_id.empty()) +
                        static_cast<int>(!request.resource_id.empty()) +
                        static_cast<int>(!request.object_id.empty());
  if (selectors > 1) {
    return invalid("only one of client_id, msi_res_id/mi_res_id and object_id may be given; got " +
                   describeRequest(request));
  }
  if (options.check_exceptions) {
    if (const auto* exception = matchingException(input)) {
      Decision d;
      d.kind = DecisionKind::Exception;
      d.forward = request;
      d.reason = "pod " + podKey(input.pod) + " matches AzurePodIdentityException " +
                 exception->ns + "/" + exception->name + "; forwarding " +
                 describeRequest(request) + " to IMDS";
      return d;
    }
  }
  if (!request.object_id.empty()) {
    return invalid(
        "object_id cannot select a pod identity (AzureIdentity has no object id); use client_id "
        "or msi_res_id");
  }
  return options.mode == Mode::Standard ? resolveStandard(input, request, options)
                                        : resolveManaged(input, request);
}

std::chrono::milliseconds waitBudget(WaitReason reason, const WaitBudgetConfig& config) {
  const auto created = static_cast<std::int64_t>(std::max(0, config.retry_attempts_for_created));
  const auto assigned = static_cast<std::int64_t>(std::max(0, config.retry_attempts_for_assigned));
  const auto interval = std::max(std::chrono::milliseconds::zero(), config.interval);
  switch (reason) {
    case WaitReason::Created:
      return interval * (created + assigned);
    case WaitReason::BindingPending:
      return interval * created;
  }
  return std::chrono::milliseconds::zero();
}

const char* decisionKindName(DecisionKind kind) {
  switch (kind) {
    case DecisionKind::Grant:
      return "Grant";
    case DecisionKind::Exception:
      return "Exception";
    case DecisionKind::Wait:
      return "Wait";
    case DecisionKind::NotFound:
      return "NotFound";
    case DecisionKind::InvalidRequest:
      return "InvalidRequest";
  }
  return "Unknown";
}

const char* waitReasonName(WaitReason reason) {
  switch (reason) {
    case WaitReason::Created:
      return "Created";
    case WaitReason::BindingPending:
      return "BindingPending";
  }
  return "Unknown";
}

}  // namespace nmi::identity
