#include "iptables/node_checks.h"

#include <gtest/gtest.h>

namespace nmi::iptables {
namespace {

TEST(RouteLocalnetTest, OnlyLoopbackTargetsNeedIt) {
  const Result<std::string> off = std::string("0\n");
  const Result<std::string> on = std::string("1\n");
  EXPECT_EQ(routeLocalnetProblem("127.0.0.1", on), "");
  EXPECT_EQ(routeLocalnetProblem("10.244.0.1", off), "");
  EXPECT_EQ(routeLocalnetProblem("127.0.0.1", off),
            "route_localnet=0: DNAT to 127.0.0.1 cannot work; set "
            "net.ipv4.conf.all.route_localnet=1 (kube-proxy does) or run with "
            "--nmi-listen-address=<node IP>");
  const Result<std::string> unreadable = makeError(ErrorCode::NotFound, "cannot read /x: gone");
  EXPECT_EQ(routeLocalnetProblem("127.0.0.1", unreadable),
            "cannot read /x: gone; DNAT to 127.0.0.1 needs net.ipv4.conf.all.route_localnet=1");
  EXPECT_EQ(routeLocalnetProblem("10.0.0.4", unreadable), "");
}

TEST(KubenetTest, TheOriginalsSubstringTest) {
  EXPECT_TRUE(selectsKubenet("KUBELET_FLAGS=--address=0.0.0.0 --network-plugin=kubenet --x"));
  EXPECT_FALSE(selectsKubenet("KUBELET_FLAGS=--network-plugin=cni"));
  EXPECT_FALSE(selectsKubenet(""));
}

}  // namespace
}  // namespace nmi::iptables
