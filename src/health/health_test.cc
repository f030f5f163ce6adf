#include "health/health.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace nmi::health {
namespace {

TEST(ReadinessTest, ChecksFailAndDetailsOnlyShow) {
  Readiness readiness;
  std::string identity = "waiting for the initial list of pods";
  std::string stale;
  readiness.add("identity", [&identity] { return identity; });
  readiness.addDetail("identity-cache", [&stale] { return stale; });
  EXPECT_EQ(readiness.failures(),
            (std::vector<std::string>{"identity: waiting for the initial list of pods"}));
  EXPECT_TRUE(readiness.details().empty());
  identity.clear();
  stale = "pods: in backoff";
  EXPECT_TRUE(readiness.failures().empty());
  EXPECT_EQ(readiness.details(), (std::vector<std::string>{"identity-cache: pods: in backoff"}));
}

TEST(ReadyzBodyTest, FailuresThenWarnings) {
  EXPECT_EQ(readyzBody({}, {}), "ok\n");
  EXPECT_EQ(readyzBody({}, {"uninstall: daemonset kube-system/nmi not found"}),
            "ok\nwarning: uninstall: daemonset kube-system/nmi not found\n");
  EXPECT_EQ(
      readyzBody({"interception: iptables rules not checked yet"}, {"identity-cache: x"}),
      "not ready\ninterception: iptables rules not checked yet\nwarning: identity-cache: x\n");
}

}  // namespace
}  // namespace nmi::health
