#pragma once

#include <optional>
#include <string_view>
#include <vector>

#include "identity/types.h"
#include "kube/store.h"

namespace nmi::kube {

// The aadpodidentity.k8s.io/v1 caches. Each holds decoded structs, indexed for the resolver's
// queries (O(1) plus the answer's size). Thread-safe.

// AzureAssignedIdentities, by the pod they assign to (spec.podNamespace/spec.pod).
class AssignedIdentityCache final : public KindStore<identity::AzureAssignedIdentity> {
 public:
  AssignedIdentityCache();
  std::vector<identity::AzureAssignedIdentity> byPod(std::string_view pod_ns,
                                                     std::string_view pod_name) const;
};

// AzureIdentityBindings, by spec.selector.
class BindingCache final : public KindStore<identity::AzureIdentityBinding> {
 public:
  BindingCache();
  std::vector<identity::AzureIdentityBinding> bySelector(std::string_view selector) const;
};

// AzureIdentities, by namespace/name.
class AzureIdentityCache final : public KindStore<identity::AzureIdentity> {
 public:
  AzureIdentityCache();
  std::optional<identity::AzureIdentity> get(std::string_view ns, std::string_view name) const;
};

// AzurePodIdentityExceptions, by namespace.
class ExceptionCache final : public KindStore<identity::AzurePodIdentityException> {
 public:
  ExceptionCache();
  std::vector<identity::AzurePodIdentityException> byNamespace(std::string_view ns) const;
};

}  // namespace nmi::kube
