#include "app/options.h"

#include <chrono>

#include <gtest/gtest.h>

#include "tests/fakes/config_test_util.h"

namespace nmi::app {
namespace {

using config::testing::configOf;
using namespace std::chrono_literals;

TEST(OptionsTest, TheHandlerGetsTheMetadataAndIdentityFlags) {
  const auto config =
      configOf({"--operation-mode=managed", "--forceNamespaced", "--set-retry-after-header",
                "--retry-attempts-for-created=3", "--retry-attempts-for-assigned=2",
                "--find-identity-retry-interval=7", "--metadata-ip=10.1.2.3",
                "--metadata-port=8080", "--proxy-max-concurrent=9",
                "--proxy-max-concurrent-per-pod=2", "--pod-wait-timeout-ms=1500"});
  const auto allowed = token::AuthorityAllowlist::withExtraHosts({"adfs.example:443"});
  ASSERT_TRUE(allowed);
  const imds::HandlerOptions h = handlerOptions(config, *allowed);
  EXPECT_EQ(h.mode, identity::Mode::Managed);
  EXPECT_TRUE(h.force_namespaced);
  EXPECT_TRUE(h.set_retry_after_header);
  EXPECT_TRUE(h.metadata_header_required);
  EXPECT_EQ(h.wait.retry_attempts_for_created, 3);
  EXPECT_EQ(h.wait.retry_attempts_for_assigned, 2);
  EXPECT_EQ(h.wait.interval, 7s);
  EXPECT_EQ(h.pod_wait, 1500ms);
  EXPECT_EQ(h.metadata_endpoint, "10.1.2.3:8080");
  EXPECT_EQ(h.proxy_max_concurrent, 9U);
  EXPECT_EQ(h.proxy_max_per_pod, 2U);
  EXPECT_TRUE(token::authorityAllowed("https://adfs.example/adfs/", h.aad_authorities));
}

TEST(OptionsTest, TokenFetchesShareTheRetryBudgetAndUserAgent) {
  const auto config = configOf(
      {"--token-retry-budget-sec=12", "--custom-user-agent=[ops]", "--imds-max-concurrent=3"});
  EXPECT_EQ(userAgent(config), "nmi/" NMI_VERSION " [ops]");
  const auto mi = imdsProviderOptions(config);
  EXPECT_EQ(mi.retry.budget, 12s);
  EXPECT_EQ(mi.max_concurrent, 3);
  EXPECT_EQ(mi.user_agent, userAgent(config));
  const auto sp = aadProviderOptions(config, token::AuthorityAllowlist{});
  EXPECT_EQ(sp.retry.budget, 12s);
  EXPECT_EQ(sp.user_agent, userAgent(config));
}

TEST(OptionsTest, TheCacheGetsItsLimits) {
  const auto c =
      cacheOptions(configOf({"--token-refresh-ahead-sec=120", "--token-min-lifetime-sec=30",
                             "--token-cache-max-entries=50", "--per-pod-max-tokens=4",
                             "--per-pod-miss-rate=2.5", "--per-pod-miss-burst=6"}));
  EXPECT_EQ(c.refresh_ahead, 120s);
  EXPECT_EQ(c.min_lifetime, 30s);
  EXPECT_EQ(c.max_entries, 50U);
  EXPECT_EQ(c.per_pod_max_keys, 4U);
  EXPECT_DOUBLE_EQ(c.per_pod_miss_rate, 2.5);
  EXPECT_DOUBLE_EQ(c.per_pod_miss_burst, 6);
}

TEST(OptionsTest, OnlyTheAadClientGoesThroughTheProxy) {
  const auto config = configOf({"--aad-ca-file=/etc/ca.pem", "--proxy-max-concurrent=5"},
                               [](const char* name) -> std::optional<std::string> {
                                 if (std::string_view(name) == "HTTPS_PROXY") {
                                   return "http://proxy:3128";
                                 }
                                 return std::nullopt;
                               });
  EXPECT_TRUE(imdsClientOptions(config).https_proxy.empty());
  EXPECT_TRUE(proxyClientOptions(config).https_proxy.empty());
  EXPECT_EQ(proxyClientOptions(config).max_open_per_host, 5);
  EXPECT_EQ(aadClientOptions(config).https_proxy, "http://proxy:3128");
  EXPECT_EQ(aadClientOptions(config).tls.ca_file, "/etc/ca.pem");
  EXPECT_TRUE(imdsClientOptions(config).tls.ca_file.empty());
}

TEST(OptionsTest, InterceptionIsOffWhenDisabledOrForALoopbackMetadataAddress) {
  EXPECT_EQ(interceptionOff(configOf({})), "");
  EXPECT_EQ(interceptionOff(configOf({"--disable-interception"})), "--disable-interception");
  EXPECT_EQ(interceptionOff(configOf({"--metadata-ip=127.0.0.9"})),
            "--metadata-ip 127.0.0.9 is a loopback address");
}

TEST(OptionsTest, TheReconcilerRedirectsToTheListenerAndChecksAtTheShorterInterval) {
  const auto r = reconcilerOptions(
      configOf({"--nmi-listen-address=0.0.0.0", "--nmi-port=3000", "--ipt-update-interval-sec=20",
                "--ipt-check-interval-sec=45", "--iptables-backend=legacy"}));
  EXPECT_EQ(r.spec.metadata_ip, "169.254.169.254");
  EXPECT_EQ(r.spec.metadata_port, 80);
  EXPECT_EQ(r.spec.target_ip, "127.0.0.1");
  EXPECT_EQ(r.spec.target_port, 3000);
  EXPECT_EQ(r.interval, 20s);
  EXPECT_EQ(r.backend, iptables::BackendChoice::Legacy);
  EXPECT_EQ(cleanupOptions(configOf({"--iptables-backend=nft"})).backend,
            iptables::BackendChoice::Nft);
}

TEST(OptionsTest, AHandOverIsAwaitedOnlyWhenPossibleAndNoUninstall) {
  const auto config = configOf({});
  EXPECT_TRUE(shouldAwaitSuccessor(config, "kube-system/nmi", std::nullopt));
  EXPECT_FALSE(shouldAwaitSuccessor(config, "", std::nullopt));
  EXPECT_FALSE(
      shouldAwaitSuccessor(configOf({"--handover-wait-sec=0"}), "kube-system/nmi", std::nullopt));
  kube::ExitDecision uninstall;
  uninstall.action = kube::ExitAction::RemoveRules;
  EXPECT_FALSE(shouldAwaitSuccessor(config, "kube-system/nmi", uninstall));
  kube::ExitDecision keep;
  keep.action = kube::ExitAction::KeepRules;
  EXPECT_TRUE(shouldAwaitSuccessor(config, "kube-system/nmi", keep));
}

}  // namespace
}  // namespace nmi::app
