#include "iptables/save_parser.h"

#include <gtest/gtest.h>

#include "tests/fakes/iptables_samples.h"

namespace nmi::iptables {
namespace {

using testing::sample;

TEST(TokenizeTest, QuotedWordsKeepTheirRawTextAndLoseTheirEscapes) {
  auto tokens = tokenize(R"(-m comment --comment "kube \"x\" y" -j  ACCEPT)");
  ASSERT_TRUE(tokens.has_value());
  ASSERT_EQ(tokens->size(), 6U);
  EXPECT_EQ((*tokens)[2].text, "--comment");
  EXPECT_FALSE((*tokens)[2].quoted);
  EXPECT_EQ((*tokens)[3].text, "kube \"x\" y");
  EXPECT_EQ((*tokens)[3].raw, R"("kube \"x\" y")");
  EXPECT_TRUE((*tokens)[3].quoted);
  EXPECT_EQ((*tokens)[5].text, "ACCEPT");
}

TEST(TokenizeTest, AnUnterminatedQuoteIsAnError) {
  EXPECT_FALSE(tokenize(R"(--comment "open)").has_value());
  EXPECT_FALSE(tokenize(R"(--comment "ends in escape\")").has_value());
}

TEST(ParseSaveTest, ReadsBothBackendsSamplesAlike) {
  for (const char* name : {"nft_kube_nat.txt", "legacy_kube_nat.txt"}) {
    SCOPED_TRACE(name);
    auto parsed = parseSave(sample(name));
    ASSERT_TRUE(parsed.has_value()) << parsed.error().message;
    ASSERT_EQ(parsed->tables.size(), 1U);
    const SavedTable* nat = parsed->find("nat");
    ASSERT_NE(nat, nullptr);
    const SavedChain* pre = nat->find("PREROUTING");
    ASSERT_NE(pre, nullptr);
    EXPECT_TRUE(pre->builtIn());
    EXPECT_EQ(pre->policy, "ACCEPT");
    ASSERT_EQ(pre->rules.size(), 3U);
    EXPECT_EQ(pre->rules[0].spec,
              R"(-m comment --comment "kubernetes service portals" -j KUBE-SERVICES)");
    EXPECT_EQ(pre->rules[1].spec, "-j NMI-METADATA");
    EXPECT_EQ(pre->rules[2].spec, "-j aad-metadata");
    const SavedChain* ours = nat->find("NMI-METADATA");
    ASSERT_NE(ours, nullptr);
    EXPECT_FALSE(ours->builtIn());
    ASSERT_EQ(ours->rules.size(), 2U);
    EXPECT_EQ(ours->rules[0].spec,
              "! -s 127.0.0.1/32 -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j DNAT "
              "--to-destination 10.244.0.1:2579");
    EXPECT_EQ(ours->rules[1].spec, "-j RETURN");
    EXPECT_EQ(ours->rules[0].chain, "NMI-METADATA");
  }
}

TEST(ParseSaveTest, ReadsEveryTableOfAFullSave) {
  for (const char* name : {"nft_kube_all.txt", "legacy_kube_all.txt"}) {
    SCOPED_TRACE(name);
    auto parsed = parseSave(sample(name));
    ASSERT_TRUE(parsed.has_value()) << parsed.error().message;
    ASSERT_NE(parsed->find("mangle"), nullptr);
    ASSERT_NE(parsed->find("filter"), nullptr);
    ASSERT_NE(parsed->find("nat"), nullptr);
    EXPECT_NE(parsed->find("mangle")->find("KUBE-IPTABLES-HINT"), nullptr);
    const SavedChain* guard = parsed->find("filter")->find("NMI-METADATA-GUARD");
    ASSERT_NE(guard, nullptr);
    ASSERT_EQ(guard->rules.size(), 1U);
    EXPECT_EQ(guard->rules[0].spec,
              "-d 169.254.169.254/32 -p tcp -m tcp --dport 80 -m conntrack ! --ctstate DNAT -j "
              "REJECT --reject-with tcp-reset");
  }
}

TEST(ParseSaveTest, EmptyTablesHaveOnlyTheirBuiltInChains) {
  for (const char* name : {"nft_empty_nat.txt", "legacy_empty_nat.txt"}) {
    auto parsed = parseSave(sample(name));
    ASSERT_TRUE(parsed.has_value());
    const SavedTable* nat = parsed->find("nat");
    ASSERT_NE(nat, nullptr);
    EXPECT_EQ(nat->chains.size(), 4U);
    EXPECT_EQ(nat->find("NMI-METADATA"), nullptr);
  }
  auto nothing = parseSave("");
  ASSERT_TRUE(nothing.has_value());
  EXPECT_TRUE(nothing->tables.empty());
}

TEST(ParseSaveTest, NormalisesBlanksAndDropsCounters) {
  auto parsed = parseSave(
      "*nat\n:PREROUTING ACCEPT [1:2]\n[5:300] -A PREROUTING   -j   X \n"
      "-A Y -j RETURN\r\nCOMMIT\n");
  ASSERT_TRUE(parsed.has_value()) << parsed.error().message;
  const SavedTable& nat = parsed->tables.front();
  EXPECT_EQ(nat.find("PREROUTING")->rules.at(0).spec, "-j X");
  // A rule of an undeclared chain declares it.
  ASSERT_NE(nat.find("Y"), nullptr);
  EXPECT_FALSE(nat.find("Y")->builtIn());
}

TEST(ParseSaveTest, RejectsWhatIsNotSaveOutput) {
  EXPECT_FALSE(parseSave("-A PREROUTING -j X\n").has_value());        // outside a table
  EXPECT_FALSE(parseSave("*nat\n-A PREROUTING -j X\n").has_value());  // no COMMIT
  EXPECT_FALSE(parseSave("*nat\n-I PREROUTING 1 -j X\nCOMMIT\n").has_value());
  EXPECT_FALSE(parseSave("*nat\n:PREROUTING\nCOMMIT\n").has_value());
  EXPECT_FALSE(parseSave("COMMIT\n").has_value());
  auto error = parseSave("*nat\n-A X --comment \"open\nCOMMIT\n");
  ASSERT_FALSE(error.has_value());
  EXPECT_NE(error.error().message.find("line 2"), std::string::npos) << error.error().message;
}

}  // namespace
}  // namespace nmi::iptables
