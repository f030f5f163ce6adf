#include "iptables/capture.h"

#include <gtest/gtest.h>

#include "tests/fakes/iptables_samples.h"

namespace nmi::iptables {
namespace {

using testing::sampleTable;
using testing::tableOf;

const Destination kImds{0xa9fea9feU, 80};  // 169.254.169.254:80

SavedRule rule(const std::string& spec) {
  auto table = tableOf("*nat\n-A X " + spec + "\nCOMMIT\n");
  return table.chains.at(0).rules.at(0);
}

bool couldMatch(const std::string& spec) {
  return ruleCouldMatch(rule(spec), kImds);
}

TEST(ParseIpv4Test, DottedQuadsOnly) {
  EXPECT_EQ(parseIpv4("169.254.169.254"), 0xa9fea9feU);
  EXPECT_EQ(parseIpv4("0.0.0.0"), 0U);
  EXPECT_FALSE(parseIpv4("1.2.3").has_value());
  EXPECT_FALSE(parseIpv4("1.2.3.4.5").has_value());
  EXPECT_FALSE(parseIpv4("1.2.3.256").has_value());
  EXPECT_FALSE(parseIpv4("1.2..4").has_value());
  EXPECT_FALSE(parseIpv4("a.b.c.d").has_value());
}

TEST(RuleCouldMatchTest, DestinationAddress) {
  EXPECT_TRUE(couldMatch("-j ACCEPT"));
  EXPECT_TRUE(couldMatch("-d 169.254.169.254/32 -j ACCEPT"));
  EXPECT_TRUE(couldMatch("-d 169.254.0.0/16 -j ACCEPT"));
  EXPECT_TRUE(couldMatch("-d 0.0.0.0/0 -j ACCEPT"));
  EXPECT_FALSE(couldMatch("-d 10.96.0.0/12 -j ACCEPT"));
  EXPECT_FALSE(couldMatch("-d 169.254.169.253/32 -j ACCEPT"));
  EXPECT_FALSE(couldMatch("! -d 169.254.0.0/16 -j ACCEPT"));
  EXPECT_TRUE(couldMatch("! -d 10.96.0.0/12 -j ACCEPT"));
  EXPECT_TRUE(couldMatch("-d 169.254.0.254/255.255.0.255 -j ACCEPT"));  // non-CIDR mask
  EXPECT_FALSE(couldMatch("-d 169.254.0.253/255.255.0.255 -j ACCEPT"));
  EXPECT_TRUE(couldMatch("-d some-name -j ACCEPT"));     // unreadable: assume it could
  EXPECT_TRUE(couldMatch("-d ! 10.0.0.0/8 -j ACCEPT"));  // old-style negation
  EXPECT_FALSE(couldMatch("-d ! 169.254.0.0/16 -j ACCEPT"));
}

TEST(RuleCouldMatchTest, Protocol) {
  EXPECT_TRUE(couldMatch("-p tcp -j ACCEPT"));
  EXPECT_TRUE(couldMatch("-p 6 -j ACCEPT"));
  EXPECT_TRUE(couldMatch("-p all -j ACCEPT"));
  EXPECT_FALSE(couldMatch("-p udp -j ACCEPT"));
  EXPECT_FALSE(couldMatch("-p icmp -j ACCEPT"));
  EXPECT_FALSE(couldMatch("! -p tcp -j ACCEPT"));
  EXPECT_TRUE(couldMatch("! -p udp -j ACCEPT"));
  EXPECT_FALSE(couldMatch("-p udp -m udp --dport 80 -j ACCEPT"));
  EXPECT_FALSE(couldMatch("-m sctp --dport 80 -j ACCEPT"));
}

TEST(RuleCouldMatchTest, DestinationPort) {
  EXPECT_TRUE(couldMatch("-p tcp -m tcp --dport 80 -j ACCEPT"));
  EXPECT_FALSE(couldMatch("-p tcp -m tcp --dport 443 -j ACCEPT"));
  EXPECT_FALSE(couldMatch("-p tcp -m tcp ! --dport 80 -j ACCEPT"));
  EXPECT_TRUE(couldMatch("-p tcp -m tcp ! --dport 443 -j ACCEPT"));
  EXPECT_TRUE(couldMatch("-p tcp -m tcp --dport 1:1024 -j ACCEPT"));
  EXPECT_TRUE(couldMatch("-p tcp -m tcp --dport :100 -j ACCEPT"));
  EXPECT_FALSE(couldMatch("-p tcp -m tcp --dport 81: -j ACCEPT"));
  EXPECT_TRUE(couldMatch("-p tcp -m tcp --destination-port 80 -j ACCEPT"));
  EXPECT_TRUE(couldMatch("-p tcp -m tcp --sport 80 -j ACCEPT"));  // any source port
  EXPECT_TRUE(couldMatch("-p tcp -m multiport --dports 443,80 -j ACCEPT"));
  EXPECT_TRUE(couldMatch("-p tcp -m multiport --dports 443,70:90 -j ACCEPT"));
  EXPECT_FALSE(couldMatch("-p tcp -m multiport --dports 443,8080:8090 -j ACCEPT"));
  EXPECT_FALSE(couldMatch("-p tcp -m multiport ! --dports 80,443 -j ACCEPT"));
  EXPECT_TRUE(couldMatch("-p tcp -m multiport --ports 443 -j ACCEPT"));  // either port
  EXPECT_TRUE(couldMatch("-p tcp -m tcp --dport http -j ACCEPT"));       // unreadable
}

TEST(RuleCouldMatchTest, AddressType) {
  EXPECT_TRUE(couldMatch("-m addrtype --dst-type LOCAL -j ACCEPT"));
  EXPECT_TRUE(couldMatch("-m addrtype --dst-type UNICAST -j ACCEPT"));
  EXPECT_FALSE(couldMatch("-m addrtype --dst-type BROADCAST -j ACCEPT"));
  EXPECT_FALSE(couldMatch("-m addrtype --dst-type MULTICAST,BROADCAST -j ACCEPT"));
  EXPECT_TRUE(couldMatch("-m addrtype ! --dst-type LOCAL -j ACCEPT"));
  EXPECT_FALSE(couldMatch("-m addrtype ! --dst-type UNICAST,LOCAL,UNSPEC -j ACCEPT"));
  EXPECT_TRUE(couldMatch("-m addrtype --src-type LOCAL -j ACCEPT"));
}

TEST(RuleCouldMatchTest, EverythingElseIsAssumedToMatch) {
  EXPECT_TRUE(couldMatch("-s 10.244.0.0/16 -j ACCEPT"));
  EXPECT_TRUE(couldMatch("-s 127.0.0.1/32 -j ACCEPT"));
  EXPECT_TRUE(couldMatch("-i cbr0 -j ACCEPT"));
  EXPECT_TRUE(couldMatch("-m mark --mark 0x4000/0x4000 -j ACCEPT"));
  EXPECT_TRUE(couldMatch("-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"));
  EXPECT_TRUE(couldMatch("-m set --match-set pods src -j ACCEPT"));
  EXPECT_TRUE(couldMatch("-m some-future-match --anything 1 -j ACCEPT"));
  // A comment is not a match, whatever it says.
  EXPECT_FALSE(couldMatch(R"(-d 10.0.0.1/32 -m comment --comment "-d 169.254.169.254" -j ACCEPT)"));
}

// PREROUTING: <before>, then nmi's jump.
std::optional<std::string> dangerIn(const std::string& table_name, const std::string& chains,
                                    const std::string& before) {
  const std::string hook = table_name == "nat" ? "PREROUTING" : "FORWARD";
  const std::string own = table_name == "nat" ? "NMI-METADATA" : "NMI-METADATA-GUARD";
  SavedTable table =
      tableOf("*" + table_name + "\n:" + hook + " ACCEPT [0:0]\n:" + own + " - [0:0]\n" + chains +
              "-A " + hook + " " + before + "\n-A " + hook + " -j " + own + "\nCOMMIT\n");
  return dangerousRuleBefore(table, hook, 1, own, kImds);
}

TEST(DangerousRuleBeforeTest, NatTargetsThatTakeTheTrafficAway) {
  EXPECT_TRUE(dangerIn("nat", "", "-j ACCEPT"));
  EXPECT_TRUE(dangerIn("nat", "", "-p tcp -j DNAT --to-destination 10.0.0.1:80"));
  EXPECT_TRUE(dangerIn("nat", "", "-p tcp -m tcp --dport 80 -j REDIRECT --to-ports 8080"));
  EXPECT_TRUE(dangerIn("nat", "", "-j RETURN"));  // returns from a built-in chain: policy
  EXPECT_TRUE(dangerIn("nat", "", "-j NFQUEUE --queue-num 1"));  // unknown: assume the worst
  EXPECT_TRUE(dangerIn("nat", "", "-j NO-SUCH-CHAIN"));
  EXPECT_EQ(dangerIn("nat", "", "-s 10.0.0.0/8 -j ACCEPT"), "-s 10.0.0.0/8 -j ACCEPT");
}

TEST(DangerousRuleBeforeTest, HarmlessRulesLeaveTheJumpWhereItIs) {
  EXPECT_FALSE(dangerIn("nat", "", "-p udp -j ACCEPT"));
  EXPECT_FALSE(dangerIn("nat", "", "-d 10.96.0.0/12 -j ACCEPT"));
  EXPECT_FALSE(dangerIn("nat", "", "-j MARK --set-xmark 0x1/0x1"));
  EXPECT_FALSE(dangerIn("nat", "", "-j LOG --log-prefix \"x \""));
  EXPECT_FALSE(dangerIn("nat", "", "-j DROP"));
  EXPECT_FALSE(dangerIn("nat", "", "-m comment --comment counting"));  // no target
  EXPECT_FALSE(dangerIn("nat", "", "-i eth0 -j NMI-METADATA"));        // nmi's own chain
  EXPECT_FALSE(dangerIn("nat", "", "-p tcp -m tcp --dport 443 -j DNAT --to-destination 1.2.3.4"));
}

TEST(DangerousRuleBeforeTest, UserChainsAreInspected) {
  // A CNI chain that only DNATs its service range.
  const std::string svc = ":CNI - [0:0]\n-A CNI -d 10.96.0.0/12 -j DNAT --to-destination 1.2.3.4\n";
  EXPECT_FALSE(dangerIn("nat", svc, "-j CNI"));
  // A chain reached only for other destinations, whatever it holds.
  const std::string all = ":ALL - [0:0]\n-A ALL -j ACCEPT\n";
  EXPECT_FALSE(dangerIn("nat", all, "-d 10.96.0.0/12 -j ALL"));
  EXPECT_TRUE(dangerIn("nat", all, "-j ALL"));
  // Nested, through a harmless-looking hop.
  const std::string nested =
      ":A - [0:0]\n:B - [0:0]\n-A A -j MARK --set-xmark 0x1/0x1\n-A A -j B\n"
      "-A B -p tcp -m multiport --dports 80,443 -j DNAT --to-destination 1.2.3.4\n";
  EXPECT_TRUE(dangerIn("nat", nested, "-j A"));
  // RETURN in a jumped-to chain comes back; in a chain reached by -g it ends the built-in one.
  const std::string ret = ":R - [0:0]\n-A R -j RETURN\n";
  EXPECT_FALSE(dangerIn("nat", ret, "-j R"));
  EXPECT_TRUE(dangerIn("nat", ret, "-g R"));
  // aad-pod-identity's chain DNATs exactly this traffic.
  const std::string aad =
      ":aad-metadata - [0:0]\n-A aad-metadata ! -s 127.0.0.1/32 -d 169.254.169.254/32 -p tcp -m "
      "tcp --dport 80 -j DNAT --to-destination 127.0.0.1:2579\n-A aad-metadata -j RETURN\n";
  EXPECT_TRUE(dangerIn("nat", aad, "-j aad-metadata"));
  // A cycle (iptables refuses one, but the analysis must end): dangerous.
  const std::string cycle = ":C1 - [0:0]\n:C2 - [0:0]\n-A C1 -j C2\n-A C2 -j C1\n";
  EXPECT_TRUE(dangerIn("nat", cycle, "-j C1"));
}

TEST(DangerousRuleBeforeTest, FilterOnlyAcceptCaptures) {
  EXPECT_TRUE(dangerIn("filter", "", "-j ACCEPT"));
  EXPECT_TRUE(dangerIn("filter", "", "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"));
  EXPECT_FALSE(dangerIn("filter", "", "-j REJECT --reject-with icmp-port-unreachable"));
  // DNAT cannot be in filter; a target unknown to the table is assumed to capture.
  EXPECT_TRUE(dangerIn("filter", "", "-p tcp -j DNAT --to-destination 1.2.3.4"));
  EXPECT_FALSE(dangerIn("filter", ":D - [0:0]\n-A D -j RETURN\n", "-j D"));
  EXPECT_TRUE(dangerIn("filter", ":D - [0:0]\n-A D -s 10.244.0.0/16 -j ACCEPT\n", "-j D"));
}

TEST(DangerousRuleBeforeTest, KubeProxyChainsAreHarmlessForNatButNotForFilter) {
  for (const char* backend : {"nft", "legacy"}) {
    SCOPED_TRACE(backend);
    const SavedTable nat = sampleTable(std::string(backend) + "_kube_nat.txt", "nat");
    // KUBE-SERVICES (position 1) only reaches service IPs and node ports 30000+.
    EXPECT_FALSE(dangerousRuleBefore(nat, "PREROUTING", 1, "NMI-METADATA", kImds));
    // aad-pod-identity's jump (position 3) would capture the traffic.
    EXPECT_EQ(dangerousRuleBefore(nat, "PREROUTING", 3, "NMI-METADATA", kImds), "-j aad-metadata");
    // A service on the metadata address:port through the node-port path would.
    const Destination node_port{0xa9fea9feU, 30080};
    EXPECT_TRUE(dangerousRuleBefore(nat, "PREROUTING", 1, "NMI-METADATA", node_port));
    const SavedTable filter = sampleTable(std::string(backend) + "_kube_filter.txt", "filter");
    // KUBE-FORWARD accepts marked and established traffic: nmi's guard must come first.
    EXPECT_TRUE(dangerousRuleBefore(filter, "FORWARD", 2, "NMI-METADATA-GUARD", kImds));
    EXPECT_FALSE(dangerousRuleBefore(filter, "FORWARD", 0, "NMI-METADATA-GUARD", kImds));
  }
}

}  // namespace
}  // namespace nmi::iptables
