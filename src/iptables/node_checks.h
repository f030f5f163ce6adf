#pragma once

// What nmi reads about its node, never writes: route_localnet and the kubelet's network plugin.

#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"

namespace nmi::iptables {

inline constexpr std::string_view kRouteLocalnetPath = "/proc/sys/net/ipv4/conf/all/route_localnet";

// The original's refusal, word for word.
inline constexpr std::string_view kKubenetRefusal =
    "AAD Pod Identity is not supported for Kubenet. Review "
    "https://azure.github.io/aad-pod-identity/docs/configure/aad_pod_identity_on_kubenet/ for more "
    "details.";

// Pure. Why DNAT to `target_ip` cannot work, or "" when it can: a target in 127.0.0.0/8 needs
// net.ipv4.conf.all.route_localnet=1. `route_localnet` is the file's content, or the error reading
// it.
std::string routeLocalnetProblem(std::string_view target_ip,
                                 const Result<std::string>& route_localnet);

// Pure. Whether the kubelet configuration text selects kubenet (the original's substring test for
// `--network-plugin=kubenet`).
bool selectsKubenet(std::string_view kubelet_config);

}  // namespace nmi::iptables
