#include "kube/pod_cache.h"

#include <utility>

#include "identity/decode.h"

namespace nmi::kube {

namespace {

constexpr std::size_t kByIp = 0;

KindStore<identity::PodInfo>::Traits podTraits(std::string node_name) {
  KindStore<identity::PodInfo>::Traits traits;
  traits.decode = [](const nlohmann::json& object) { return identity::decodePod(object); };
  traits.key = [](const identity::PodInfo& pod) { return objectKey(pod.ns, pod.name); };
  if (!node_name.empty()) {
    traits.keep = [node = std::move(node_name)](const identity::PodInfo& pod) {
      return pod.node_name == node;
    };
  }
  // hostNetwork pods share the node's address: never found by IP.
  traits.indexes.emplace_back([](const identity::PodInfo& pod) {
    return pod.host_network ? std::vector<std::string>{} : pod.ips;
  });
  return traits;
}

}  // namespace

PodCache::PodCache(std::string node_name) : KindStore(podTraits(std::move(node_name))) {}

std::vector<identity::PodInfo> PodCache::podsByIp(std::string_view ip) const {
  return store().byIndex(kByIp, ip);
}

std::optional<identity::PodInfo> PodCache::podByName(std::string_view ns,
                                                     std::string_view name) const {
  return store().get(objectKey(ns, name));
}

}  // namespace nmi::kube
