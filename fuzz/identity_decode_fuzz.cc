// libFuzzer target for the decoders of Kubernetes objects (kube/decode.h): Pod,
// AzureIdentity, AzureIdentityBinding, AzureAssignedIdentity, AzurePodIdentityException, Secret.
// The input is parsed as JSON and given to every decoder. Aborts when one of these does not hold:
//   * round trip: an accepted object, written back as JSON by an encoder of this file, decodes to
//     an equal value (a Secret's data once as base64 `data`, with line breaks, and once as
//     `stringData`);
//   * accepted values satisfy the header's constraints: namespace and name non-empty, every
//     string at most kMaxStringBytes, at most kMaxLabels labels, kMaxOwnerReferences owners,
//     kMaxPodIps addresses, kMaxAuxiliaryTenants tenants, Secret values at most
//     kMaxSecretValueBytes; pod IPs are addresses in the form inet_ntop prints, without repeats;
//   * every decoder that accepts agrees with decodeObjectMeta on namespace and name;
//   * a refusal is InvalidArgument with a bounded message that quotes no string value of the input
//     (keys may appear: they name the field).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "fuzz_support.h"
#include "identity/types.h"
#include "json_support.h"
#include "kube/decode.h"

namespace {

using nlohmann::json;
using nmi::fuzz::check;
using nmi::fuzz::shifted;
using nmi::identity::AssignedState;
using nmi::identity::AzureAssignedIdentity;
using nmi::identity::AzureIdentity;
using nmi::identity::AzureIdentityBinding;
using nmi::identity::AzurePodIdentityException;
using nmi::identity::PodInfo;
using nmi::identity::SecretData;
using nmi::kube::kMaxStringBytes;
using nmi::kube::ObjectMeta;

// ---- Encoders: the JSON an API server would send for a decoded value ------------------------

json metadataOf(const std::string& ns, const std::string& name) {
  return json{{"namespace", ns}, {"name", name}};
}

// RFC 3339 in UTC with nanoseconds, written with gmtime_r (not the code under test).
std::string rfc3339(nmi::SystemTime t) {
  const auto ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  std::int64_t secs = ns / 1'000'000'000;
  std::int64_t frac = ns % 1'000'000'000;
  if (frac < 0) {
    frac += 1'000'000'000;
    --secs;
  }
  const auto whole = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&whole, &tm);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%09lldZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<long long>(frac));
  return buf;
}

json encodePod(const PodInfo& pod) {
  json metadata = metadataOf(pod.ns, pod.name);
  metadata["uid"] = pod.uid;
  metadata["labels"] = json::object();
  for (const auto& [key, value] : pod.labels) {
    metadata["labels"][key] = value;
  }
  metadata["ownerReferences"] = json::array();
  for (const auto& owner : pod.owners) {
    metadata["ownerReferences"].push_back(json{{"apiVersion", "apps/v1"},
                                               {"kind", owner.kind},
                                               {"name", owner.name},
                                               {"uid", owner.uid},
                                               {"controller", owner.controller}});
  }
  if (pod.deleting) {
    metadata["deletionTimestamp"] = rfc3339(pod.deletion_deadline);
  }
  json status = {{"phase", pod.phase}, {"podIPs", json::array()}};
  for (const auto& ip : pod.ips) {
    status["podIPs"].push_back(json{{"ip", ip}});
  }
  if (!pod.ips.empty()) {
    status["podIP"] = pod.ips.front();
  }
  return json{{"apiVersion", "v1"},
              {"kind", "Pod"},
              {"metadata", metadata},
              {"spec", {{"nodeName", pod.node_name}, {"hostNetwork", pod.host_network}}},
              {"status", status}};
}

json encodeIdentity(const AzureIdentity& id) {
  json metadata = metadataOf(id.ns, id.name);
  if (id.namespaced) {
    metadata["annotations"] = {{std::string(nmi::kube::kNamespacedAnnotation), "namespaced"}};
  }
  return json{{"kind", "AzureIdentity"},
              {"metadata", metadata},
              {"spec",
               {{"type", id.type},
                {"resourceID", id.resource_id},
                {"clientID", id.client_id},
                {"tenantID", id.tenant_id},
                {"adEndpoint", id.ad_endpoint},
                {"clientPassword",
                 {{"name", id.client_password.name}, {"namespace", id.client_password.ns}}},
                {"auxiliaryTenantIDs", id.auxiliary_tenant_ids}}}};
}

json encodeBinding(const AzureIdentityBinding& binding) {
  return json{
      {"kind", "AzureIdentityBinding"},
      {"metadata", metadataOf(binding.ns, binding.name)},
      {"spec", {{"azureIdentity", binding.azure_identity}, {"selector", binding.selector}}}};
}

const char* stateName(AssignedState state) {
  switch (state) {
    case AssignedState::Legacy:
      return "";
    case AssignedState::Created:
      return "Created";
    case AssignedState::Assigned:
      return "Assigned";
    case AssignedState::Unassigned:
      return "Unassigned";
    case AssignedState::Other:
      return "Pending";
  }
  return "";
}

json encodeAssigned(const AzureAssignedIdentity& assigned) {
  json spec = {{"azureIdentityRef", encodeIdentity(assigned.identity)},
               {"pod", assigned.pod},
               {"podNamespace", assigned.pod_namespace},
               {"nodename", assigned.node_name}};
  if (!assigned.binding.name.empty()) {
    spec["azureBindingRef"] = encodeBinding(assigned.binding);
  }
  json out = {{"kind", "AzureAssignedIdentity"},
              {"metadata", metadataOf(assigned.ns, assigned.name)},
              {"spec", spec}};
  if (assigned.state != AssignedState::Legacy) {
    out["status"] = {{"status", stateName(assigned.state)}};
  }
  return out;
}

json encodeException(const AzurePodIdentityException& exception) {
  json labels = json::object();
  for (const auto& [key, value] : exception.pod_labels) {
    labels[key] = value;
  }
  return json{{"kind", "AzurePodIdentityException"},
              {"metadata", metadataOf(exception.ns, exception.name)},
              {"spec", {{"podLabels", labels}}}};
}

// RFC 4648 base64, written here rather than taken from common/base64.h, wrapped at 76 characters
// with CRLF as MIME does (the decoder must ignore line breaks).
std::string base64WithLineBreaks(std::string_view bytes) {
  constexpr std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  const auto at = [&bytes](std::size_t k) { return static_cast<unsigned char>(bytes[k]); };
  for (; i + 3 <= bytes.size(); i += 3) {
    const std::uint32_t n = (at(i) << 16U) | (at(i + 1) << 8U) | at(i + 2);
    out += kAlphabet[(n >> 18U) & 63U];
    out += kAlphabet[(n >> 12U) & 63U];
    out += kAlphabet[(n >> 6U) & 63U];
    out += kAlphabet[n & 63U];
  }
  if (bytes.size() - i == 1) {
    const std::uint32_t n = at(i) << 16U;
    out += kAlphabet[(n >> 18U) & 63U];
    out += kAlphabet[(n >> 12U) & 63U];
    out += "==";
  } else if (bytes.size() - i == 2) {
    const std::uint32_t n = (at(i) << 16U) | (at(i + 1) << 8U);
    out += kAlphabet[(n >> 18U) & 63U];
    out += kAlphabet[(n >> 12U) & 63U];
    out += kAlphabet[(n >> 6U) & 63U];
    out += '=';
  }
  std::string wrapped;
  for (std::size_t k = 0; k < out.size(); k += 76) {
    wrapped += out.substr(k, 76);
    wrapped += "\r\n";
  }
  return wrapped;
}

// Even entries as base64 `data`, odd ones as `stringData`: both paths at once, and at most half
// of the entries in each map.
json encodeSecret(const SecretData& secret, const ObjectMeta& meta) {
  json data = json::object();
  json string_data = json::object();
  std::size_t i = 0;
  for (const auto& [key, value] : secret.data) {
    if (i++ % 2 == 0) {
      data[key] = base64WithLineBreaks(value);
    } else {
      string_data[key] = value;
    }
  }
  return json{{"kind", "Secret"},
              {"metadata", metadataOf(meta.ns, meta.name)},
              {"data", data},
              {"stringData", string_data}};
}

// ---- Constraints on accepted values ---------------------------------------------------------

void checkString(const std::string& s, std::string_view input) {
  check(s.size() <= kMaxStringBytes, "a decoded string is longer than kMaxStringBytes", input);
}

void checkMeta(const std::string& ns, const std::string& name, const nmi::Result<ObjectMeta>& meta,
               std::string_view input) {
  check(!ns.empty() && !name.empty(), "a decoded object has an empty namespace or name", input);
  checkString(ns, input);
  checkString(name, input);
  check(meta.has_value() && meta->ns == ns && meta->name == name,
        "a decoder disagrees with decodeObjectMeta", input);
}

void checkLabels(const std::map<std::string, std::string>& labels, std::string_view input) {
  check(labels.size() <= nmi::kube::kMaxLabels, "more than kMaxLabels labels", input);
  for (const auto& [key, value] : labels) {
    checkString(key, input);
    checkString(value, input);
  }
}

// An address inet_pton reads and inet_ntop prints back unchanged.
bool isPrintedAddress(const std::string& ip) {
  std::array<unsigned char, sizeof(in6_addr)> bytes{};
  std::array<char, INET6_ADDRSTRLEN> printed{};
  for (const int family : {AF_INET, AF_INET6}) {
    if (inet_pton(family, ip.c_str(), bytes.data()) == 1) {
      return inet_ntop(family, bytes.data(), printed.data(), printed.size()) != nullptr &&
             ip == printed.data();
    }
  }
  return false;
}

void checkPod(const PodInfo& pod, const nmi::Result<ObjectMeta>& meta, std::string_view input) {
  checkMeta(pod.ns, pod.name, meta, input);
  for (const std::string* s : {&pod.uid, &pod.node_name, &pod.phase}) {
    checkString(*s, input);
  }
  checkLabels(pod.labels, input);
  check(pod.owners.size() <= nmi::kube::kMaxOwnerReferences, "too many owners", input);
  for (const auto& owner : pod.owners) {
    checkString(owner.kind, input);
    checkString(owner.name, input);
  }
  check(pod.ips.size() <= nmi::kube::kMaxPodIps, "more than kMaxPodIps addresses", input);
  const std::set<std::string> unique(pod.ips.begin(), pod.ips.end());
  check(unique.size() == pod.ips.size(), "a pod IP is listed twice", input);
  for (const auto& ip : pod.ips) {
    check(isPrintedAddress(ip), "a pod IP is not an address in inet_ntop's form", input);
  }
  const auto again = nmi::kube::decodePod(encodePod(pod));
  check(again.has_value() && *again == pod, "a re-encoded Pod does not decode to itself", input);
}

void checkIdentityFields(const AzureIdentity& id, std::string_view input) {
  for (const std::string* s : {&id.resource_id, &id.client_id, &id.tenant_id, &id.ad_endpoint,
                               &id.client_password.name, &id.client_password.ns}) {
    checkString(*s, input);
  }
  check(id.auxiliary_tenant_ids.size() <= nmi::kube::kMaxAuxiliaryTenants,
        "more than kMaxAuxiliaryTenants tenants", input);
  for (const auto& tenant : id.auxiliary_tenant_ids) {
    checkString(tenant, input);
  }
  check(!id.ns.empty() && !id.name.empty(), "an identity has an empty namespace or name", input);
}

// ---- Errors ---------------------------------------------------------------------------------

constexpr std::size_t kQuotable = 16;

// `doc` with every string value equal to `from` replaced by `to`.
json replacedValues(const json& doc, const std::string& from, const std::string& to) {
  json copy = doc;
  std::vector<json*> stack{&copy};
  while (!stack.empty()) {
    json* value = stack.back();
    stack.pop_back();
    if (value->is_string() && value->get_ref<const std::string&>() == from) {
      *value = to;
    } else if (value->is_structured()) {
      for (json& child : *value) {
        stack.push_back(&child);
      }
    }
  }
  return copy;
}

// A refusal must be InvalidArgument with a bounded message naming the field, never quoting a
// value. A message may contain a value's text by coincidence (the fuzzer learns the messages'
// words from the comparisons below), so a value found in it is changed and the decoder run again:
// the value is quoted when the new message quotes the changed text instead.
template <class Decode>
void checkError(const nmi::Error& error, Decode decode, const json& doc, std::string_view input) {
  check(error.code == nmi::ErrorCode::InvalidArgument, "a decoder error is not InvalidArgument",
        input);
  check(!error.message.empty() && error.message.size() <= 2 * kMaxStringBytes + 512,
        "a decoder error message is empty or unbounded", input);
  std::vector<std::string> suspects;
  nmi::fuzz::forEachString(doc, [&](const std::string& s, bool is_key) {
    if (!is_key && s.size() >= kQuotable && suspects.size() < 4 &&
        error.message.find(s) != std::string::npos) {
      suspects.push_back(s);
    }
  });
  for (const std::string& value : suspects) {
    const std::string changed = shifted(value);
    const auto again = decode(replacedValues(doc, value, changed));
    if (!again && again.error().message != error.message &&
        again.error().message.find(changed) != std::string::npos) {
      nmi::fuzz::violated("a decoder error message quotes a value: " + error.message, input);
    }
  }
}

template <class T, class Decode>
bool accepted(const nmi::Result<T>& result, Decode decode, const json& doc,
              std::string_view input) {
  if (!result) {
    checkError(result.error(), decode, doc, input);
  }
  return result.has_value();
}

void checkAll(const json& doc, std::string_view input) {
  const auto meta = nmi::kube::decodeObjectMeta(doc);
  if (!meta) {
    checkError(meta.error(), nmi::kube::decodeObjectMeta, doc, input);
  }

  if (const auto pod = nmi::kube::decodePod(doc); accepted(pod, nmi::kube::decodePod, doc, input)) {
    checkPod(*pod, meta, input);
  }
  if (const auto id = nmi::kube::decodeAzureIdentity(doc);
      accepted(id, nmi::kube::decodeAzureIdentity, doc, input)) {
    checkMeta(id->ns, id->name, meta, input);
    checkIdentityFields(*id, input);
    const auto again = nmi::kube::decodeAzureIdentity(encodeIdentity(*id));
    check(again.has_value() && *again == *id,
          "a re-encoded AzureIdentity does not decode to itself", input);
  }
  if (const auto binding = nmi::kube::decodeAzureIdentityBinding(doc);
      accepted(binding, nmi::kube::decodeAzureIdentityBinding, doc, input)) {
    checkMeta(binding->ns, binding->name, meta, input);
    checkString(binding->azure_identity, input);
    checkString(binding->selector, input);
    const auto again = nmi::kube::decodeAzureIdentityBinding(encodeBinding(*binding));
    check(again.has_value() && *again == *binding,
          "a re-encoded AzureIdentityBinding does not decode to itself", input);
  }
  if (const auto assigned = nmi::kube::decodeAzureAssignedIdentity(doc);
      accepted(assigned, nmi::kube::decodeAzureAssignedIdentity, doc, input)) {
    checkMeta(assigned->ns, assigned->name, meta, input);
    checkIdentityFields(assigned->identity, input);
    for (const std::string* s : {&assigned->binding.azure_identity, &assigned->binding.selector,
                                 &assigned->pod, &assigned->pod_namespace, &assigned->node_name}) {
      checkString(*s, input);
    }
    const auto again = nmi::kube::decodeAzureAssignedIdentity(encodeAssigned(*assigned));
    check(again.has_value() && *again == *assigned,
          "a re-encoded AzureAssignedIdentity does not decode to itself", input);
  }
  if (const auto exception = nmi::kube::decodeAzurePodIdentityException(doc);
      accepted(exception, nmi::kube::decodeAzurePodIdentityException, doc, input)) {
    checkMeta(exception->ns, exception->name, meta, input);
    checkLabels(exception->pod_labels, input);
    const auto again = nmi::kube::decodeAzurePodIdentityException(encodeException(*exception));
    check(again.has_value() && *again == *exception,
          "a re-encoded AzurePodIdentityException does not decode to itself", input);
  }
  if (const auto secret = nmi::kube::decodeSecret(doc);
      accepted(secret, nmi::kube::decodeSecret, doc, input)) {
    check(meta.has_value(), "a Secret without a name is accepted", input);
    check(secret->data.size() <= 2 * nmi::kube::kMaxSecretKeys, "too many Secret keys", input);
    for (const auto& [key, value] : secret->data) {
      checkString(key, input);
      check(value.size() <= nmi::kube::kMaxSecretValueBytes, "a Secret value is too long", input);
    }
    const auto again = nmi::kube::decodeSecret(encodeSecret(*secret, *meta));
    check(again.has_value() && again->data == secret->data,
          "a re-encoded Secret does not decode to itself", input);
  }
}

}  // namespace

// NOLINTNEXTLINE(readability-identifier-naming): the name libFuzzer calls.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input = nmi::fuzz::asText(data, size);
  const json doc = json::parse(input, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_discarded()) {
    checkAll(doc, input);
  }
  return 0;
}
