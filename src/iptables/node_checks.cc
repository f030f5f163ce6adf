#include "iptables/node_checks.h"

#include <cerrno>
#include <fstream>
#include <system_error>

namespace nmi::iptables {

std::string routeLocalnetProblem(std::string_view target_ip,
                                 const Result<std::string>& route_localnet) {
  if (target_ip.rfind("127.", 0) != 0) {
    return "";
  }
  if (!route_localnet) {
    return route_localnet.error().message +
           "; DNAT to 127.0.0.1 needs net.ipv4.conf.all.route_localnet=1";
  }
  std::string_view value = *route_localnet;
  while (!value.empty() && (value.back() == '\n' || value.back() == ' ')) {
    value.remove_suffix(1);
  }
  if (value != "0") {
    return "";
  }
  return "route_localnet=0: DNAT to " + std::string(target_ip) +
         " cannot work; set net.ipv4.conf.all.route_localnet=1 (kube-proxy does) or run with "
         "--nmi-listen-address=<node IP>";
}

bool selectsKubenet(std::string_view kubelet_config) {
  return kubelet_config.find("--network-plugin=kubenet") != std::string_view::npos;
}

}  // namespace nmi::iptables
