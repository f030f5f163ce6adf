#include "iptables/reconciler.h"

#include <chrono>
#include <cstdio>
#include <fstream>

#include <gtest/gtest.h>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include "tests/fakes/fake_clock.h"
#include "tests/fakes/fake_command_runner.h"
#include "tests/fakes/iptables_samples.h"

namespace nmi::iptables {
namespace {

using nmi::testing::FakeCommandRunner;
using std::chrono::milliseconds;
using testing::sample;

TEST(NextDelayTest, OneSecondDoublingToThirtyAfterFailures) {
  const milliseconds interval{5'000};
  EXPECT_EQ(nextDelay(0, interval), interval);
  EXPECT_EQ(nextDelay(1, interval), milliseconds(1'000));
  EXPECT_EQ(nextDelay(2, interval), milliseconds(2'000));
  EXPECT_EQ(nextDelay(3, interval), milliseconds(4'000));
  EXPECT_EQ(nextDelay(5, interval), milliseconds(16'000));
  EXPECT_EQ(nextDelay(6, interval), milliseconds(30'000));
  EXPECT_EQ(nextDelay(1000, interval), milliseconds(30'000));
}

// A node's iptables (nft backend) as the fake runner sees it: saves print the current text,
// a restore replaces a table's text by the "installed" sample (target 10.244.0.1:2579).
class ReconcilerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::array<char, 64> path{};
    std::snprintf(path.data(), path.size(), "/tmp/nmi-localnet-%d-XXXXXX", ::getpid());
    const int fd = ::mkstemp(path.data());
    ASSERT_GE(fd, 0);
    ::close(fd);
    localnet_path_ = path.data();
    setLocalnet("1");
    runner_.on("iptables-nft-save", [this](const Command& c) {
      if (c.argv.size() < 3) {  // every table (backend detection)
        return Result<CommandOutput>(CommandOutput{0, nat_ + filter_, ""});
      }
      const std::string& table = c.argv.at(2);
      return Result<CommandOutput>(CommandOutput{0, table == "nat" ? nat_ : filter_, ""});
    });
    runner_.on("iptables-nft-restore", [this](const Command& c) {
      restore_inputs_.push_back(c.input);
      if (restore_fails_) {
        return Result<CommandOutput>(CommandOutput{
            4, "",
            "Another app is currently holding the xtables lock. Stopped waiting after 5s.\n"});
      }
      if (restore_applies_) {
        (c.input.rfind("*nat", 0) == 0 ? nat_ : filter_) =
            sample(c.input.rfind("*nat", 0) == 0 ? "nft_kube_nat.txt" : "nft_kube_filter.txt");
      }
      return Result<CommandOutput>(CommandOutput{});
    });
    runner_.succeed("conntrack", "", 1,
                    "conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.\n");
  }
  void TearDown() override { std::remove(localnet_path_.c_str()); }

  void setLocalnet(const std::string& value) const {
    std::ofstream(localnet_path_) << value << "\n";
  }

  std::unique_ptr<Reconciler> make(std::string target = "10.244.0.1",
                                   BackendChoice backend = BackendChoice::Nft) {
    ReconcilerOptions options;
    options.spec.target_ip = std::move(target);
    options.backend = backend;
    options.lock_file = "/tmp/test.lock";
    options.route_localnet_path = localnet_path_;
    return std::make_unique<Reconciler>(options, runner_, clock_, metrics_, log_);
  }

  FakeCommandRunner runner_;
  nmi::testing::FakeClock clock_;
  metrics::NmiMetrics metrics_;
  std::shared_ptr<spdlog::logger> log_ =
      std::make_shared<spdlog::logger>("test", std::make_shared<spdlog::sinks::null_sink_mt>());
  std::string localnet_path_;
  std::string nat_ = sample("nft_empty_nat.txt");
  std::string filter_ = sample("nft_empty_filter.txt");
  std::vector<std::string> restore_inputs_;
  bool restore_fails_ = false;
  bool restore_applies_ = true;
};

TEST_F(ReconcilerTest, InstallsOnAFreshNodeGuardFirstThenLeavesItAlone) {
  auto r = make();
  EXPECT_EQ(r->notReadyReason(), "iptables rules not checked yet");
  EXPECT_EQ(r->runOnce(), milliseconds(5'000));
  EXPECT_EQ(r->lastResultForTest(), PassResult::Repaired);
  ASSERT_EQ(restore_inputs_.size(), 2U);
  EXPECT_EQ(restore_inputs_[0],
            restoreText(desiredFilter(InterceptionSpec{"169.254.169.254", 80, "10.244.0.1", 2579}),
                        TablePlan{true, 0, 1, {}}));
  EXPECT_EQ(restore_inputs_[1].substr(0, 25), "*nat\n:NMI-METADATA - [0:0");
  const auto restores = runner_.callsTo("iptables-nft-restore");
  EXPECT_EQ(restores.at(0).env.at(0).second, "/tmp/test.lock");
  EXPECT_EQ(runner_.callsTo("iptables-nft-save").size(), 4U);  // observe, then verify
  EXPECT_EQ(runner_.callsTo("conntrack").size(), 1U);
  EXPECT_EQ(metrics_.iptables_reconcile_repaired.Value(), 1);
  EXPECT_EQ(metrics_.iptables_rules_installed.Value(), 1);
  EXPECT_EQ(r->notReadyReason(), "");

  runner_.clearCalls();
  EXPECT_EQ(r->runOnce(), milliseconds(5'000));
  EXPECT_EQ(r->lastResultForTest(), PassResult::Ok);
  EXPECT_EQ(runner_.calls().size(), 2U);  // two saves, nothing else
  EXPECT_EQ(metrics_.iptables_reconcile_ok.Value(), 1);
  // Nothing of the legacy backend was ever run with a forced nft backend.
  for (const auto& c : runner_.calls()) {
    EXPECT_EQ(c.argv.front().find("legacy"), std::string::npos);
  }
}

TEST_F(ReconcilerTest, RefillsAFlushedChainWithoutDroppingConnectionsAgain) {
  auto r = make();
  (void)r->runOnce();
  restore_inputs_.clear();
  nat_ = sample("nft_flushed_nat.txt");
  (void)r->runOnce();
  EXPECT_EQ(r->lastResultForTest(), PassResult::Repaired);
  ASSERT_EQ(restore_inputs_.size(), 1U);
  EXPECT_EQ(restore_inputs_[0],
            "*nat\n:NMI-METADATA - [0:0]\n-A NMI-METADATA ! -s 127.0.0.1/32 -d "
            "169.254.169.254/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination "
            "10.244.0.1:2579\n-A NMI-METADATA -j RETURN\nCOMMIT\n");
  EXPECT_EQ(runner_.callsTo("conntrack").size(), 1U);
  EXPECT_EQ(metrics_.iptables_reconcile_repaired.Value(), 2);
}

TEST_F(ReconcilerTest, DropsConnectionsAgainWhenBothTablesWereOpen) {
  auto r = make();
  (void)r->runOnce();
  nat_ = sample("nft_empty_nat.txt");
  filter_ = sample("nft_empty_filter.txt");
  (void)r->runOnce();
  EXPECT_EQ(runner_.callsTo("conntrack").size(), 2U);
}

TEST_F(ReconcilerTest, FailuresBackOffShowInReadinessAndNeverStopTheLoop) {
  auto r = make();
  restore_fails_ = true;
  EXPECT_EQ(r->runOnce(), milliseconds(1'000));
  EXPECT_EQ(r->lastResultForTest(), PassResult::Error);
  EXPECT_EQ(r->notReadyReason(),
            "iptables-nft-restore exited 4: Another app is currently holding the xtables lock. "
            "Stopped waiting after 5s. (table filter) (retrying in 1 s)");
  EXPECT_EQ(r->runOnce(), milliseconds(2'000));
  EXPECT_EQ(r->runOnce(), milliseconds(4'000));
  EXPECT_EQ(metrics_.iptables_reconcile_error.Value(), 3);
  EXPECT_EQ(metrics_.iptables_rules_installed.Value(), 0);
  restore_fails_ = false;
  EXPECT_EQ(r->runOnce(), milliseconds(5'000));
  EXPECT_EQ(r->notReadyReason(), "");
  EXPECT_EQ(metrics_.iptables_rules_installed.Value(), 1);
}

TEST_F(ReconcilerTest, MissingBinariesAreRetriedNotFatal) {
  FakeCommandRunner empty;
  ReconcilerOptions options;
  options.route_localnet_path = localnet_path_;
  Reconciler r(options, empty, clock_, metrics_, log_);
  EXPECT_EQ(r.runOnce(), milliseconds(1'000));
  EXPECT_EQ(r.notReadyReason(),
            "cannot choose the iptables backend: neither iptables-nft-save nor "
            "iptables-legacy-save could run (retrying in 1 s)");
  EXPECT_EQ(r.runOnce(), milliseconds(2'000));
  EXPECT_EQ(empty.callsTo("iptables-legacy-save").size(), 2U);  // detection is retried too
}

TEST_F(ReconcilerTest, AutoDetectsOnceThenUsesThatBackend) {
  runner_.succeed("iptables-legacy-save", "");
  auto r = make("10.244.0.1", BackendChoice::Auto);
  (void)r->runOnce();
  (void)r->runOnce();
  EXPECT_EQ(runner_.callsTo("iptables-legacy-save").size(), 1U);
  EXPECT_EQ(r->lastResultForTest(), PassResult::Ok);
}

TEST_F(ReconcilerTest, RouteLocalnetOffIsNotReadyButTheRulesStillGoIn) {
  setLocalnet("0");
  auto r = make("127.0.0.1");
  restore_applies_ = false;  // (the samples target 10.244.0.1; verification would fail)
  (void)r->runOnce();
  EXPECT_EQ(restore_inputs_.size(), 2U);
  EXPECT_NE(r->notReadyReason().find("route_localnet=0: DNAT to 127.0.0.1 cannot work; set "
                                     "net.ipv4.conf.all.route_localnet=1 (kube-proxy does) or "
                                     "run with --nmi-listen-address=<node IP>"),
            std::string::npos)
      << r->notReadyReason();
  // With a node address nmi does not care.
  auto node = make("10.244.0.1");
  restore_applies_ = true;
  (void)node->runOnce();
  EXPECT_EQ(node->notReadyReason(), "");
}

TEST_F(ReconcilerTest, ARepairThatDoesNotStickIsAnError) {
  restore_applies_ = false;
  auto r = make();
  EXPECT_EQ(r->runOnce(), milliseconds(1'000));
  EXPECT_EQ(r->notReadyReason().rfind("rules still differ after the repair: nat: chain "
                                      "NMI-METADATA missing",
                                      0),
            0U)
      << r->notReadyReason();
}

TEST_F(ReconcilerTest, AConntrackFailureIsRetriedWithTheRulesInPlace) {
  runner_.succeed("conntrack", "", 1,
                  "conntrack v1.4.7 (conntrack-tools): Operation failed: Operation not "
                  "permitted\n");
  auto r = make();
  EXPECT_EQ(r->runOnce(), milliseconds(1'000));
  EXPECT_EQ(metrics_.iptables_rules_installed.Value(), 1);
  EXPECT_NE(r->notReadyReason().find("dropping earlier connections to the metadata address "
                                     "failed: conntrack -D exited 1"),
            std::string::npos);
  runner_.succeed("conntrack", "", 0,
                  "conntrack v1.4.7 (conntrack-tools): 1 flow entries have been deleted.\n");
  EXPECT_EQ(r->runOnce(), milliseconds(5'000));
  EXPECT_EQ(r->notReadyReason(), "");
  EXPECT_EQ(metrics_.conntrack_flows_deleted.Value(), 1);
  EXPECT_EQ(runner_.callsTo("iptables-nft-restore").size(), 2U);  // installed once
}

TEST_F(ReconcilerTest, TheLoopRunsOnItsOwnThreadAndStopsAtOnce) {
  ReconcilerOptions options;
  options.spec.target_ip = "10.244.0.1";
  options.backend = BackendChoice::Nft;
  options.route_localnet_path = localnet_path_;
  options.interval = std::chrono::hours(1);
  Reconciler r(options, runner_, clock_, metrics_, log_);
  r.start();
  ASSERT_TRUE(r.waitForPassForTest(std::chrono::seconds(10)));
  EXPECT_EQ(r.notReadyReason(), "");
  const auto t0 = std::chrono::steady_clock::now();
  r.stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1));
  r.stop();  // idempotent
  EXPECT_EQ(runner_.callsTo("iptables-nft-restore").size(), 2U);
}

}  // namespace
}  // namespace nmi::iptables
