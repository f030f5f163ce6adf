#include "iptables/backend.h"

#include <gtest/gtest.h>

#include "tests/fakes/fake_command_runner.h"
#include "tests/fakes/iptables_samples.h"

namespace nmi::iptables {
namespace {

using nmi::testing::FakeCommandRunner;
using testing::sample;

constexpr const char* kFewRules = "*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j X\nCOMMIT\n";

TEST(ChooseBackendTest, KubeletsHintWins) {
  const std::string nft_hint = sample("nft_kube_all.txt");
  const std::string legacy_hint = sample("legacy_kube_all.txt");
  auto d = chooseBackend({nft_hint, legacy_hint});
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->backend, Backend::Nft);  // nft looked at first
  d = chooseBackend({std::string(kFewRules), legacy_hint});
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->backend, Backend::Legacy);
  EXPECT_EQ(d->reason, "kubelet's hint chain is in the legacy tables");
  d = chooseBackend({nft_hint, std::string(kFewRules)});
  EXPECT_EQ(d->backend, Backend::Nft);
}

TEST(ChooseBackendTest, ElseTheOneWithMoreRulesNftOnATie) {
  const std::string none = sample("nft_empty_nat.txt");
  const std::string some = sample("legacy_flushed_nat.txt");
  EXPECT_EQ(chooseBackend({none, some})->backend, Backend::Legacy);
  EXPECT_EQ(chooseBackend({some, none})->backend, Backend::Nft);
  EXPECT_EQ(chooseBackend({none, none})->backend, Backend::Nft);
  EXPECT_EQ(chooseBackend({std::string(), std::string()})->reason, "0 nft rules, 0 legacy rules");
  EXPECT_EQ(chooseBackend({some, some})->backend, Backend::Nft);
}

TEST(ChooseBackendTest, OnlyABackendThatRuns) {
  EXPECT_EQ(chooseBackend({std::nullopt, std::string()})->backend, Backend::Legacy);
  EXPECT_EQ(chooseBackend({std::string(kFewRules), std::nullopt})->backend, Backend::Nft);
  auto none = chooseBackend({std::nullopt, std::nullopt});
  ASSERT_FALSE(none.has_value());
  EXPECT_EQ(none.error().code, ErrorCode::NotFound);
}

TEST(ToolsTest, CallsTheBackendsBinariesExplicitlyUnderTheLock) {
  Tools legacy;
  legacy.backend = Backend::Legacy;
  legacy.lock_file = "/tmp/test.lock";
  const Command save = legacy.save("nat");
  EXPECT_EQ(save.argv, (std::vector<std::string>{"iptables-legacy-save", "-t", "nat"}));
  const Command restore = legacy.restore("*nat\nCOMMIT\n");
  EXPECT_EQ(restore.argv,
            (std::vector<std::string>{"iptables-legacy-restore", "--noflush", "--wait=5"}));
  EXPECT_EQ(restore.input, "*nat\nCOMMIT\n");
  ASSERT_EQ(restore.env.size(), 1U);
  EXPECT_EQ(restore.env[0].first, "XTABLES_LOCKFILE");
  EXPECT_EQ(restore.env[0].second, "/tmp/test.lock");
  Tools nft;
  EXPECT_EQ(nft.save("").argv, (std::vector<std::string>{"iptables-nft-save"}));
  EXPECT_EQ(nft.restore("").argv.front(), "iptables-nft-restore");
}

TEST(ResolveBackendTest, ForcedChoicesRunNothing) {
  FakeCommandRunner runner;
  EXPECT_EQ(resolveBackend(BackendChoice::Legacy, runner, std::chrono::seconds(1))->backend,
            Backend::Legacy);
  EXPECT_EQ(resolveBackend(BackendChoice::Nft, runner, std::chrono::seconds(1))->backend,
            Backend::Nft);
  EXPECT_TRUE(runner.calls().empty());
}

TEST(ResolveBackendTest, AutoSavesBothWithoutNamingATable) {
  FakeCommandRunner runner;
  runner.succeed("iptables-nft-save", "");
  runner.succeed("iptables-legacy-save", sample("legacy_kube_all.txt"));
  auto d = resolveBackend(BackendChoice::Auto, runner, std::chrono::seconds(1));
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->backend, Backend::Legacy);
  EXPECT_EQ(d->reason, "auto: kubelet's hint chain is in the legacy tables");
  ASSERT_EQ(runner.calls().size(), 2U);
  for (const Command& c : runner.calls()) {
    EXPECT_EQ(c.argv.size(), 1U);  // `-t nat` would create a legacy table
  }
  // A save that fails counts as "cannot run".
  runner.succeed("iptables-legacy-save", "", 1, "iptables-legacy-save: no kernel support");
  EXPECT_EQ(resolveBackend(BackendChoice::Auto, runner, std::chrono::seconds(1))->reason,
            "auto: iptables-legacy-save could not run");
  runner.remove("iptables-nft-save");
  runner.remove("iptables-legacy-save");
  auto none = resolveBackend(BackendChoice::Auto, runner, std::chrono::seconds(1));
  ASSERT_FALSE(none.has_value());
  EXPECT_EQ(none.error().message, "neither iptables-nft-save nor iptables-legacy-save could run");
}

}  // namespace
}  // namespace nmi::iptables
