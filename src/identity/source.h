#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/change_notifier.h"
#include "common/result.h"
#include "common/task.h"
#include "identity/pod_match.h"
#include "identity/types.h"

namespace nmi::identity {

// Where pods and identities come from: a file (FileIdentitySource) or the Kubernetes API
// (kube::ApiIdentitySource). Queries return copies of small result sets and are thread-safe;
// changes() is notified after every change that could alter a decision, so waiting requests
// re-evaluate at once.
class IdentitySource {
 public:
  virtual ~IdentitySource() = default;

  // True once every cache has its initial data. Until then requests are answered 503.
  virtual bool hasSynced() const = 0;
  // Why the source is not ready (empty when it is), for /readyz.
  virtual std::string notReadyReason() const = 0;
  // How long since the source last confirmed its data is current (0 for a file); a gauge.
  virtual std::chrono::seconds staleness() const = 0;

  // Pods on this node that report `ip` (status.podIPs), any phase, hostNetwork pods excluded.
  virtual std::vector<PodInfo> podsByIp(std::string_view ip) const = 0;
  // podsByIp(ip), and which of those pods lost the address while being deleted (IpClaims), read
  // at one moment: what identity::matchPodByIp decides on.
  virtual IpClaims ipClaims(std::string_view ip) const = 0;
  virtual std::optional<PodInfo> podByName(std::string_view ns, std::string_view name) const = 0;

  // AzureAssignedIdentities whose spec.podNamespace/spec.pod are ns/name (standard mode).
  virtual std::vector<AzureAssignedIdentity> assignedIdentities(
      std::string_view pod_ns, std::string_view pod_name) const = 0;
  // AzureIdentityBindings whose spec.selector equals `selector`, in every namespace.
  virtual std::vector<AzureIdentityBinding> bindingsBySelector(std::string_view selector) const = 0;
  virtual std::optional<AzureIdentity> identity(std::string_view ns,
                                                std::string_view name) const = 0;
  virtual std::vector<AzurePodIdentityException> exceptions(std::string_view ns) const = 0;

  // Reads a Secret (service-principal credentials). Errors: NotFound, PermissionDenied,
  // Unavailable.
  virtual Task<Result<SecretData>> secret(const SecretRef& ref) = 0;

  virtual ChangeNotifier& changes() = 0;
};

using IdentitySourcePtr = std::unique_ptr<IdentitySource>;

}  // namespace nmi::identity
