#include "kube/crd_cache.h"

#include "kube/decode.h"

namespace nmi::kube {

namespace {

template <class T>
std::string keyOf(const T& object) {
  return objectKey(object.ns, object.name);
}

KindStore<identity::AzureAssignedIdentity>::Traits assignedTraits() {
  KindStore<identity::AzureAssignedIdentity>::Traits traits;
  traits.decode = [](const nlohmann::json& object) { return decodeAzureAssignedIdentity(object); };
  traits.key = keyOf<identity::AzureAssignedIdentity>;
  traits.indexes.emplace_back([](const identity::AzureAssignedIdentity& assigned) {
    return std::vector<std::string>{objectKey(assigned.pod_namespace, assigned.pod)};
  });
  return traits;
}

KindStore<identity::AzureIdentityBinding>::Traits bindingTraits() {
  KindStore<identity::AzureIdentityBinding>::Traits traits;
  traits.decode = [](const nlohmann::json& object) { return decodeAzureIdentityBinding(object); };
  traits.key = keyOf<identity::AzureIdentityBinding>;
  traits.indexes.emplace_back([](const identity::AzureIdentityBinding& binding) {
    return std::vector<std::string>{binding.selector};
  });
  return traits;
}

KindStore<identity::AzureIdentity>::Traits identityTraits() {
  KindStore<identity::AzureIdentity>::Traits traits;
  traits.decode = [](const nlohmann::json& object) { return decodeAzureIdentity(object); };
  traits.key = keyOf<identity::AzureIdentity>;
  return traits;
}

KindStore<identity::AzurePodIdentityException>::Traits exceptionTraits() {
  KindStore<identity::AzurePodIdentityException>::Traits traits;
  traits.decode = [](const nlohmann::json& object) {
    return decodeAzurePodIdentityException(object);
  };
  traits.key = keyOf<identity::AzurePodIdentityException>;
  traits.indexes.emplace_back([](const identity::AzurePodIdentityException& exception) {
    return std::vector<std::string>{exception.ns};
  });
  return traits;
}

}  // namespace

AssignedIdentityCache::AssignedIdentityCache() : KindStore(assignedTraits()) {}

std::vector<identity::AzureAssignedIdentity> AssignedIdentityCache::byPod(
    std::string_view pod_ns, std::string_view pod_name) const {
  return store().byIndex(0, objectKey(pod_ns, pod_name));
}

BindingCache::BindingCache() : KindStore(bindingTraits()) {}

std::vector<identity::AzureIdentityBinding> BindingCache::bySelector(
    std::string_view selector) const {
  return store().byIndex(0, selector);
}

AzureIdentityCache::AzureIdentityCache() : KindStore(identityTraits()) {}

std::optional<identity::AzureIdentity> AzureIdentityCache::get(std::string_view ns,
                                                               std::string_view name) const {
  return store().get(objectKey(ns, name));
}

ExceptionCache::ExceptionCache() : KindStore(exceptionTraits()) {}

std::vector<identity::AzurePodIdentityException> ExceptionCache::byNamespace(
    std::string_view ns) const {
  return store().byIndex(0, ns);
}

}  // namespace nmi::kube
