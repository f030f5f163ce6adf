#pragma once

#include <cstddef>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "identity/pod_match.h"
#include "identity/types.h"
#include "kube/store.h"

namespace nmi::kube {

// This node's pods, by namespace/name and by IP. Every address in status.podIPs (or
// status.podIP) of a pod that is not on the host network is indexed, whatever the pod's phase;
// the resolver (identity::matchPodByIp) decides which candidates count. A deleted pod leaves the
// IP index at once; a pod whose IPs change moves. Pods of other nodes are ignored (the field
// selector already excludes them).
//
// Per address, the cache also remembers which pods being deleted lost it to another live pod
// (identity::podsLosingIp), from the change that showed both until the losing pod stops
// reporting the address (it leaves the cache, or its IPs change): the other pod going away again
// does not give the address back. Memory is bounded by the pods held (one entry per pod and
// address at most). Only what the watch delivered is known: a pod that came and went while nmi
// was not watching, or before nmi started, left no trace.
//
// Thread-safe. Changes (apply, commitReplace) and ipClaims() are ordered by one lock, so
// ipClaims() reads pods and losses of the same moment.
class PodCache final : public KindStore<identity::PodInfo> {
 public:
  // node_name empty: keep pods of every node.
  explicit PodCache(std::string node_name);

  void commitReplace() override;
  Result<void> apply(EventType type, const nlohmann::json& object) override;

  // The pods currently reporting `ip` (a normalised address), ordered by namespace/name.
  std::vector<identity::PodInfo> podsByIp(std::string_view ip) const;
  // podsByIp(ip) and the losses remembered for `ip`.
  identity::IpClaims ipClaims(std::string_view ip) const;
  std::optional<identity::PodInfo> podByName(std::string_view ns, std::string_view name) const;

  // Remembered (address, pod) losses, for tests of the bound.
  std::size_t lossesForTest() const;

 private:
  // Recomputes what the addresses remember after a change. Caller holds mu_ exclusively.
  void rememberLocked(const std::vector<std::string>& ips);

  mutable std::shared_mutex mu_;
  // address → podClaimKey() of the pods that lost it
  std::unordered_map<std::string, std::set<std::string>> lost_;
};

}  // namespace nmi::kube
