#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"

namespace nmi::identity {

// The parts of a Pod nmi uses. Phase is kept as given ("Pending", "Running", ...).
struct OwnerReference {
  std::string kind;
  std::string name;
  std::string uid;
  bool controller = false;  // the managing controller (at most one reference per object)
  bool operator==(const OwnerReference&) const = default;
};

struct PodInfo {
  std::string ns;
  std::string name;
  std::string uid;
  std::string node_name;
  std::string phase;
  std::vector<std::string> ips;  // status.podIPs (falls back to status.podIP)
  bool host_network = false;
  bool deleting = false;  // metadata.deletionTimestamp is set
  // metadata.deletionTimestamp when deleting: the time of the deletion plus the pod's grace
  // period, by the API server's clock (the end of the pod's deletion grace window).
  SystemTime deletion_deadline{};
  std::map<std::string, std::string> labels;
  std::vector<OwnerReference> owners;
  bool operator==(const PodInfo&) const = default;
};

enum class IdentityType : std::int8_t {
  UserAssignedMsi = 0,
  ServicePrincipal = 1,
  ServicePrincipalCertificate = 2,
};

// AzureIdentity.spec.type as an IdentityType; nullopt for any other value. Pure.
constexpr std::optional<IdentityType> identityType(int spec_type) {
  switch (spec_type) {
    case 0:
      return IdentityType::UserAssignedMsi;
    case 1:
      return IdentityType::ServicePrincipal;
    case 2:
      return IdentityType::ServicePrincipalCertificate;
    default:
      return std::nullopt;
  }
}

struct SecretRef {
  std::string name;
  std::string ns;
  bool operator==(const SecretRef&) const = default;
};

// aadpodidentity.k8s.io/v1 AzureIdentity.
struct AzureIdentity {
  std::string ns;
  std::string name;
  // spec.type as written; values other than 0, 1, 2 are kept so that the error is reported when
  // a token is asked for (as the original: "unsupported identity type").
  int type = 0;
  std::string resource_id;
  std::string client_id;
  std::string tenant_id;
  std::string ad_endpoint;
  SecretRef client_password;
  std::vector<std::string> auxiliary_tenant_ids;
  // metadata.annotations["aadpodidentity.k8s.io/Behavior"] == "namespaced"
  bool namespaced = false;
  bool operator==(const AzureIdentity&) const = default;
};

// aadpodidentity.k8s.io/v1 AzureIdentityBinding.
struct AzureIdentityBinding {
  std::string ns;
  std::string name;
  std::string azure_identity;  // spec.azureIdentity
  std::string selector;        // spec.selector, compared with the pod label aadpodidbinding
  bool operator==(const AzureIdentityBinding&) const = default;
};

enum class AssignedState : std::int8_t { Legacy, Created, Assigned, Unassigned, Other };

// aadpodidentity.k8s.io/v1 AzureAssignedIdentity (standard mode; written by MIC).
struct AzureAssignedIdentity {
  std::string ns;
  std::string name;
  AzureIdentity identity;                       // spec.azureIdentityRef (embedded copy)
  AzureIdentityBinding binding;                 // spec.azureBindingRef (embedded copy)
  std::string pod;                              // spec.pod
  std::string pod_namespace;                    // spec.podNamespace
  std::string node_name;                        // spec.nodename
  AssignedState state = AssignedState::Legacy;  // status.status ("" is Legacy)
  bool operator==(const AzureAssignedIdentity&) const = default;
};

// aadpodidentity.k8s.io/v1 AzurePodIdentityException.
struct AzurePodIdentityException {
  std::string ns;
  std::string name;
  std::map<std::string, std::string> pod_labels;
  bool operator==(const AzurePodIdentityException&) const = default;
};

// A Secret's data, decoded.
struct SecretData {
  std::map<std::string, std::string> data;
};

}  // namespace nmi::identity
