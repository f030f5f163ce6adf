#include "kube/decode.h"

#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace nmi::kube {
namespace {

using nlohmann::json;

json parse(const char* text) {
  json j = json::parse(text, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << text;
  return j;
}

// Expects an InvalidArgument error whose message mentions `field`.
template <class T>
void expectFieldError(const Result<T>& result, const std::string& field) {
  ASSERT_FALSE(result.has_value()) << "expected an error naming " << field;
  EXPECT_EQ(result.error().code, ErrorCode::InvalidArgument);
  EXPECT_NE(result.error().message.find(field), std::string::npos)
      << "message '" << result.error().message << "' does not name " << field;
}

struct FieldCase {
  const char* json;
  const char* field;
};

json minimalPod() {
  return parse(R"({"kind":"Pod","metadata":{"name":"p"}})");
}

// ---- Pod -------------------------------------------------------------------------------------

TEST(DecodePodTest, DecodesApiServerShape) {
  const auto pod = decodePod(parse(R"({
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {
      "name": "demo-7d4b9c6f5-abcde", "namespace": "apps", "uid": "0b6c1f8e-1",
      "labels": {"aadpodidbinding": "demo", "app": "demo"},
      "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "demo-7d4b9c6f5",
                           "uid": "x", "controller": true}]
    },
    "spec": {"nodeName": "node-1", "hostNetwork": false, "containers": [{"name": "c"}]},
    "status": {"phase": "Running", "podIP": "10.244.1.7",
               "podIPs": [{"ip": "10.244.1.7"}, {"ip": "fd00::7"}]}
  })"));
  ASSERT_TRUE(pod.has_value()) << pod.error().message;
  EXPECT_EQ(pod->ns, "apps");
  EXPECT_EQ(pod->name, "demo-7d4b9c6f5-abcde");
  EXPECT_EQ(pod->uid, "0b6c1f8e-1");
  EXPECT_EQ(pod->node_name, "node-1");
  EXPECT_EQ(pod->phase, "Running");
  EXPECT_FALSE(pod->host_network);
  EXPECT_FALSE(pod->deleting);
  EXPECT_EQ(pod->ips, (std::vector<std::string>{"10.244.1.7", "fd00::7"}));
  EXPECT_EQ(pod->labels.at("aadpodidbinding"), "demo");
  ASSERT_EQ(pod->owners.size(), 1U);
  EXPECT_EQ(pod->owners[0], (identity::OwnerReference{"ReplicaSet", "demo-7d4b9c6f5", "x", true}));
}

TEST(DecodePodTest, NamespaceDefaultsToDefault) {
  const auto pod = decodePod(minimalPod());
  ASSERT_TRUE(pod.has_value()) << pod.error().message;
  EXPECT_EQ(pod->ns, "default");
  EXPECT_TRUE(pod->ips.empty());
  EXPECT_TRUE(pod->labels.empty());
}

TEST(DecodePodTest, NullOptionalFieldsTakeDefaults) {
  const auto pod = decodePod(parse(R"({"metadata": {"name": "p", "namespace": null,
      "labels": null, "ownerReferences": null, "deletionTimestamp": null},
      "spec": null, "status": {"podIPs": null, "podIP": null, "phase": null}})"));
  ASSERT_TRUE(pod.has_value()) << pod.error().message;
  EXPECT_EQ(pod->ns, "default");
  EXPECT_FALSE(pod->deleting);
  EXPECT_TRUE(pod->ips.empty());
}

TEST(DecodePodTest, FallsBackToPodIpWhenPodIpsIsEmpty) {
  const auto pod =
      decodePod(parse(R"({"metadata":{"name":"p"},"status":{"podIP":"10.0.0.5","podIPs":[]}})"));
  ASSERT_TRUE(pod.has_value()) << pod.error().message;
  EXPECT_EQ(pod->ips, std::vector<std::string>{"10.0.0.5"});
}

TEST(DecodePodTest, DeduplicatesAndNormalisesIps) {
  const auto pod = decodePod(parse(R"({"metadata":{"name":"p"},"status":{"podIP":"10.0.0.5",
      "podIPs":[{"ip":"10.0.0.5"},{"ip":"FD00:0:0::0001"},{"ip":"fd00::1"},{"ip":"10.0.0.5"}]}})"));
  ASSERT_TRUE(pod.has_value()) << pod.error().message;
  EXPECT_EQ(pod->ips, (std::vector<std::string>{"10.0.0.5", "fd00::1"}));
}

TEST(DecodePodTest, DeletionTimestampMarksPodDeleting) {
  const auto pod =
      decodePod(parse(R"({"metadata":{"name":"p","deletionTimestamp":"2024-01-01T00:00:30Z"}})"));
  ASSERT_TRUE(pod.has_value()) << pod.error().message;
  EXPECT_TRUE(pod->deleting);
  EXPECT_EQ(toUnixSeconds(pod->deletion_deadline), 1704067230);
  const auto null_timestamp =
      decodePod(parse(R"({"metadata":{"name":"p","deletionTimestamp":null}})"));
  ASSERT_TRUE(null_timestamp.has_value());
  EXPECT_FALSE(null_timestamp->deleting);
}

TEST(DecodePodTest, UnreadableDeletionTimestampIsAnError) {
  // Not decodable: the cache drops the pod, so it is never served with an unknown window.
  expectFieldError(decodePod(parse(R"({"metadata":{"name":"p","deletionTimestamp":"yesterday"}})")),
                   "metadata.deletionTimestamp");
}

TEST(DecodePodTest, OwnerReferenceControllerDefaultsToFalse) {
  const auto pod = decodePod(parse(R"({"metadata":{"name":"p","ownerReferences":[
      {"kind":"DaemonSet","name":"nmi","uid":"u-1","controller":null}]}})"));
  ASSERT_TRUE(pod.has_value()) << pod.error().message;
  ASSERT_EQ(pod->owners.size(), 1U);
  EXPECT_EQ(pod->owners[0], (identity::OwnerReference{"DaemonSet", "nmi", "u-1", false}));
}

TEST(DecodePodTest, HostNetworkIsRead) {
  const auto pod = decodePod(parse(R"({"metadata":{"name":"p"},"spec":{"hostNetwork":true}})"));
  ASSERT_TRUE(pod.has_value()) << pod.error().message;
  EXPECT_TRUE(pod->host_network);
}

TEST(DecodePodTest, RequiresNonEmptyName) {
  expectFieldError(decodePod(parse(R"({"metadata":{}})")), "metadata.name");
  expectFieldError(decodePod(parse(R"({})")), "metadata.name");
  expectFieldError(decodePod(parse(R"({"metadata":{"name":""}})")), "metadata.name");
  expectFieldError(decodePod(parse(R"({"metadata":{"name":null}})")), "metadata.name");
  expectFieldError(decodePod(parse(R"({"metadata":{"name":7}})")), "metadata.name");
}

TEST(DecodePodTest, RejectsNonObjects) {
  for (const char* text : {"[]", "\"pod\"", "null", "3"}) {
    const auto pod = decodePod(parse(text));
    ASSERT_FALSE(pod.has_value()) << text;
    EXPECT_EQ(pod.error().code, ErrorCode::InvalidArgument);
  }
}

TEST(DecodePodTest, WrongTypesNameTheField) {
  const std::vector<FieldCase> cases = {
      {R"({"metadata":"p"})", "metadata"},
      {R"({"metadata":{"name":"p","namespace":["a"]}})", "metadata.namespace"},
      {R"({"metadata":{"name":"p","labels":{"app":3}}})", "metadata.labels[app]"},
      {R"({"metadata":{"name":"p","labels":["app"]}})", "metadata.labels"},
      {R"({"metadata":{"name":"p","uid":{}}})", "metadata.uid"},
      {R"({"metadata":{"name":"p","ownerReferences":{}}})", "metadata.ownerReferences"},
      {R"({"metadata":{"name":"p","ownerReferences":["rs"]}})", "metadata.ownerReferences[0]"},
      {R"({"metadata":{"name":"p","ownerReferences":[{"kind":1}]}})",
       "metadata.ownerReferences[0].kind"},
      {R"({"metadata":{"name":"p","ownerReferences":[{"uid":7}]}})",
       "metadata.ownerReferences[0].uid"},
      {R"({"metadata":{"name":"p","ownerReferences":[{"controller":"yes"}]}})",
       "metadata.ownerReferences[0].controller"},
      {R"({"metadata":{"name":"p","deletionTimestamp":true}})", "metadata.deletionTimestamp"},
      {R"({"metadata":{"name":"p"},"spec":[]})", "spec"},
      {R"({"metadata":{"name":"p"},"spec":{"hostNetwork":"true"}})", "spec.hostNetwork"},
      {R"({"metadata":{"name":"p"},"spec":{"nodeName":1}})", "spec.nodeName"},
      {R"({"metadata":{"name":"p"},"status":{"phase":false}})", "status.phase"},
      {R"({"metadata":{"name":"p"},"status":{"podIPs":{"ip":"10.0.0.1"}}})", "status.podIPs"},
      {R"({"metadata":{"name":"p"},"status":{"podIPs":["10.0.0.1"]}})", "status.podIPs[0]"},
      {R"({"metadata":{"name":"p"},"status":{"podIPs":[{"ip":10}]}})", "status.podIPs[0].ip"},
      {R"({"metadata":{"name":"p"},"status":{"podIP":167772161}})", "status.podIP"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.json);
    expectFieldError(decodePod(parse(c.json)), c.field);
  }
}

TEST(DecodePodTest, RejectsInvalidIp) {
  expectFieldError(decodePod(parse(R"({"metadata":{"name":"p"},"status":{"podIP":"10.0.0"}})")),
                   "status.podIP");
  expectFieldError(
      decodePod(parse(R"({"metadata":{"name":"p"},"status":{"podIPs":[{"ip":"x"}]}})")),
      "status.podIPs[0].ip");
}

// Found by fuzz/identity_decode_fuzz: Asio accepts an IPv6 zone, dropping it from a global address
// ("fd00::1%x" became "fd00::1") and naming this host's interface for a link-local one.
TEST(DecodePodTest, RejectsIpWithZone) {
  expectFieldError(decodePod(parse(R"({"metadata":{"name":"p"},"status":{"podIP":"fe80::1%lo"}})")),
                   "status.podIP");
  expectFieldError(
      decodePod(parse(R"({"metadata":{"name":"p"},"status":{"podIPs":[{"ip":"fd00::1%x"}]}})")),
      "status.podIPs[0].ip");
  expectFieldError(decodePod(parse(R"({"metadata":{"name":"p"},"status":{"podIP":"fd00::1%"}})")),
                   "status.podIP");
}

TEST(DecodePodTest, RejectsStringsLongerThanTheCap) {
  json pod = minimalPod();
  pod["metadata"]["uid"] = std::string(kMaxStringBytes, 'u');
  EXPECT_TRUE(decodePod(pod).has_value());
  pod["metadata"]["uid"] = std::string(kMaxStringBytes + 1, 'u');
  expectFieldError(decodePod(pod), "metadata.uid");

  json named = minimalPod();
  named["metadata"]["name"] = std::string(kMaxStringBytes + 1, 'n');
  expectFieldError(decodePod(named), "metadata.name");

  json labelled = minimalPod();
  labelled["metadata"]["labels"][std::string(kMaxStringBytes + 1, 'k')] = "v";
  expectFieldError(decodePod(labelled), "metadata.labels");
}

TEST(DecodePodTest, RejectsTooManyLabels) {
  json pod = minimalPod();
  for (std::size_t i = 0; i < kMaxLabels; ++i) {
    pod["metadata"]["labels"]["l" + std::to_string(i)] = "v";
  }
  EXPECT_TRUE(decodePod(pod).has_value());
  pod["metadata"]["labels"]["one-more"] = "v";
  expectFieldError(decodePod(pod), "metadata.labels");
}

TEST(DecodePodTest, RejectsTooManyIps) {
  json pod = minimalPod();
  for (std::size_t i = 0; i < kMaxPodIps; ++i) {
    pod["status"]["podIPs"].push_back({{"ip", "10.0.0." + std::to_string(i + 1)}});
  }
  const auto ok = decodePod(pod);
  ASSERT_TRUE(ok.has_value()) << ok.error().message;
  EXPECT_EQ(ok->ips.size(), kMaxPodIps);
  pod["status"]["podIPs"].push_back({{"ip", "10.0.1.1"}});
  expectFieldError(decodePod(pod), "status.podIPs");
}

TEST(DecodePodTest, RejectsTooManyOwnerReferences) {
  json pod = minimalPod();
  for (std::size_t i = 0; i <= kMaxOwnerReferences; ++i) {
    pod["metadata"]["ownerReferences"].push_back({{"kind", "ReplicaSet"}, {"name", "rs"}});
  }
  expectFieldError(decodePod(pod), "metadata.ownerReferences");
}

TEST(DecodePodTest, ErrorMessagesDoNotQuoteValues) {
  const auto pod =
      decodePod(parse(R"({"metadata":{"name":"p"},"status":{"podIP":"not-an-ip-s3cr3t"}})"));
  ASSERT_FALSE(pod.has_value());
  EXPECT_EQ(pod.error().message.find("s3cr3t"), std::string::npos) << pod.error().message;
}

// ---- AzureIdentity ---------------------------------------------------------------------------

TEST(DecodeAzureIdentityTest, DecodesUserAssignedIdentityFromDocs) {
  const auto id = decodeAzureIdentity(parse(R"({
    "apiVersion": "aadpodidentity.k8s.io/v1", "kind": "AzureIdentity",
    "metadata": {"name": "demo-identity"},
    "spec": {"type": 0,
             "resourceID": "/subscriptions/sub/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/demo-identity",
             "clientID": "11111111-1111-1111-1111-111111111111"}
  })"));
  ASSERT_TRUE(id.has_value()) << id.error().message;
  EXPECT_EQ(id->ns, "default");
  EXPECT_EQ(id->name, "demo-identity");
  EXPECT_EQ(id->type, 0);
  EXPECT_EQ(id->client_id, "11111111-1111-1111-1111-111111111111");
  EXPECT_NE(id->resource_id.find("userAssignedIdentities/demo-identity"), std::string::npos);
  EXPECT_FALSE(id->namespaced);
  EXPECT_TRUE(id->auxiliary_tenant_ids.empty());
}

TEST(DecodeAzureIdentityTest, DecodesNamespacedServicePrincipal) {
  const auto id = decodeAzureIdentity(parse(R"({
    "kind": "AzureIdentity",
    "metadata": {"name": "sp-secret", "namespace": "team",
                 "annotations": {"aadpodidentity.k8s.io/Behavior": "namespaced", "other": "x"}},
    "spec": {"type": 1, "tenantID": "22222222-2222-2222-2222-222222222222",
             "clientID": "33333333-3333-3333-3333-333333333333",
             "clientPassword": {"name": "sp-secret", "namespace": "team"},
             "adEndpoint": "https://adfs.contoso.com/",
             "auxiliaryTenantIDs": ["44444444-4444-4444-4444-444444444444"]}
  })"));
  ASSERT_TRUE(id.has_value()) << id.error().message;
  EXPECT_EQ(id->ns, "team");
  EXPECT_EQ(id->type, 1);
  EXPECT_TRUE(id->namespaced);
  EXPECT_EQ(id->tenant_id, "22222222-2222-2222-2222-222222222222");
  EXPECT_EQ(id->ad_endpoint, "https://adfs.contoso.com/");
  EXPECT_EQ(id->client_password, (identity::SecretRef{"sp-secret", "team"}));
  EXPECT_EQ(id->auxiliary_tenant_ids,
            std::vector<std::string>{"44444444-4444-4444-4444-444444444444"});
}

TEST(DecodeAzureIdentityTest, BehaviorAnnotationMustBeExactlyNamespaced) {
  for (const char* value : {"Namespaced", "namespaced ", "cluster", ""}) {
    json object = parse(R"({"metadata":{"name":"i"}})");
    object["metadata"]["annotations"]["aadpodidentity.k8s.io/Behavior"] = value;
    const auto id = decodeAzureIdentity(object);
    ASSERT_TRUE(id.has_value()) << id.error().message;
    EXPECT_FALSE(id->namespaced) << value;
  }
  expectFieldError(
      decodeAzureIdentity(parse(
          R"({"metadata":{"name":"i","annotations":{"aadpodidentity.k8s.io/Behavior":true}}})")),
      "metadata.annotations");
}

TEST(DecodeAzureIdentityTest, TypeDefaultsToZeroAndKeepsUnknownIntegers) {
  const auto missing = decodeAzureIdentity(parse(R"({"metadata":{"name":"i"},"spec":{}})"));
  ASSERT_TRUE(missing.has_value());
  EXPECT_EQ(missing->type, 0);
  const auto seven = decodeAzureIdentity(parse(R"({"metadata":{"name":"i"},"spec":{"type":7}})"));
  ASSERT_TRUE(seven.has_value());
  EXPECT_EQ(seven->type, 7);
  const auto negative =
      decodeAzureIdentity(parse(R"({"metadata":{"name":"i"},"spec":{"type":-1}})"));
  ASSERT_TRUE(negative.has_value());
  EXPECT_EQ(negative->type, -1);
}

TEST(DecodeAzureIdentityTest, TypeMustBeAnIntegerInRange) {
  for (const char* type : {R"("0")", "1.5", "true", "[]", "4294967296", "-4294967296"}) {
    const std::string text =
        std::string(R"({"metadata":{"name":"i"},"spec":{"type":)") + type + "}}";
    SCOPED_TRACE(text);
    expectFieldError(decodeAzureIdentity(parse(text.c_str())), "spec.type");
  }
}

TEST(DecodeAzureIdentityTest, AuxiliaryTenantsMayBeNullButNotTooMany) {
  const auto null_list =
      decodeAzureIdentity(parse(R"({"metadata":{"name":"i"},"spec":{"auxiliaryTenantIDs":null}})"));
  ASSERT_TRUE(null_list.has_value());
  EXPECT_TRUE(null_list->auxiliary_tenant_ids.empty());

  json object = parse(R"({"metadata":{"name":"i"},"spec":{}})");
  for (std::size_t i = 0; i <= kMaxAuxiliaryTenants; ++i) {
    object["spec"]["auxiliaryTenantIDs"].push_back("t" + std::to_string(i));
  }
  expectFieldError(decodeAzureIdentity(object), "spec.auxiliaryTenantIDs");
  expectFieldError(
      decodeAzureIdentity(parse(R"({"metadata":{"name":"i"},"spec":{"auxiliaryTenantIDs":[1]}})")),
      "spec.auxiliaryTenantIDs[0]");
}

TEST(DecodeAzureIdentityTest, WrongTypesNameTheField) {
  const std::vector<FieldCase> cases = {
      {R"({"metadata":{"name":"i"},"spec":"x"})", "spec"},
      {R"({"metadata":{"name":"i"},"spec":{"clientID":1}})", "spec.clientID"},
      {R"({"metadata":{"name":"i"},"spec":{"resourceID":{}}})", "spec.resourceID"},
      {R"({"metadata":{"name":"i"},"spec":{"tenantID":[]}})", "spec.tenantID"},
      {R"({"metadata":{"name":"i"},"spec":{"adEndpoint":false}})", "spec.adEndpoint"},
      {R"({"metadata":{"name":"i"},"spec":{"clientPassword":"s"}})", "spec.clientPassword"},
      {R"({"metadata":{"name":"i"},"spec":{"clientPassword":{"name":1}}})",
       "spec.clientPassword.name"},
      {R"({"metadata":{"name":"i"},"spec":{"auxiliaryTenantIDs":"t"}})", "spec.auxiliaryTenantIDs"},
      {R"({"metadata":{"name":"i","annotations":[]}})", "metadata.annotations"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.json);
    expectFieldError(decodeAzureIdentity(parse(c.json)), c.field);
  }
}

// ---- AzureIdentityBinding, AzurePodIdentityException -----------------------------------------

TEST(DecodeAzureIdentityBindingTest, DecodesDocsShape) {
  const auto binding = decodeAzureIdentityBinding(parse(R"({
    "apiVersion": "aadpodidentity.k8s.io/v1", "kind": "AzureIdentityBinding",
    "metadata": {"name": "demo-identity-binding", "namespace": "apps"},
    "spec": {"azureIdentity": "demo-identity", "selector": "demo", "weight": 1}
  })"));
  ASSERT_TRUE(binding.has_value()) << binding.error().message;
  EXPECT_EQ(binding->ns, "apps");
  EXPECT_EQ(binding->name, "demo-identity-binding");
  EXPECT_EQ(binding->azure_identity, "demo-identity");
  EXPECT_EQ(binding->selector, "demo");
}

TEST(DecodeAzureIdentityBindingTest, WrongTypesNameTheField) {
  expectFieldError(decodeAzureIdentityBinding(
                       parse(R"({"metadata":{"name":"b"},"spec":{"selector":["demo"]}})")),
                   "spec.selector");
  expectFieldError(
      decodeAzureIdentityBinding(parse(R"({"metadata":{"name":"b"},"spec":{"azureIdentity":1}})")),
      "spec.azureIdentity");
  expectFieldError(decodeAzureIdentityBinding(parse(R"({"spec":{}})")), "metadata.name");
}

TEST(DecodeAzurePodIdentityExceptionTest, DecodesDocsShape) {
  const auto exception = decodeAzurePodIdentityException(parse(R"({
    "kind": "AzurePodIdentityException",
    "metadata": {"name": "mic-exception", "namespace": "kube-system"},
    "spec": {"podLabels": {"app": "mic", "component": "mic"}}
  })"));
  ASSERT_TRUE(exception.has_value()) << exception.error().message;
  EXPECT_EQ(exception->ns, "kube-system");
  EXPECT_EQ(exception->name, "mic-exception");
  EXPECT_EQ(exception->pod_labels,
            (std::map<std::string, std::string>{{"app", "mic"}, {"component", "mic"}}));
}

TEST(DecodeAzurePodIdentityExceptionTest, WrongTypesNameTheField) {
  expectFieldError(decodeAzurePodIdentityException(
                       parse(R"({"metadata":{"name":"e"},"spec":{"podLabels":{"app":true}}})")),
                   "spec.podLabels[app]");
  expectFieldError(decodeAzurePodIdentityException(
                       parse(R"({"metadata":{"name":"e"},"spec":{"podLabels":"app=mic"}})")),
                   "spec.podLabels");
}

// ---- AzureAssignedIdentity -------------------------------------------------------------------

constexpr const char* kAssignedIdentity = R"({
  "apiVersion": "aadpodidentity.k8s.io/v1", "kind": "AzureAssignedIdentity",
  "metadata": {"name": "demo-pod-apps-demo-identity", "namespace": "default",
               "labels": {"nodename": "node-1"}},
  "spec": {
    "azureIdentityRef": {
      "apiVersion": "aadpodidentity.k8s.io/v1", "kind": "AzureIdentity",
      "metadata": {"name": "demo-identity", "namespace": "apps", "resourceVersion": "1234",
                   "annotations": {"aadpodidentity.k8s.io/Behavior": "namespaced"}},
      "spec": {"type": 0, "resourceID": "/subscriptions/s/rg/id", "clientID": "1111-client"},
      "status": {"availableReplicas": 0}
    },
    "azureBindingRef": {
      "metadata": {"name": "demo-binding", "namespace": "apps"},
      "spec": {"azureIdentity": "demo-identity", "selector": "demo"}
    },
    "pod": "demo-pod", "podNamespace": "apps", "nodename": "node-1", "replicas": 1
  },
  "status": {"availableReplicas": 1, "status": "Assigned"}
})";

TEST(DecodeAzureAssignedIdentityTest, DecodesMicShape) {
  const auto assigned = decodeAzureAssignedIdentity(parse(kAssignedIdentity));
  ASSERT_TRUE(assigned.has_value()) << assigned.error().message;
  EXPECT_EQ(assigned->ns, "default");
  EXPECT_EQ(assigned->name, "demo-pod-apps-demo-identity");
  EXPECT_EQ(assigned->pod, "demo-pod");
  EXPECT_EQ(assigned->pod_namespace, "apps");
  EXPECT_EQ(assigned->node_name, "node-1");
  EXPECT_EQ(assigned->state, identity::AssignedState::Assigned);
  EXPECT_EQ(assigned->identity.ns, "apps");  // the embedded identity's own namespace
  EXPECT_EQ(assigned->identity.name, "demo-identity");
  EXPECT_EQ(assigned->identity.client_id, "1111-client");
  EXPECT_TRUE(assigned->identity.namespaced);
  EXPECT_EQ(assigned->binding.name, "demo-binding");
  EXPECT_EQ(assigned->binding.selector, "demo");
}

TEST(DecodeAzureAssignedIdentityTest, MapsStatusToState) {
  struct StateCase {
    const char* status;  // nullptr: no status at all
    identity::AssignedState state;
  };
  const std::vector<StateCase> cases = {
      {nullptr, identity::AssignedState::Legacy},
      {"", identity::AssignedState::Legacy},
      {"Created", identity::AssignedState::Created},
      {"Assigned", identity::AssignedState::Assigned},
      {"Unassigned", identity::AssignedState::Unassigned},
      {"assigned", identity::AssignedState::Other},
      {"CREATED", identity::AssignedState::Other},
      {"Deleting", identity::AssignedState::Other},
  };
  for (const auto& c : cases) {
    json object = parse(kAssignedIdentity);
    if (c.status == nullptr) {
      object.erase("status");
    } else {
      object["status"]["status"] = c.status;
    }
    const auto assigned = decodeAzureAssignedIdentity(object);
    ASSERT_TRUE(assigned.has_value()) << assigned.error().message;
    EXPECT_EQ(assigned->state, c.state) << (c.status == nullptr ? "(absent)" : c.status);
  }
}

TEST(DecodeAzureAssignedIdentityTest, RequiresIdentityRef) {
  json object = parse(kAssignedIdentity);
  object["spec"].erase("azureIdentityRef");
  expectFieldError(decodeAzureAssignedIdentity(object), "spec.azureIdentityRef");
  object["spec"]["azureIdentityRef"] = nullptr;
  expectFieldError(decodeAzureAssignedIdentity(object), "spec.azureIdentityRef");
  object["spec"]["azureIdentityRef"] = "demo-identity";
  expectFieldError(decodeAzureAssignedIdentity(object), "spec.azureIdentityRef");
}

TEST(DecodeAzureAssignedIdentityTest, BindingRefIsOptional) {
  json object = parse(kAssignedIdentity);
  object["spec"].erase("azureBindingRef");
  const auto assigned = decodeAzureAssignedIdentity(object);
  ASSERT_TRUE(assigned.has_value()) << assigned.error().message;
  EXPECT_EQ(assigned->binding, identity::AzureIdentityBinding{});
}

TEST(DecodeAzureAssignedIdentityTest, EmbeddedErrorsNameTheFullPath) {
  json object = parse(kAssignedIdentity);
  object["spec"]["azureIdentityRef"]["spec"]["clientID"] = 5;
  expectFieldError(decodeAzureAssignedIdentity(object), "spec.azureIdentityRef.spec.clientID");
  json unnamed = parse(kAssignedIdentity);
  unnamed["spec"]["azureIdentityRef"]["metadata"].erase("name");
  expectFieldError(decodeAzureAssignedIdentity(unnamed), "spec.azureIdentityRef.metadata.name");
  json bad_binding = parse(kAssignedIdentity);
  bad_binding["spec"]["azureBindingRef"]["spec"]["selector"] = 1;
  expectFieldError(decodeAzureAssignedIdentity(bad_binding), "spec.azureBindingRef.spec.selector");
}

TEST(DecodeAzureAssignedIdentityTest, WrongTypesNameTheField) {
  struct SpecCase {
    const char* path;
    json value;
  };
  const std::vector<SpecCase> cases = {
      {"pod", 1}, {"podNamespace", json::array()}, {"nodename", true}};
  for (const auto& c : cases) {
    json object = parse(kAssignedIdentity);
    object["spec"][c.path] = c.value;
    expectFieldError(decodeAzureAssignedIdentity(object), std::string("spec.") + c.path);
  }
  json status = parse(kAssignedIdentity);
  status["status"]["status"] = 2;
  expectFieldError(decodeAzureAssignedIdentity(status), "status.status");
}

// ---- Secret ----------------------------------------------------------------------------------

TEST(DecodeSecretTest, DecodesBase64DataAndPlainStringData) {
  const auto secret = decodeSecret(parse(R"({
    "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
    "metadata": {"name": "sp-secret", "namespace": "default"},
    "data": {"clientSecret": "c2VjcmV0LXZhbHVl", "both": "ZnJvbS1kYXRh"},
    "stringData": {"password": "plain", "both": "from-stringData"}
  })"));
  ASSERT_TRUE(secret.has_value()) << secret.error().message;
  EXPECT_EQ(secret->data, (std::map<std::string, std::string>{{"clientSecret", "secret-value"},
                                                              {"password", "plain"},
                                                              {"both", "from-stringData"}}));
}

TEST(DecodeSecretTest, IgnoresLineBreaksInBase64) {
  const auto secret =
      decodeSecret(parse(R"({"metadata":{"name":"s"},"data":{"k":"c2Vj\ncmV0\r\n"}})"));
  ASSERT_TRUE(secret.has_value()) << secret.error().message;
  EXPECT_EQ(secret->data.at("k"), "secret");
}

TEST(DecodeSecretTest, DecodesBinaryValues) {
  const auto secret =
      decodeSecret(parse(R"({"metadata":{"name":"s"},"data":{"certificate":"AAEC/w=="}})"));
  ASSERT_TRUE(secret.has_value()) << secret.error().message;
  EXPECT_EQ(secret->data.at("certificate"), std::string("\x00\x01\x02\xff", 4));
}

TEST(DecodeSecretTest, RejectsBadBase64WithoutQuotingIt) {
  const auto secret = decodeSecret(parse(R"({"metadata":{"name":"s"},"data":{"k":"hunter2!!"}})"));
  expectFieldError(secret, "data[k]");
  EXPECT_EQ(secret.error().message.find("hunter2"), std::string::npos) << secret.error().message;
}

TEST(DecodeSecretTest, WrongTypesNameTheField) {
  expectFieldError(decodeSecret(parse(R"({"metadata":{"name":"s"},"data":{"k":1}})")), "data[k]");
  expectFieldError(decodeSecret(parse(R"({"metadata":{"name":"s"},"data":["k"]})")), "data");
  expectFieldError(decodeSecret(parse(R"({"metadata":{"name":"s"},"stringData":{"k":{}}})")),
                   "stringData[k]");
  expectFieldError(decodeSecret(parse(R"({"data":{}})")), "metadata.name");
}

TEST(DecodeSecretTest, AcceptsValuesLongerThanOrdinaryStrings) {
  json object = parse(R"({"metadata":{"name":"s"}})");
  object["stringData"]["certificate"] = std::string(std::size_t{64} * 1024, 'c');
  const auto secret = decodeSecret(object);
  ASSERT_TRUE(secret.has_value()) << secret.error().message;
  EXPECT_EQ(secret->data.at("certificate").size(), std::size_t{64} * 1024);
  object["stringData"]["certificate"] = std::string(kMaxSecretValueBytes + 1, 'c');
  expectFieldError(decodeSecret(object), "stringData[certificate]");
}

TEST(DecodeSecretTest, RejectsTooManyKeys) {
  json object = parse(R"({"metadata":{"name":"s"}})");
  for (std::size_t i = 0; i <= kMaxSecretKeys; ++i) {
    object["stringData"]["k" + std::to_string(i)] = "v";
  }
  expectFieldError(decodeSecret(object), "stringData");
}

TEST(DecodeObjectMetaTest, ReadsNamespaceAndName) {
  const auto meta = decodeObjectMeta(parse(R"({"metadata":{"name":"n","namespace":"ns"}})"));
  ASSERT_TRUE(meta.has_value());
  EXPECT_EQ(*meta, (ObjectMeta{"ns", "n"}));
  expectFieldError(decodeObjectMeta(parse(R"({"metadata":{"namespace":"ns"}})")), "metadata.name");
}

}  // namespace
}  // namespace nmi::kube
