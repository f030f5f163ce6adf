#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "config/config.h"
#include "tests/fakes/config_test_util.h"

namespace nmi::config {
namespace {

using testing::configOf;
using testing::errorOf;
using testing::FakeEnv;
using ::testing::HasSubstr;

using namespace std::chrono_literals;  // NOLINT(google-build-using-namespace): literals only

class PortFlagTest : public ::testing::TestWithParam<std::string> {};

TEST_P(PortFlagTest, AcceptsOnlyOneTo65535) {
  const std::string flag = "--" + GetParam();
  for (const std::string bad : {"0", "65536", "-1", "abc", "", "80a", "0x50"}) {
    const std::string why =
        bad == "0" || bad == "65536" ? "must be between 1 and 65535" : "not a port number";
    EXPECT_EQ(errorOf({testing::flagArg(flag, bad)}), testing::invalidMessage(bad, flag, why));
  }
  EXPECT_TRUE(testing::parseFlags({flag + "=65535"}).has_value());
  EXPECT_TRUE(testing::parseFlags({flag + "=1"}).has_value());
}

INSTANTIATE_TEST_SUITE_P(AllPorts, PortFlagTest,
                         ::testing::Values("nmi-port", "http-probe-port", "prometheus-port",
                                           "metadata-port"));

TEST(ConfigValidationTest, PortsAreStored) {
  const Config c = configOf({"--nmi-port=2580", "--http-probe-port=8085", "--prometheus-port=9091",
                             "--metadata-port=8081"});
  EXPECT_EQ(c.server.port, 2580);
  EXPECT_EQ(c.server.probe_port, 8085);
  EXPECT_EQ(c.server.metrics_port, 9091);
  EXPECT_EQ(c.metadata.port, 8081);
}

TEST(ConfigValidationTest, ListenerPortsMustDifferAndTheGivenFlagIsBlamed) {
  EXPECT_EQ(errorOf({"--nmi-port=8080"}),
            "invalid value \"8080\" for flag --nmi-port: same port as --http-probe-port");
  EXPECT_EQ(errorOf({"--http-probe-port=2579"}),
            "invalid value \"2579\" for flag --http-probe-port: same port as --nmi-port");
  EXPECT_EQ(errorOf({"--prometheus-port=8080"}),
            "invalid value \"8080\" for flag --prometheus-port: same port as --http-probe-port");
  EXPECT_EQ(errorOf({"--http-probe-port=7000", "--prometheus-port=7000"}),
            "invalid value \"7000\" for flag --prometheus-port: same port as --http-probe-port");
  // The metadata port is on another host: it may equal a local one.
  EXPECT_EQ(configOf({"--metadata-port=2579"}).metadata.port, 2579);
}

TEST(ConfigValidationTest, AddressesMustBeIpv4) {
  for (const std::string bad : {"localhost", "256.1.1.1", "1.2.3", "01.2.3.4", "::1", ""}) {
    EXPECT_EQ(errorOf({"--nmi-listen-address=" + bad}),
              "invalid value \"" + bad + "\" for flag --nmi-listen-address: not an IPv4 address");
    EXPECT_EQ(errorOf({"--metadata-ip=" + bad}),
              "invalid value \"" + bad + "\" for flag --metadata-ip: not an IPv4 address");
  }
  EXPECT_EQ(configOf({"--nmi-listen-address=0.0.0.0"}).server.listen_address, "0.0.0.0");
  EXPECT_EQ(configOf({"--metadata-ip=10.1.2.3"}).metadata.ip, "10.1.2.3");
  EXPECT_THAT(errorOf({"--metadata-ip=0.0.0.0"}), HasSubstr("not 0.0.0.0"));
}

TEST(ConfigValidationTest, TokenEndpointIsHostAndPort) {
  EXPECT_EQ(configOf({"--imds-token-endpoint=127.0.0.1:18080"}).metadata.token_endpoint,
            "127.0.0.1:18080");
  EXPECT_EQ(configOf({"--imds-token-endpoint=imds-emulator.test:80"}).metadata.token_endpoint,
            "imds-emulator.test:80");
  EXPECT_EQ(configOf({"--imds-token-endpoint=[::1]:80"}).metadata.token_endpoint, "[::1]:80");
  EXPECT_EQ(errorOf({"--imds-token-endpoint=169.254.169.254"}),
            "invalid value \"169.254.169.254\" for flag --imds-token-endpoint: expected host:port");
  EXPECT_THAT(errorOf({"--imds-token-endpoint=host:0"}), HasSubstr("port must be between"));
  EXPECT_THAT(errorOf({"--imds-token-endpoint=:80"}), HasSubstr("the host is missing"));
  EXPECT_THAT(errorOf({"--imds-token-endpoint=a b:80"}), HasSubstr("not a host name"));
  EXPECT_THAT(errorOf({"--imds-token-endpoint=::1:80"}), HasSubstr("in brackets"));
}

TEST(ConfigValidationTest, AadAllowedHostsIsAListOfHostsWithOptionalPorts) {
  EXPECT_TRUE(configOf({}).token.aad_allowed_hosts.empty());
  EXPECT_EQ(configOf({"--aad-allowed-hosts=adfs.contoso.com"}).token.aad_allowed_hosts,
            (std::vector<std::string>{"adfs.contoso.com"}));
  EXPECT_EQ(
      configOf({"--aad-allowed-hosts=adfs.contoso.com, 127.0.0.1:8443,[::1]:9443,[fd00::1],"})
          .token.aad_allowed_hosts,
      (std::vector<std::string>{"adfs.contoso.com", "127.0.0.1:8443", "[::1]:9443", "[fd00::1]"}));
  EXPECT_EQ(configOf({"--aad-allowed-hosts=[::1]"}).token.aad_allowed_hosts,
            (std::vector<std::string>{"[::1]"}));
  EXPECT_EQ(configOf({"--aad-allowed-hosts=[::1],[fd00::2]:8443"}).token.aad_allowed_hosts,
            (std::vector<std::string>{"[::1]", "[fd00::2]:8443"}));
  // Repeated flags add up (a list, like pflag's string slices).
  EXPECT_EQ(configOf({"--aad-allowed-hosts=a.example", "--aad-allowed-hosts", "b.example:444"})
                .token.aad_allowed_hosts,
            (std::vector<std::string>{"a.example", "b.example:444"}));
  EXPECT_TRUE(configOf({"--aad-allowed-hosts="}).token.aad_allowed_hosts.empty());
  EXPECT_EQ(errorOf({"--aad-allowed-hosts=https://adfs.contoso.com"}),
            "invalid value \"https://adfs.contoso.com\" for flag --aad-allowed-hosts: "
            "\"https://adfs.contoso.com\": expected host, host:port or [v6-address]:port, "
            "without scheme, path or user");
  EXPECT_THAT(errorOf({"--aad-allowed-hosts=ok.example,adfs.contoso.com/adfs"}),
              HasSubstr("\"adfs.contoso.com/adfs\": expected host"));
  EXPECT_THAT(errorOf({"--aad-allowed-hosts=a b"}), HasSubstr("not a host name"));
  EXPECT_THAT(errorOf({"--aad-allowed-hosts=host:0"}), HasSubstr("port must be between"));
  EXPECT_THAT(errorOf({"--aad-allowed-hosts=host:"}), HasSubstr("port not a port number"));
  EXPECT_THAT(errorOf({"--aad-allowed-hosts=:443"}), HasSubstr("the host is missing"));
  EXPECT_THAT(errorOf({"--aad-allowed-hosts=user@host"}),
              HasSubstr("without scheme, path or user"));
  EXPECT_THAT(errorOf({"--aad-allowed-hosts=::1"}), HasSubstr("in brackets"));
  EXPECT_THAT(errorOf({"--aad-allowed-hosts=[::1"}), HasSubstr("[v6-address]"));
  EXPECT_THAT(errorOf({"--aad-allowed-hosts=[::g]"}), HasSubstr("not an IPv6 address"));
}

TEST(ConfigValidationTest, OperationModeIsLowerCasedFirst) {
  EXPECT_EQ(configOf({"--operation-mode=Standard"}).identity.mode, OperationMode::Standard);
  const Config managed = configOf({"--operation-mode=MANAGED", "--forceNamespaced"});
  EXPECT_EQ(managed.identity.mode, OperationMode::Managed);
  EXPECT_EQ(errorOf({"--operation-mode=hybrid"}),
            "invalid value \"hybrid\" for flag --operation-mode: must be standard or managed");
}

TEST(ConfigValidationTest, ManagedModeNeedsForceNamespaced) {
  EXPECT_EQ(errorOf({"--operation-mode=Managed"}),
            "invalid value \"Managed\" for flag --operation-mode: managed mode needs "
            "--forceNamespaced (or env FORCENAMESPACED=true)");
  FakeEnv env;
  env.vars["FORCENAMESPACED"] = "true";
  EXPECT_EQ(configOf({"--operation-mode=managed"}, FakeEnv::get).identity.mode,
            OperationMode::Managed);
}

TEST(ConfigValidationTest, LogFormatIsTextOrJson) {
  EXPECT_EQ(configOf({"--log-format=json"}).log.format, LogFormat::Json);
  EXPECT_EQ(configOf({"--log-format=json", "--log-format=text"}).log.format, LogFormat::Text);
  EXPECT_EQ(errorOf({"--log-format=JSON"}),
            "invalid value \"JSON\" for flag --log-format: must be text or json");
}

TEST(ConfigValidationTest, VerbosityIsANonNegativeDecimal) {
  EXPECT_EQ(configOf({"-v=6"}).log.verbosity, 6);
  EXPECT_THAT(errorOf({"-v=-1"}), HasSubstr("for flag --v: not a verbosity level"));
  EXPECT_THAT(errorOf({"-v=0x2"}), HasSubstr("for flag --v:"));
  EXPECT_THAT(errorOf({"--v=99999999999"}), HasSubstr("is too large"));
}

TEST(ConfigValidationTest, RetryAttemptsMayBeZeroButNotNegative) {
  const Config c = configOf({"--retry-attempts-for-created=0", "--retry-attempts-for-assigned=0"});
  EXPECT_EQ(c.identity.retry_attempts_for_created, 0);
  EXPECT_EQ(c.identity.retry_attempts_for_assigned, 0);
  EXPECT_EQ(errorOf({"--retry-attempts-for-assigned=-1"}),
            "invalid value \"-1\" for flag --retry-attempts-for-assigned: must be at least 0");
  EXPECT_EQ(errorOf({"--retry-attempts-for-created=x"}),
            "invalid value \"x\" for flag --retry-attempts-for-created: not an integer");
  EXPECT_EQ(errorOf({"--retry-attempts-for-created=99999999999"}),
            "invalid value \"99999999999\" for flag --retry-attempts-for-created: is too large");
}

TEST(ConfigValidationTest, IntervalsAreAtLeastOneSecond) {
  EXPECT_EQ(configOf({"--find-identity-retry-interval=1"}).identity.find_identity_retry_interval,
            1s);
  EXPECT_EQ(configOf({"--ipt-update-interval-sec=300"}).iptables.update_interval, 300s);
  EXPECT_EQ(errorOf({"--find-identity-retry-interval=0"}),
            "invalid value \"0\" for flag --find-identity-retry-interval: must be at least 1");
  EXPECT_EQ(errorOf({"--ipt-update-interval-sec=0"}),
            "invalid value \"0\" for flag --ipt-update-interval-sec: must be at least 1");
}

TEST(ConfigValidationTest, InterceptionFlags) {
  const Config defaults = configOf({});
  EXPECT_EQ(defaults.iptables.check_interval, 5s);
  EXPECT_EQ(defaults.iptables.backend, IptablesBackend::Auto);
  EXPECT_EQ(defaults.iptables.lock_file, "/run/xtables.lock");
  EXPECT_FALSE(defaults.iptables.disable_interception);
  const Config c = configOf({"--ipt-check-interval-sec=2", "--iptables-backend=legacy",
                             "--iptables-lock-file=/tmp/x.lock", "--disable-interception"});
  EXPECT_EQ(c.iptables.check_interval, 2s);
  EXPECT_EQ(c.iptables.backend, IptablesBackend::Legacy);
  EXPECT_EQ(c.iptables.lock_file, "/tmp/x.lock");
  EXPECT_TRUE(c.iptables.disable_interception);
  EXPECT_EQ(configOf({"--iptables-backend=nft"}).iptables.backend, IptablesBackend::Nft);
  EXPECT_EQ(errorOf({"--iptables-backend=iptables"}),
            "invalid value \"iptables\" for flag --iptables-backend: must be auto, nft or legacy");
  EXPECT_EQ(errorOf({"--ipt-check-interval-sec=0"}),
            "invalid value \"0\" for flag --ipt-check-interval-sec: must be between 1 and 86400");
}

TEST(ConfigValidationTest, CleanupIsASubcommandInFrontOfTheFlags) {
  const Result<ParseOutcome> cleanup = testing::parseFlags({"cleanup", "--iptables-backend=nft"});
  ASSERT_TRUE(cleanup.has_value()) << cleanup.error().message;
  EXPECT_EQ(cleanup->action, ParseOutcome::Action::Cleanup);
  EXPECT_EQ(cleanup->config.iptables.backend, IptablesBackend::Nft);
  EXPECT_EQ(testing::parseFlags({})->action, ParseOutcome::Action::Run);
  // Only as the first word: anywhere else it is a stray positional argument.
  EXPECT_FALSE(testing::parseFlags({"--iptables-backend=nft", "cleanup"}).has_value());
  EXPECT_EQ(testing::parseFlags({"cleanup", "--help"})->action, ParseOutcome::Action::PrintHelp);
}

TEST(ConfigValidationTest, KubernetesSourceFlags) {
  const Config c = configOf(
      {"--service-account-dir=/sa", "--watch-silence-timeout-sec=5", "--secret-cache-ttl-sec=0"});
  EXPECT_EQ(c.identity.service_account_dir, "/sa");
  EXPECT_EQ(c.identity.watch_silence_timeout, 5s);
  EXPECT_EQ(c.identity.secret_cache_ttl, 0s);
  EXPECT_EQ(errorOf({"--watch-silence-timeout-sec=0"}),
            "invalid value \"0\" for flag --watch-silence-timeout-sec: must be between 1 and "
            "3600");
  EXPECT_EQ(errorOf({"--secret-cache-ttl-sec=-1"}),
            "invalid value \"-1\" for flag --secret-cache-ttl-sec: must be between 0 and 3600");
}

TEST(ConfigValidationTest, IoThreadsBetweenOneAnd64) {
  EXPECT_EQ(configOf({"--io-threads=64"}).server.io_threads, 64);
  EXPECT_EQ(configOf({"--io-threads=1"}).server.io_threads, 1);
  EXPECT_EQ(errorOf({"--io-threads=0"}),
            "invalid value \"0\" for flag --io-threads: must be between 1 and 64");
  EXPECT_EQ(errorOf({"--io-threads=65"}),
            "invalid value \"65\" for flag --io-threads: must be between 1 and 64");
}

TEST(ConfigValidationTest, ServerLimitsAndTimeouts) {
  const Config c =
      configOf({"--max-connections=100", "--max-connections-per-peer=10",
                "--header-read-timeout-sec=3", "--idle-timeout-sec=30", "--shutdown-grace-sec=0"});
  EXPECT_EQ(c.server.max_connections, 100);
  EXPECT_EQ(c.server.max_connections_per_peer, 10);
  EXPECT_EQ(c.server.header_timeout, 3000ms);
  EXPECT_EQ(c.server.idle_timeout, 30000ms);
  EXPECT_EQ(c.server.shutdown_grace, 0ms);
  EXPECT_THAT(errorOf({"--max-connections=0"}), HasSubstr("for flag --max-connections: must be"));
  EXPECT_THAT(errorOf({"--header-read-timeout-sec=0"}), HasSubstr("must be between 1 and"));
  EXPECT_THAT(errorOf({"--idle-timeout-sec=-5"}), HasSubstr("must be between 1 and"));
  EXPECT_THAT(errorOf({"--shutdown-grace-sec=-1"}), HasSubstr("must be between 0 and 3600"));
  EXPECT_EQ(errorOf({"--max-connections=100", "--max-connections-per-peer=200"}),
            "invalid value \"200\" for flag --max-connections-per-peer: must not exceed "
            "--max-connections (100)");
}

TEST(ConfigValidationTest, PodWaitIsInMilliseconds) {
  EXPECT_EQ(configOf({"--pod-wait-timeout-ms=250"}).identity.pod_wait, 250ms);
  EXPECT_EQ(configOf({"--pod-wait-timeout-ms=0"}).identity.pod_wait, 0ms);
  EXPECT_THAT(errorOf({"--pod-wait-timeout-ms=-1"}), HasSubstr("must be between 0 and 600000"));
}

TEST(ConfigValidationTest, FilesAreStored) {
  const Config c = configOf({"--identity-file=/etc/nmi/ids.json", "--aad-ca-file=/ca.pem",
                             "--kubelet-config=/etc/kubelet"});
  EXPECT_EQ(c.identity.identity_file, "/etc/nmi/ids.json");
  EXPECT_EQ(c.token.aad_ca_file, "/ca.pem");
  EXPECT_EQ(c.iptables.kubelet_config, "/etc/kubelet");
}

TEST(ConfigValidationTest, OriginalBooleansAreStored) {
  const Config c = configOf({"--block-instance-metadata", "--set-retry-after-header",
                             "--enable-conntrack-deletion", "--allow-network-plugin-kubenet",
                             "--disable-host-token", "--enableScaleFeatures=false"});
  EXPECT_TRUE(c.metadata.block_instance_metadata);
  EXPECT_TRUE(c.metadata.set_retry_after_header);
  EXPECT_TRUE(c.iptables.enable_conntrack_deletion);
  EXPECT_TRUE(c.iptables.allow_kubenet);
  EXPECT_TRUE(c.metadata.disable_host_token);
  EXPECT_FALSE(c.identity.scale_features);
}

TEST(ConfigValidationTest, TokenCountsArePositive) {
  const Config c =
      configOf({"--token-retry-budget-sec=10", "--token-cache-max-entries=10",
                "--imds-max-concurrent=2", "--per-pod-max-tokens=3", "--per-pod-miss-burst=4"});
  EXPECT_EQ(c.token.retry_budget, 10s);
  EXPECT_EQ(c.token.cache_max_entries, 10);
  EXPECT_EQ(c.token.imds_max_concurrent, 2);
  EXPECT_EQ(c.token.per_pod_max_keys, 3);
  EXPECT_EQ(c.token.per_pod_miss_burst, 4);
  for (const char* flag :
       {"--token-retry-budget-sec", "--token-cache-max-entries", "--imds-max-concurrent",
        "--per-pod-max-tokens", "--per-pod-miss-burst", "--token-refresh-ahead-sec"}) {
    EXPECT_THAT(errorOf({std::string(flag) + "=0"}), HasSubstr("must be between 1 and")) << flag;
  }
}

TEST(ConfigValidationTest, MissRateIsAPositiveNumber) {
  EXPECT_DOUBLE_EQ(configOf({"--per-pod-miss-rate=0.5"}).token.per_pod_miss_rate, 0.5);
  EXPECT_DOUBLE_EQ(configOf({"--per-pod-miss-rate=2e1"}).token.per_pod_miss_rate, 20.0);
  for (const std::string bad : {"0", "-1"}) {
    EXPECT_EQ(errorOf({"--per-pod-miss-rate=" + bad}),
              "invalid value \"" + bad + "\" for flag --per-pod-miss-rate: must be greater than 0");
  }
  for (const std::string bad : {"abc", "nan", "inf", ""}) {
    EXPECT_EQ(errorOf({"--per-pod-miss-rate=" + bad}),
              "invalid value \"" + bad + "\" for flag --per-pod-miss-rate: not a number");
  }
}

TEST(ConfigValidationTest, RefreshAheadMustExceedMinLifetime) {
  const Config c = configOf({"--token-refresh-ahead-sec=120", "--token-min-lifetime-sec=0"});
  EXPECT_EQ(c.token.refresh_ahead, 120s);
  EXPECT_EQ(c.token.min_lifetime, 0s);
  EXPECT_EQ(errorOf({"--token-refresh-ahead-sec=60"}),
            "invalid value \"60\" for flag --token-refresh-ahead-sec: --token-refresh-ahead-sec "
            "must be greater than --token-min-lifetime-sec");
  EXPECT_EQ(errorOf({"--token-min-lifetime-sec=400"}),
            "invalid value \"400\" for flag --token-min-lifetime-sec: --token-refresh-ahead-sec "
            "must be greater than --token-min-lifetime-sec");
}

TEST(ConfigValidationTest, UserAgentHasNoControlCharacters) {
  EXPECT_EQ(configOf({"--custom-user-agent=my-app/1.0"}).token.custom_user_agent, "my-app/1.0");
  EXPECT_EQ(errorOf({"--custom-user-agent=a\r\nX-Injected: 1"}),
            "invalid value \"a\\x0d\\x0aX-Injected: 1\" for flag --custom-user-agent: must not "
            "contain control characters (it is sent as an HTTP header)");
}

TEST(ConfigValidationTest, ErrorsComeInFlagTableOrder) {
  EXPECT_THAT(errorOf({"--io-threads=0", "--nmi-port=0"}), HasSubstr("--nmi-port"));
}

}  // namespace
}  // namespace nmi::config
