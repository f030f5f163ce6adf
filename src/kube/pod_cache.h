#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "identity/types.h"
#include "kube/store.h"

namespace nmi::kube {

// This node's pods, by namespace/name and by IP. Every address in status.podIPs (or
// status.podIP) of a pod that is not on the host network is indexed, whatever the pod's phase;
// the resolver (identity::matchPodByIp) decides which candidates count. A deleted pod leaves the
// IP index at once; a pod whose IPs change moves. Pods of other nodes are ignored (the field
// selector already excludes them). Thread-safe.
class PodCache final : public KindStore<identity::PodInfo> {
 public:
  // node_name empty: keep pods of every node.
  explicit PodCache(std::string node_name);

  // The pods currently reporting `ip` (a normalised address), ordered by namespace/name.
  std::vector<identity::PodInfo> podsByIp(std::string_view ip) const;
  std::optional<identity::PodInfo> podByName(std::string_view ns, std::string_view name) const;
};

}  // namespace nmi::kube
