#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include "common/result.h"
#include "identity/types.h"

namespace nmi::kube {

// Decoders for the Kubernetes objects nmi reads, from their JSON form (as the API server sends
// them, or as a YAML file converted to JSON). Inputs are untrusted: every field read is checked
// for its type, absent or null optional fields take their defaults, and a wrong type, an
// over-long value or too many entries is an InvalidArgument error whose message names the field
// (never its value). Namespaces default to "default"; metadata.name must be a non-empty string.

inline constexpr std::size_t kMaxStringBytes = 4096;  // any string field, label key or value
inline constexpr std::size_t kMaxLabels = 256;        // labels, exception podLabels
inline constexpr std::size_t kMaxPodIps = 16;         // status.podIPs entries
inline constexpr std::size_t kMaxAuxiliaryTenants = 64;
inline constexpr std::size_t kMaxOwnerReferences = 64;
inline constexpr std::size_t kMaxSecretKeys = 256;
inline constexpr std::size_t kMaxSecretValueBytes =
    std::size_t{1024} * 1024;  // decoded; the API's own cap

inline constexpr std::string_view kNamespacedAnnotation = "aadpodidentity.k8s.io/Behavior";

struct ObjectMeta {
  std::string ns;
  std::string name;
  bool operator==(const ObjectMeta&) const = default;
};

// metadata.namespace (default "default") and metadata.name of any object.
Result<ObjectMeta> decodeObjectMeta(const nlohmann::json& object);

// v1 Pod: metadata (namespace, name, uid, labels, ownerReferences with kind, name, uid and
// controller, deletionTimestamp), spec.nodeName, spec.hostNetwork, status.phase,
// status.podIPs[].ip (or status.podIP when podIPs is empty). IPs must parse as addresses; they are
// normalised and deduplicated. deletionTimestamp must be an RFC 3339 time (parseKubeTime).
Result<identity::PodInfo> decodePod(const nlohmann::json& object);

// aadpodidentity.k8s.io/v1 AzureIdentity. spec.type must be a JSON integer (absent: 0);
// integers other than 0, 1, 2 are kept.
Result<identity::AzureIdentity> decodeAzureIdentity(const nlohmann::json& object);

Result<identity::AzureIdentityBinding> decodeAzureIdentityBinding(const nlohmann::json& object);

// spec.azureIdentityRef is required (an assignment without an identity cannot be honoured) and
// decoded as an AzureIdentity; spec.azureBindingRef is optional.
Result<identity::AzureAssignedIdentity> decodeAzureAssignedIdentity(const nlohmann::json& object);

Result<identity::AzurePodIdentityException> decodeAzurePodIdentityException(
    const nlohmann::json& object);

// v1 Secret: `data` values are base64 (line breaks ignored), `stringData` values plain text;
// a key in both takes the stringData value.
Result<identity::SecretData> decodeSecret(const nlohmann::json& object);

// status.status of an AzureAssignedIdentity: "" → Legacy, "Created", "Assigned", "Unassigned"
// (exact case), anything else → Other.
identity::AssignedState parseAssignedState(std::string_view status);

}  // namespace nmi::kube
