#include "kube/pod_cache.h"

#include <algorithm>
#include <mutex>
#include <utility>

#include "kube/decode.h"

namespace nmi::kube {

namespace {

constexpr std::size_t kByIp = 0;

KindStore<identity::PodInfo>::Traits podTraits(std::string node_name) {
  KindStore<identity::PodInfo>::Traits traits;
  traits.decode = [](const nlohmann::json& object) { return decodePod(object); };
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

// The addresses a pod is indexed under (none on the host network).
std::vector<std::string> indexedIps(const identity::PodInfo& pod) {
  return pod.host_network ? std::vector<std::string>{} : pod.ips;
}

}  // namespace

PodCache::PodCache(std::string node_name) : KindStore(podTraits(std::move(node_name))) {}

Result<void> PodCache::apply(EventType type, const nlohmann::json& object) {
  const std::unique_lock lock(mu_);
  // The addresses the pod had before the change and has after it: both may change what they
  // remember.
  std::vector<std::string> ips;
  std::string key;
  if (auto meta = decodeObjectMeta(object)) {
    key = objectKey(meta->ns, meta->name);
    if (const auto before = store().get(key)) {
      ips = indexedIps(*before);
    }
  }
  auto applied = KindStore::apply(type, object);
  if (const auto after = key.empty() ? std::nullopt : store().get(key)) {
    const auto after_ips = indexedIps(*after);
    ips.insert(ips.end(), after_ips.begin(), after_ips.end());
  }
  rememberLocked(ips);
  return applied;
}

void PodCache::commitReplace() {
  const std::unique_lock lock(mu_);
  KindStore::commitReplace();
  // A relist may show new claimants, and pods that left while the watch was down.
  std::vector<std::string> ips;
  ips.reserve(lost_.size());
  for (const auto& [ip, keys] : lost_) {
    ips.push_back(ip);
  }
  for (const auto& pod : store().all()) {
    const auto pod_ips = indexedIps(pod);
    ips.insert(ips.end(), pod_ips.begin(), pod_ips.end());
  }
  rememberLocked(ips);
}

void PodCache::rememberLocked(const std::vector<std::string>& ips) {
  std::set<std::string> unique(ips.begin(), ips.end());
  for (const auto& ip : unique) {
    const auto pods = store().byIndex(kByIp, ip);
    auto it = lost_.find(ip);
    if (it != lost_.end()) {
      // Forget pods that no longer report the address.
      std::erase_if(it->second, [&pods](const std::string& lost_key) {
        return std::none_of(pods.begin(), pods.end(), [&](const identity::PodInfo& pod) {
          return identity::podClaimKey(pod) == lost_key;
        });
      });
    }
    for (auto& losing : identity::podsLosingIp(pods)) {
      if (it == lost_.end()) {
        it = lost_.try_emplace(ip).first;
      }
      it->second.insert(std::move(losing));
    }
    if (it != lost_.end() && it->second.empty()) {
      lost_.erase(it);
    }
  }
}

std::vector<identity::PodInfo> PodCache::podsByIp(std::string_view ip) const {
  return store().byIndex(kByIp, ip);
}

identity::IpClaims PodCache::ipClaims(std::string_view ip) const {
  const std::shared_lock lock(mu_);
  identity::IpClaims claims;
  claims.pods = store().byIndex(kByIp, ip);
  if (const auto it = lost_.find(std::string(ip)); it != lost_.end()) {
    claims.lost.assign(it->second.begin(), it->second.end());
  }
  return claims;
}

std::optional<identity::PodInfo> PodCache::podByName(std::string_view ns,
                                                     std::string_view name) const {
  return store().get(objectKey(ns, name));
}

std::size_t PodCache::lossesForTest() const {
  const std::shared_lock lock(mu_);
  std::size_t n = 0;
  for (const auto& [ip, keys] : lost_) {
    n += keys.size();
  }
  return n;
}

}  // namespace nmi::kube
