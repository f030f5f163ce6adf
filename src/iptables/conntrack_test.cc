#include "iptables/conntrack.h"

#include <gtest/gtest.h>

#include "tests/fakes/fake_command_runner.h"

namespace nmi::iptables {
namespace {

TEST(ConntrackTest, DeletesTcpEntriesToTheMetadataAddress) {
  const Command c = conntrackDeleteCommand("169.254.169.254", 80, std::chrono::seconds(3));
  EXPECT_EQ(c.argv, (std::vector<std::string>{"conntrack", "-D", "-p", "tcp", "--orig-dst",
                                              "169.254.169.254", "--orig-port-dst", "80",
                                              "--reply-src", "169.254.169.254"}));
  EXPECT_EQ(c.timeout, std::chrono::seconds(3));
}

TEST(ConntrackTest, ReadsTheCountFromBothSuccessShapes) {
  // What conntrack 1.4.7 prints: entries on stdout, the count on stderr; exit 1 when none.
  EXPECT_EQ(*parseConntrackDelete(
                {0, "tcp      6 431999 ESTABLISHED src=10.244.0.11 dst=169.254.169.254 ...\n",
                 "conntrack v1.4.7 (conntrack-tools): 2 flow entries have been deleted.\n"}),
            2);
  EXPECT_EQ(*parseConntrackDelete(
                {1, "", "conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.\n"}),
            0);
}

TEST(ConntrackTest, AnythingElseIsAnError) {
  auto denied = parseConntrackDelete(
      {1, "", "conntrack v1.4.7 (conntrack-tools): Operation failed: Operation not permitted\n"});
  ASSERT_FALSE(denied.has_value());
  EXPECT_EQ(denied.error().message,
            "conntrack -D exited 1: conntrack v1.4.7 (conntrack-tools): Operation failed: "
            "Operation not permitted");
  EXPECT_FALSE(parseConntrackDelete({2, "", "5 flow entries have been deleted."}).has_value());
  EXPECT_FALSE(parseConntrackDelete({0, "", ""}).has_value());
}

TEST(ConntrackTest, RunsThroughTheRunner) {
  nmi::testing::FakeCommandRunner runner;
  EXPECT_EQ(deleteMetadataConnections(runner, "169.254.169.254", 80, std::chrono::seconds(1))
                .error()
                .code,
            ErrorCode::NotFound);
  runner.succeed("conntrack", "", 0,
                 "conntrack v1.4.7 (conntrack-tools): 3 flow entries have "
                 "been deleted.\n");
  EXPECT_EQ(*deleteMetadataConnections(runner, "169.254.169.254", 80, std::chrono::seconds(1)), 3);
}

}  // namespace
}  // namespace nmi::iptables
