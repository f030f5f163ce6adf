#include "iptables/cleanup.h"

#include <gtest/gtest.h>

#include "tests/fakes/fake_command_runner.h"
#include "tests/fakes/iptables_samples.h"

namespace nmi::iptables {
namespace {

using nmi::testing::FakeCommandRunner;
using testing::sample;

TEST(CleanupTest, RemovesBothTablesOfTheForcedBackend) {
  FakeCommandRunner runner;
  runner.succeed("iptables-legacy-save", sample("legacy_kube_all.txt"));
  runner.succeed("iptables-legacy-restore");
  CleanupOptions options;
  options.backend = BackendChoice::Legacy;
  options.lock_file = "/tmp/l.lock";
  auto done = removeInterception(runner, options);
  ASSERT_TRUE(done.has_value()) << done.error().message;
  EXPECT_EQ(*done,
            (std::vector<std::string>{
                "legacy: removed filter chain NMI-METADATA-GUARD and the rules jumping to it",
                "legacy: removed nat chain NMI-METADATA and the rules jumping to it"}));
  const auto restores = runner.callsTo("iptables-legacy-restore");
  ASSERT_EQ(restores.size(), 2U);
  EXPECT_EQ(restores[0].input,
            "*filter\n-D FORWARD -j NMI-METADATA-GUARD\n-F NMI-METADATA-GUARD\n"
            "-X NMI-METADATA-GUARD\nCOMMIT\n");
  EXPECT_EQ(restores[1].input,
            "*nat\n-D PREROUTING -j NMI-METADATA\n-F NMI-METADATA\n-X NMI-METADATA\nCOMMIT\n");
  EXPECT_EQ(restores[1].env.at(0).second, "/tmp/l.lock");
  EXPECT_EQ(runner.callsTo("iptables-legacy-save").at(0).argv.size(), 1U);  // no -t
  EXPECT_TRUE(runner.callsTo("iptables-nft-save").empty());
}

TEST(CleanupTest, NothingInstalledIsSuccess) {
  FakeCommandRunner runner;
  runner.succeed("iptables-nft-save", sample("nft_empty_nat.txt"));
  CleanupOptions options;
  options.backend = BackendChoice::Nft;
  auto done = removeInterception(runner, options);
  ASSERT_TRUE(done.has_value());
  EXPECT_TRUE(done->empty());
  EXPECT_TRUE(runner.callsTo("iptables-nft-restore").empty());
}

TEST(CleanupTest, AutoCleansEveryBackendThatHasThemAndSkipsOnesThatCannotRun) {
  FakeCommandRunner runner;
  runner.succeed("iptables-nft-save", sample("nft_kube_all.txt"));
  runner.succeed("iptables-nft-restore");
  auto done = removeInterception(runner, CleanupOptions{});
  ASSERT_TRUE(done.has_value()) << done.error().message;
  EXPECT_EQ(done->size(), 2U);
  runner.succeed("iptables-legacy-save", sample("legacy_kube_all.txt"));
  runner.succeed("iptables-legacy-restore");
  done = removeInterception(runner, CleanupOptions{});
  EXPECT_EQ(done->size(), 4U);
}

TEST(CleanupTest, AFailedRemovalIsAnError) {
  FakeCommandRunner runner;
  runner.succeed("iptables-nft-save", sample("nft_kube_all.txt"));
  runner.succeed("iptables-nft-restore", "", 4, "iptables-nft-restore: line 2 failed\n");
  CleanupOptions options;
  options.backend = BackendChoice::Nft;
  auto done = removeInterception(runner, options);
  ASSERT_FALSE(done.has_value());
  EXPECT_EQ(done.error().message,
            "iptables-nft-restore exited 4 removing NMI-METADATA-GUARD: iptables-nft-restore: "
            "line 2 failed");
  FakeCommandRunner missing;
  EXPECT_EQ(removeInterception(missing, options).error().code, ErrorCode::NotFound);
}

}  // namespace
}  // namespace nmi::iptables
