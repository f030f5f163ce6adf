#include "iptables/rules.h"

#include <gtest/gtest.h>

#include "tests/fakes/iptables_samples.h"

namespace nmi::iptables {
namespace {

using testing::sampleTable;
using testing::tableOf;

InterceptionSpec nodeSpec() {
  InterceptionSpec spec;
  spec.target_ip = "10.244.0.1";
  return spec;
}

TEST(DesiredRulesTest, DefaultFlags) {
  const InterceptionSpec spec;
  const DesiredTable nat = desiredNat(spec);
  EXPECT_EQ(nat.table, "nat");
  EXPECT_EQ(nat.chain, "NMI-METADATA");
  EXPECT_EQ(nat.hook, "PREROUTING");
  EXPECT_EQ(nat.jumpSpec(), "-j NMI-METADATA");
  ASSERT_EQ(nat.rules.size(), 2U);
  EXPECT_EQ(nat.rules[0],
            "! -s 127.0.0.1/32 -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j DNAT "
            "--to-destination 127.0.0.1:2579");
  EXPECT_EQ(nat.rules[1], "-j RETURN");
  const DesiredTable filter = desiredFilter(spec);
  EXPECT_EQ(filter.table, "filter");
  EXPECT_EQ(filter.chain, "NMI-METADATA-GUARD");
  EXPECT_EQ(filter.hook, "FORWARD");
  ASSERT_EQ(filter.rules.size(), 1U);
  EXPECT_EQ(filter.rules[0],
            "-d 169.254.169.254/32 -p tcp -m tcp --dport 80 -m conntrack ! --ctstate DNAT -j "
            "REJECT --reject-with tcp-reset");
}

TEST(DesiredRulesTest, OtherAddressesAndPorts) {
  EXPECT_EQ(dnatTargetFor("0.0.0.0"), "127.0.0.1");
  EXPECT_EQ(dnatTargetFor("127.0.0.1"), "127.0.0.1");
  EXPECT_EQ(dnatTargetFor("10.244.0.1"), "10.244.0.1");
  InterceptionSpec spec;
  spec.metadata_ip = "169.254.1.2";
  spec.metadata_port = 8080;
  spec.target_ip = dnatTargetFor("10.0.0.4");
  spec.target_port = 3000;
  EXPECT_EQ(desiredNat(spec).rules[0],
            "! -s 127.0.0.1/32 -d 169.254.1.2/32 -p tcp -m tcp --dport 8080 -j DNAT "
            "--to-destination 10.0.0.4:3000");
  EXPECT_EQ(desiredFilter(spec).rules[0],
            "-d 169.254.1.2/32 -p tcp -m tcp --dport 8080 -m conntrack ! --ctstate DNAT -j "
            "REJECT --reject-with tcp-reset");
}

TEST(PlanTest, NothingToDoWhenTheRulesAreInPlaceOnEitherBackend) {
  for (const char* backend : {"nft", "legacy"}) {
    SCOPED_TRACE(backend);
    const SavedTable nat = sampleTable(std::string(backend) + "_kube_nat.txt", "nat");
    const SavedTable filter = sampleTable(std::string(backend) + "_kube_filter.txt", "filter");
    // The jump sits behind KUBE-SERVICES, which cannot touch metadata traffic: left there.
    const Plan plan = planReconcile(&nat, &filter, nodeSpec());
    EXPECT_TRUE(plan.empty()) << describe(plan);
    EXPECT_EQ(restoreText(desiredNat(nodeSpec()), plan.nat), "");
  }
}

TEST(PlanTest, InstallsIntoEmptyTables) {
  for (const char* backend : {"nft", "legacy"}) {
    SCOPED_TRACE(backend);
    const SavedTable nat = sampleTable(std::string(backend) + "_empty_nat.txt", "nat");
    const SavedTable filter = sampleTable(std::string(backend) + "_empty_filter.txt", "filter");
    const Plan plan = planReconcile(&nat, &filter, InterceptionSpec{});
    EXPECT_EQ(restoreText(desiredNat(InterceptionSpec{}), plan.nat),
              "*nat\n"
              ":NMI-METADATA - [0:0]\n"
              "-A NMI-METADATA ! -s 127.0.0.1/32 -d 169.254.169.254/32 -p tcp -m tcp --dport 80 "
              "-j DNAT --to-destination 127.0.0.1:2579\n"
              "-A NMI-METADATA -j RETURN\n"
              "-I PREROUTING 1 -j NMI-METADATA\n"
              "COMMIT\n");
    EXPECT_EQ(restoreText(desiredFilter(InterceptionSpec{}), plan.filter),
              "*filter\n"
              ":NMI-METADATA-GUARD - [0:0]\n"
              "-A NMI-METADATA-GUARD -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -m conntrack "
              "! --ctstate DNAT -j REJECT --reject-with tcp-reset\n"
              "-I FORWARD 1 -j NMI-METADATA-GUARD\n"
              "COMMIT\n");
    EXPECT_EQ(describe(plan),
              "nat: chain NMI-METADATA missing; nat: jump from PREROUTING missing; filter: chain "
              "NMI-METADATA-GUARD missing; filter: jump from FORWARD missing");
  }
  // Tables absent from the save output altogether.
  const Plan absent = planReconcile(nullptr, nullptr, InterceptionSpec{});
  EXPECT_TRUE(absent.nat.refill_chain);
  EXPECT_EQ(absent.nat.insert_jump_at, 1);
  EXPECT_TRUE(absent.filter.refill_chain);
  EXPECT_EQ(absent.filter.insert_jump_at, 1);
}

TEST(PlanTest, RefillsAFlushedChainAndKeepsItsJump) {
  for (const char* backend : {"nft", "legacy"}) {
    SCOPED_TRACE(backend);
    const SavedTable nat = sampleTable(std::string(backend) + "_flushed_nat.txt", "nat");
    const TablePlan plan = planTable(&nat, desiredNat(nodeSpec()), nodeSpec());
    EXPECT_EQ(restoreText(desiredNat(nodeSpec()), plan),
              "*nat\n"
              ":NMI-METADATA - [0:0]\n"
              "-A NMI-METADATA ! -s 127.0.0.1/32 -d 169.254.169.254/32 -p tcp -m tcp --dport 80 "
              "-j DNAT --to-destination 10.244.0.1:2579\n"
              "-A NMI-METADATA -j RETURN\n"
              "COMMIT\n");
    EXPECT_EQ(plan.why.at(0), "chain NMI-METADATA has 0 rules instead of 2");
  }
}

std::string natWith(const std::string& prerouting, const std::string& chain) {
  return "*nat\n:PREROUTING ACCEPT [0:0]\n:NMI-METADATA - [0:0]\n" + prerouting + chain +
         "COMMIT\n";
}

constexpr const char* kOurChain =
    "-A NMI-METADATA ! -s 127.0.0.1/32 -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j DNAT "
    "--to-destination 127.0.0.1:2579\n-A NMI-METADATA -j RETURN\n";

TEST(PlanTest, RefillsAnEditedOrExtendedChain) {
  const InterceptionSpec spec;
  const std::string jump = "-A PREROUTING -j NMI-METADATA\n";
  const SavedTable edited = tableOf(natWith(
      jump,
      "-A NMI-METADATA ! -s 127.0.0.1/32 -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j DNAT "
      "--to-destination 10.9.9.9:2579\n-A NMI-METADATA -j RETURN\n"));
  TablePlan plan = planTable(&edited, desiredNat(spec), spec);
  EXPECT_TRUE(plan.refill_chain);
  EXPECT_EQ(plan.insert_jump_at, 0);
  EXPECT_NE(plan.why.at(0).find("rule 1 is `! -s 127.0.0.1/32"), std::string::npos);
  const SavedTable extra =
      tableOf(natWith(jump, std::string("-A NMI-METADATA -j ACCEPT\n") + kOurChain));
  EXPECT_TRUE(planTable(&extra, desiredNat(spec), spec).refill_chain);
  const SavedTable appended =
      tableOf(natWith(jump, std::string(kOurChain) + "-A NMI-METADATA -j ACCEPT\n"));
  EXPECT_TRUE(planTable(&appended, desiredNat(spec), spec).refill_chain);
  const SavedTable fine = tableOf(natWith(jump, kOurChain));
  EXPECT_TRUE(planTable(&fine, desiredNat(spec), spec).empty());
}

TEST(PlanTest, AddsAMissingJump) {
  const InterceptionSpec spec;
  const SavedTable nat = tableOf(natWith("-A PREROUTING -p udp -j ACCEPT\n", kOurChain));
  const TablePlan plan = planTable(&nat, desiredNat(spec), spec);
  EXPECT_FALSE(plan.refill_chain);
  EXPECT_EQ(plan.delete_jumps, 0);
  EXPECT_EQ(restoreText(desiredNat(spec), plan), "*nat\n-I PREROUTING 1 -j NMI-METADATA\nCOMMIT\n");
}

TEST(PlanTest, MovesTheJumpOnlyFromBehindADangerousRule) {
  const InterceptionSpec spec;
  const SavedTable dangerous = tableOf(natWith(
      "-A PREROUTING -s 10.244.0.0/16 -j ACCEPT\n-A PREROUTING -j NMI-METADATA\n", kOurChain));
  TablePlan plan = planTable(&dangerous, desiredNat(spec), spec);
  EXPECT_EQ(restoreText(desiredNat(spec), plan),
            "*nat\n-D PREROUTING -j NMI-METADATA\n-I PREROUTING 1 -j NMI-METADATA\nCOMMIT\n");
  EXPECT_EQ(plan.why.at(0),
            "jump from PREROUTING at position 2 is behind `-s 10.244.0.0/16 -j ACCEPT`");

  const SavedTable harmless = tableOf(natWith(
      "-A PREROUTING -p udp -j ACCEPT\n:CNI - [0:0]\n-A PREROUTING -j CNI\n"
      "-A PREROUTING -j NMI-METADATA\n-A CNI -d 10.96.0.0/12 -j DNAT --to-destination 1.1.1.1\n",
      kOurChain));
  EXPECT_TRUE(planTable(&harmless, desiredNat(spec), spec).empty());
}

TEST(PlanTest, CollapsesDuplicateJumpsWhereTheFirstWas) {
  const InterceptionSpec spec;
  const SavedTable nat =
      tableOf(natWith("-A PREROUTING -p udp -j ACCEPT\n-A PREROUTING -j NMI-METADATA\n"
                      "-A PREROUTING -j MARK --set-xmark 0x1/0x1\n-A PREROUTING -j NMI-METADATA\n",
                      kOurChain));
  const TablePlan plan = planTable(&nat, desiredNat(spec), spec);
  EXPECT_EQ(restoreText(desiredNat(spec), plan),
            "*nat\n-D PREROUTING -j NMI-METADATA\n-D PREROUTING -j NMI-METADATA\n"
            "-I PREROUTING 2 -j NMI-METADATA\nCOMMIT\n");
}

TEST(CleanupTextTest, RemovesOurChainsAndEveryRuleThatJumpsThere) {
  for (const char* backend : {"nft", "legacy"}) {
    SCOPED_TRACE(backend);
    EXPECT_EQ(cleanupText(sampleTable(std::string(backend) + "_kube_nat.txt", "nat"), kNatChain),
              "*nat\n-D PREROUTING -j NMI-METADATA\n-F NMI-METADATA\n-X NMI-METADATA\nCOMMIT\n");
    EXPECT_EQ(
        cleanupText(sampleTable(std::string(backend) + "_kube_filter.txt", "filter"), kGuardChain),
        "*filter\n-D FORWARD -j NMI-METADATA-GUARD\n-F NMI-METADATA-GUARD\n"
        "-X NMI-METADATA-GUARD\nCOMMIT\n");
    // aad-pod-identity's chain is not ours.
    EXPECT_EQ(cleanupText(sampleTable(std::string(backend) + "_empty_nat.txt", "nat"), kNatChain),
              "");
  }
  const SavedTable foreign = tableOf(natWith(
      "-A PREROUTING -i eth0 -m comment --comment \"a \\\"b\\\"\" -g NMI-METADATA\n"
      "-A PREROUTING -j NMI-METADATA\n-A PREROUTING -m comment --comment NMI-METADATA -j X\n",
      kOurChain));
  EXPECT_EQ(cleanupText(foreign, kNatChain),
            "*nat\n-D PREROUTING -i eth0 -m comment --comment \"a \\\"b\\\"\" -g NMI-METADATA\n"
            "-D PREROUTING -j NMI-METADATA\n-F NMI-METADATA\n-X NMI-METADATA\nCOMMIT\n");
  // Only a dangling jump left (the chain itself gone): the jump still goes.
  EXPECT_EQ(cleanupText(tableOf("*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j NMI-METADATA\n"
                                "COMMIT\n"),
                        kNatChain),
            "*nat\n-D PREROUTING -j NMI-METADATA\nCOMMIT\n");
}

}  // namespace
}  // namespace nmi::iptables
