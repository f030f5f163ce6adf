#include "kube/decode.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <utility>
#include <vector>

#include <boost/asio/ip/address.hpp>
#include <nlohmann/json.hpp>

#include "common/base64.h"
#include "kube/kube_time.h"

namespace nmi::kube {

namespace {

using nlohmann::json;

const json& emptyObject() {
  static const json empty = json::object();
  return empty;
}

const json& emptyArray() {
  static const json empty = json::array();
  return empty;
}

// "path[key]"
std::string indexed(const std::string& path, std::string_view key) {
  std::string out = path;
  out += '[';
  out += key;
  out += ']';
  return out;
}

// Reads fields of untrusted JSON. The first error is kept and every later read returns a default,
// so a decoder reads straight through and checks ok() once at the end.
class Reader {
 public:
  bool ok() const { return !error_.has_value(); }
  Error takeError() { return std::move(*error_); }

  void fail(const std::string& path, const std::string& what) {
    if (ok()) {
      error_ = makeError(ErrorCode::InvalidArgument, path + ": " + what);
    }
  }

  // parent[key] as an object; an empty object when absent, null, or after an error.
  const json& object(const json& parent, const char* key, const std::string& path) {
    const json* value = find(parent, key);
    if (value == nullptr) {
      return emptyObject();
    }
    if (!value->is_object()) {
      wrongType(path, "an object", *value);
      return emptyObject();
    }
    return *value;
  }

  // parent[key] as an array of at most max_items; an empty array when absent or null.
  const json& array(const json& parent, const char* key, const std::string& path,
                    std::size_t max_items) {
    const json* value = find(parent, key);
    if (value == nullptr) {
      return emptyArray();
    }
    if (!value->is_array()) {
      wrongType(path, "an array", *value);
      return emptyArray();
    }
    if (value->size() > max_items) {
      fail(path, "more than " + std::to_string(max_items) + " entries");
      return emptyArray();
    }
    return *value;
  }

  // parent[key] as a string; "" when absent or null.
  std::string string(const json& parent, const char* key, const std::string& path,
                     std::size_t max_bytes = kMaxStringBytes) {
    const json* value = find(parent, key);
    if (value == nullptr) {
      return {};
    }
    return stringValue(*value, path, max_bytes);
  }

  // A JSON string value of at most max_bytes.
  std::string stringValue(const json& value, const std::string& path,
                          std::size_t max_bytes = kMaxStringBytes) {
    if (!ok()) {
      return {};
    }
    if (!value.is_string()) {
      wrongType(path, "a string", value);
      return {};
    }
    const auto& text = value.get_ref<const std::string&>();
    if (text.size() > max_bytes) {
      fail(path, "longer than " + std::to_string(max_bytes) + " bytes");
      return {};
    }
    return text;
  }

  bool boolean(const json& parent, const char* key, const std::string& path) {
    const json* value = find(parent, key);
    if (value == nullptr) {
      return false;
    }
    if (!value->is_boolean()) {
      wrongType(path, "a boolean", *value);
      return false;
    }
    return value->get<bool>();
  }

  // parent[key] as a JSON integer that fits an int; 0 when absent or null.
  int integer(const json& parent, const char* key, const std::string& path) {
    const json* value = find(parent, key);
    if (value == nullptr) {
      return 0;
    }
    if (value->is_number_unsigned()) {
      const auto n = value->get<json::number_unsigned_t>();
      if (n > static_cast<json::number_unsigned_t>(std::numeric_limits<int>::max())) {
        fail(path, "integer out of range");
        return 0;
      }
      return static_cast<int>(n);
    }
    if (value->is_number_integer()) {
      const auto n = value->get<json::number_integer_t>();
      if (n < std::numeric_limits<int>::min() || n > std::numeric_limits<int>::max()) {
        fail(path, "integer out of range");
        return 0;
      }
      return static_cast<int>(n);
    }
    wrongType(path, "an integer", *value);
    return 0;
  }

  // parent[key] as a map of strings with at most max_entries entries.
  std::map<std::string, std::string> stringMap(const json& parent, const char* key,
                                               const std::string& path, std::size_t max_entries) {
    const json& map = object(parent, key, path);
    std::map<std::string, std::string> out;
    if (map.size() > max_entries) {
      fail(path, "more than " + std::to_string(max_entries) + " entries");
      return out;
    }
    for (const auto& [k, v] : map.items()) {
      if (!ok()) {
        break;
      }
      if (k.size() > kMaxStringBytes) {
        fail(path, "key longer than " + std::to_string(kMaxStringBytes) + " bytes");
        break;
      }
      out.emplace(k, stringValue(v, indexed(path, k)));
    }
    return out;
  }

  // parent[key] as a list of strings with at most max_items entries.
  std::vector<std::string> stringList(const json& parent, const char* key, const std::string& path,
                                      std::size_t max_items) {
    const json& list = array(parent, key, path, max_items);
    std::vector<std::string> out;
    out.reserve(list.size());
    for (std::size_t i = 0; i < list.size() && ok(); ++i) {
      out.push_back(stringValue(list[i], indexed(path, std::to_string(i))));
    }
    return out;
  }

  // metadata.namespace (default "default") and metadata.name (required) under `prefix`.
  ObjectMeta meta(const json& object, const std::string& prefix) {
    const json& metadata = this->object(object, "metadata", prefix + "metadata");
    ObjectMeta out;
    out.ns = string(metadata, "namespace", prefix + "metadata.namespace");
    if (out.ns.empty()) {
      out.ns = "default";
    }
    out.name = string(metadata, "name", prefix + "metadata.name");
    if (out.name.empty()) {
      fail(prefix + "metadata.name", "must be a non-empty string");
    }
    return out;
  }

 private:
  // parent[key], or nullptr when absent, null, or after an error.
  const json* find(const json& parent, const char* key) const {
    if (!ok() || !parent.is_object()) {
      return nullptr;
    }
    const auto it = parent.find(key);
    if (it == parent.end() || it->is_null()) {
      return nullptr;
    }
    return &*it;
  }

  void wrongType(const std::string& path, const char* expected, const json& value) {
    fail(path, std::string("expected ") + expected + ", got " + value.type_name());
  }

  std::optional<Error> error_;
};

std::optional<Error> checkObject(const json& object) {
  if (!object.is_object()) {
    return makeError(ErrorCode::InvalidArgument,
                     std::string("expected an object, got ") + object.type_name());
  }
  return std::nullopt;
}

// Parses and normalises an IP address ("10.0.0.1", "fd00::1"); nullopt when it is not one.
// A zone ("fe80::1%eth0") is refused: the API server never reports one, Asio would silently drop
// it from a global address and resolve it against this host's interfaces for a link-local one.
std::optional<std::string> normaliseIp(const std::string& text) {
  if (text.find('%') != std::string::npos) {
    return std::nullopt;
  }
  boost::system::error_code ec;
  const auto address = boost::asio::ip::make_address(text.c_str(), ec);
  if (ec) {
    return std::nullopt;
  }
  return address.to_string();
}

identity::AzureIdentity readAzureIdentity(Reader& r, const json& object,
                                          const std::string& prefix) {
  identity::AzureIdentity id;
  if (!object.is_object()) {
    r.fail(prefix.empty() ? "object" : prefix.substr(0, prefix.size() - 1),
           std::string("expected an object, got ") + object.type_name());
    return id;
  }
  const ObjectMeta meta = r.meta(object, prefix);
  id.ns = meta.ns;
  id.name = meta.name;
  const json& metadata = r.object(object, "metadata", prefix + "metadata");
  const json& annotations = r.object(metadata, "annotations", prefix + "metadata.annotations");
  const std::string behavior =
      r.string(annotations, std::string(kNamespacedAnnotation).c_str(),
               prefix + "metadata.annotations[" + std::string(kNamespacedAnnotation) + "]");
  id.namespaced = behavior == "namespaced";

  const std::string spec_path = prefix + "spec";
  const json& spec = r.object(object, "spec", spec_path);
  id.type = r.integer(spec, "type", spec_path + ".type");
  id.resource_id = r.string(spec, "resourceID", spec_path + ".resourceID");
  id.client_id = r.string(spec, "clientID", spec_path + ".clientID");
  id.tenant_id = r.string(spec, "tenantID", spec_path + ".tenantID");
  id.ad_endpoint = r.string(spec, "adEndpoint", spec_path + ".adEndpoint");
  const json& password = r.object(spec, "clientPassword", spec_path + ".clientPassword");
  id.client_password.name = r.string(password, "name", spec_path + ".clientPassword.name");
  id.client_password.ns = r.string(password, "namespace", spec_path + ".clientPassword.namespace");
  id.auxiliary_tenant_ids = r.stringList(spec, "auxiliaryTenantIDs",
                                         spec_path + ".auxiliaryTenantIDs", kMaxAuxiliaryTenants);
  return id;
}

identity::AzureIdentityBinding readAzureIdentityBinding(Reader& r, const json& object,
                                                        const std::string& prefix) {
  identity::AzureIdentityBinding binding;
  if (!object.is_object()) {
    r.fail(prefix.empty() ? "object" : prefix.substr(0, prefix.size() - 1),
           std::string("expected an object, got ") + object.type_name());
    return binding;
  }
  const ObjectMeta meta = r.meta(object, prefix);
  binding.ns = meta.ns;
  binding.name = meta.name;
  const std::string spec_path = prefix + "spec";
  const json& spec = r.object(object, "spec", spec_path);
  binding.azure_identity = r.string(spec, "azureIdentity", spec_path + ".azureIdentity");
  binding.selector = r.string(spec, "selector", spec_path + ".selector");
  return binding;
}

}  // namespace

identity::AssignedState parseAssignedState(std::string_view status) {
  if (status.empty()) {
    return identity::AssignedState::Legacy;
  }
  if (status == "Created") {
    return identity::AssignedState::Created;
  }
  if (status == "Assigned") {
    return identity::AssignedState::Assigned;
  }
  if (status == "Unassigned") {
    return identity::AssignedState::Unassigned;
  }
  return identity::AssignedState::Other;
}

Result<ObjectMeta> decodeObjectMeta(const json& object) {
  if (auto error = checkObject(object)) {
    return std::move(*error);
  }
  Reader r;
  ObjectMeta meta = r.meta(object, "");
  if (!r.ok()) {
    return r.takeError();
  }
  return meta;
}

Result<identity::PodInfo> decodePod(const json& object) {
  if (auto error = checkObject(object)) {
    return std::move(*error);
  }
  Reader r;
  identity::PodInfo pod;
  const ObjectMeta meta = r.meta(object, "");
  pod.ns = meta.ns;
  pod.name = meta.name;

  const json& metadata = r.object(object, "metadata", "metadata");
  pod.uid = r.string(metadata, "uid", "metadata.uid");
  pod.labels = r.stringMap(metadata, "labels", "metadata.labels", kMaxLabels);
  const json& owners =
      r.array(metadata, "ownerReferences", "metadata.ownerReferences", kMaxOwnerReferences);
  for (std::size_t i = 0; i < owners.size() && r.ok(); ++i) {
    const std::string path = "metadata.ownerReferences[" + std::to_string(i) + "]";
    const json& owner = owners[i];
    if (!owner.is_object()) {
      r.fail(path, std::string("expected an object, got ") + owner.type_name());
      break;
    }
    identity::OwnerReference ref;
    ref.kind = r.string(owner, "kind", path + ".kind");
    ref.name = r.string(owner, "name", path + ".name");
    ref.uid = r.string(owner, "uid", path + ".uid");
    ref.controller = r.boolean(owner, "controller", path + ".controller");
    pod.owners.push_back(std::move(ref));
  }
  const std::string deletion =
      r.string(metadata, "deletionTimestamp", "metadata.deletionTimestamp");
  if (!deletion.empty()) {
    // An unreadable time would leave the length of the grace window unknown: the pod is
    // refused (the cache drops objects that do not decode).
    const auto deadline = parseKubeTime(deletion);
    if (!deadline) {
      r.fail("metadata.deletionTimestamp", "not an RFC 3339 time");
    }
    pod.deleting = true;
    pod.deletion_deadline = deadline.value_or(SystemTime{});
  }

  const json& spec = r.object(object, "spec", "spec");
  pod.node_name = r.string(spec, "nodeName", "spec.nodeName");
  pod.host_network = r.boolean(spec, "hostNetwork", "spec.hostNetwork");

  const json& status = r.object(object, "status", "status");
  pod.phase = r.string(status, "phase", "status.phase");
  std::vector<std::pair<std::string, std::string>> ips;  // (path, text)
  const json& pod_ips = r.array(status, "podIPs", "status.podIPs", kMaxPodIps);
  for (std::size_t i = 0; i < pod_ips.size() && r.ok(); ++i) {
    const std::string path = "status.podIPs[" + std::to_string(i) + "]";
    const json& entry = pod_ips[i];
    if (!entry.is_object()) {
      r.fail(path, std::string("expected an object, got ") + entry.type_name());
      break;
    }
    ips.emplace_back(path + ".ip", r.string(entry, "ip", path + ".ip"));
  }
  const std::string pod_ip = r.string(status, "podIP", "status.podIP");
  const bool any_listed =
      std::any_of(ips.begin(), ips.end(), [](const auto& ip) { return !ip.second.empty(); });
  if (!any_listed) {
    ips.emplace_back("status.podIP", pod_ip);
  }
  for (const auto& [path, text] : ips) {
    if (text.empty() || !r.ok()) {
      continue;
    }
    auto normalised = normaliseIp(text);
    if (!normalised) {
      r.fail(path, "not an IP address");
      break;
    }
    if (std::find(pod.ips.begin(), pod.ips.end(), *normalised) == pod.ips.end()) {
      pod.ips.push_back(std::move(*normalised));
    }
  }

  if (!r.ok()) {
    return r.takeError();
  }
  return pod;
}

Result<identity::AzureIdentity> decodeAzureIdentity(const json& object) {
  if (auto error = checkObject(object)) {
    return std::move(*error);
  }
  Reader r;
  identity::AzureIdentity id = readAzureIdentity(r, object, "");
  if (!r.ok()) {
    return r.takeError();
  }
  return id;
}

Result<identity::AzureIdentityBinding> decodeAzureIdentityBinding(const json& object) {
  if (auto error = checkObject(object)) {
    return std::move(*error);
  }
  Reader r;
  identity::AzureIdentityBinding binding = readAzureIdentityBinding(r, object, "");
  if (!r.ok()) {
    return r.takeError();
  }
  return binding;
}

Result<identity::AzureAssignedIdentity> decodeAzureAssignedIdentity(const json& object) {
  if (auto error = checkObject(object)) {
    return std::move(*error);
  }
  Reader r;
  identity::AzureAssignedIdentity assigned;
  const ObjectMeta meta = r.meta(object, "");
  assigned.ns = meta.ns;
  assigned.name = meta.name;

  const json& spec = r.object(object, "spec", "spec");
  if (r.ok()) {
    const auto identity_ref = spec.find("azureIdentityRef");
    if (identity_ref == spec.end() || identity_ref->is_null()) {
      r.fail("spec.azureIdentityRef", "required");
    } else {
      assigned.identity = readAzureIdentity(r, *identity_ref, "spec.azureIdentityRef.");
    }
  }
  if (r.ok()) {
    const auto binding_ref = spec.find("azureBindingRef");
    if (binding_ref != spec.end() && !binding_ref->is_null()) {
      assigned.binding = readAzureIdentityBinding(r, *binding_ref, "spec.azureBindingRef.");
    }
  }
  assigned.pod = r.string(spec, "pod", "spec.pod");
  assigned.pod_namespace = r.string(spec, "podNamespace", "spec.podNamespace");
  assigned.node_name = r.string(spec, "nodename", "spec.nodename");

  const json& status = r.object(object, "status", "status");
  assigned.state = parseAssignedState(r.string(status, "status", "status.status"));

  if (!r.ok()) {
    return r.takeError();
  }
  return assigned;
}

Result<identity::AzurePodIdentityException> decodeAzurePodIdentityException(const json& object) {
  if (auto error = checkObject(object)) {
    return std::move(*error);
  }
  Reader r;
  identity::AzurePodIdentityException exception;
  const ObjectMeta meta = r.meta(object, "");
  exception.ns = meta.ns;
  exception.name = meta.name;
  const json& spec = r.object(object, "spec", "spec");
  exception.pod_labels = r.stringMap(spec, "podLabels", "spec.podLabels", kMaxLabels);
  if (!r.ok()) {
    return r.takeError();
  }
  return exception;
}

Result<identity::SecretData> decodeSecret(const json& object) {
  if (auto error = checkObject(object)) {
    return std::move(*error);
  }
  Reader r;
  static_cast<void>(r.meta(object, ""));
  // Base64 of kMaxSecretValueBytes, plus room for line breaks.
  constexpr std::size_t kMaxEncodedBytes = (kMaxSecretValueBytes / 3 + 1) * 4 * 2;

  identity::SecretData secret;
  const json& data = r.object(object, "data", "data");
  const json& string_data = r.object(object, "stringData", "stringData");
  if (data.size() > kMaxSecretKeys || string_data.size() > kMaxSecretKeys) {
    r.fail(data.size() > kMaxSecretKeys ? "data" : "stringData",
           "more than " + std::to_string(kMaxSecretKeys) + " entries");
  }
  for (const auto& [key, value] : data.items()) {
    if (!r.ok()) {
      break;
    }
    const std::string path = indexed("data", key.substr(0, kMaxStringBytes));
    if (key.size() > kMaxStringBytes) {
      r.fail("data", "key longer than " + std::to_string(kMaxStringBytes) + " bytes");
      break;
    }
    std::string text = r.stringValue(value, path, kMaxEncodedBytes);
    std::erase_if(text, [](char c) { return c == '\n' || c == '\r'; });
    auto decoded = base64Decode(text);
    if (!r.ok()) {
      break;
    }
    if (!decoded) {
      r.fail(path, "not valid base64");
      break;
    }
    if (decoded->size() > kMaxSecretValueBytes) {
      r.fail(path, "longer than " + std::to_string(kMaxSecretValueBytes) + " bytes");
      break;
    }
    secret.data.insert_or_assign(key, std::move(*decoded));
  }
  for (const auto& [key, value] : string_data.items()) {
    if (!r.ok()) {
      break;
    }
    if (key.size() > kMaxStringBytes) {
      r.fail("stringData", "key longer than " + std::to_string(kMaxStringBytes) + " bytes");
      break;
    }
    std::string text = r.stringValue(value, indexed("stringData", key), kMaxSecretValueBytes);
    if (r.ok()) {
      secret.data.insert_or_assign(key, std::move(text));
    }
  }
  if (!r.ok()) {
    return r.takeError();
  }
  return secret;
}

}  // namespace nmi::kube
