#include "config/config.h"

#include <algorithm>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/fakes/config_test_util.h"

namespace nmi::config {
namespace {

using testing::configOf;
using testing::errorOf;
using testing::FakeEnv;
using ::testing::HasSubstr;
using testing::parseFlags;
using ::testing::StartsWith;

using namespace std::chrono_literals;  // NOLINT(google-build-using-namespace): literals only

TEST(ConfigDefaultsTest, DefaultsEqualTheOriginal) {
  const Config c = configOf({});
  EXPECT_EQ(c.server.listen_address, "127.0.0.1");
  EXPECT_EQ(c.server.port, 2579);
  EXPECT_EQ(c.server.probe_port, 8080);
  EXPECT_EQ(c.server.metrics_port, 9090);
  EXPECT_EQ(c.metadata.ip, "169.254.169.254");
  EXPECT_EQ(c.metadata.port, 80);
  EXPECT_TRUE(c.metadata.header_required);
  EXPECT_FALSE(c.metadata.block_instance_metadata);
  EXPECT_FALSE(c.metadata.set_retry_after_header);
  EXPECT_EQ(c.identity.mode, OperationMode::Standard);
  EXPECT_FALSE(c.identity.force_namespaced);
  EXPECT_EQ(c.identity.node_name, "");
  EXPECT_EQ(c.identity.mic_namespace, "default");
  EXPECT_TRUE(c.identity.scale_features);
  EXPECT_EQ(c.identity.retry_attempts_for_created, 16);
  EXPECT_EQ(c.identity.retry_attempts_for_assigned, 4);
  EXPECT_EQ(c.identity.find_identity_retry_interval, 5s);
  EXPECT_EQ(c.token.custom_user_agent, "");
  EXPECT_EQ(c.iptables.update_interval, 60s);
  EXPECT_FALSE(c.iptables.enable_conntrack_deletion);
  EXPECT_FALSE(c.iptables.allow_kubenet);
  EXPECT_EQ(c.iptables.kubelet_config, "/etc/default/kubelet");
  EXPECT_EQ(c.log.format, LogFormat::Text);
  EXPECT_EQ(c.log.verbosity, 0);
  EXPECT_TRUE(c.warnings.empty());
}

TEST(ConfigDefaultsTest, NewFlagsKeepTheirDocumentedDefaults) {
  const Config c = configOf({});
  EXPECT_EQ(c.server.io_threads, 2);
  EXPECT_EQ(c.server.max_connections, 4096);
  EXPECT_EQ(c.server.max_connections_per_peer, 128);
  EXPECT_EQ(c.server.header_timeout, 10s);
  EXPECT_EQ(c.server.idle_timeout, 60s);
  EXPECT_EQ(c.server.shutdown_grace, 5s);
  EXPECT_EQ(c.server.handover_wait, 20s);
  EXPECT_EQ(c.metadata.token_endpoint, "169.254.169.254:80");
  EXPECT_FALSE(c.metadata.disable_host_token);
  EXPECT_EQ(c.identity.pod_wait, 2000ms);
  EXPECT_EQ(c.identity.identity_file, "");
  EXPECT_EQ(c.identity.kubeconfig, "");
  EXPECT_EQ(c.identity.service_account_dir, "/var/run/secrets/kubernetes.io/serviceaccount");
  EXPECT_EQ(c.identity.watch_silence_timeout, 90s);
  EXPECT_EQ(c.identity.secret_cache_ttl, 30s);
  EXPECT_EQ(c.token.aad_ca_file, "");
  EXPECT_EQ(c.token.retry_budget, 30s);
  EXPECT_EQ(c.token.refresh_ahead, 300s);
  EXPECT_EQ(c.token.min_lifetime, 60s);
  EXPECT_EQ(c.token.cache_max_entries, 4096);
  EXPECT_EQ(c.token.imds_max_concurrent, 5);
  EXPECT_EQ(c.token.per_pod_max_keys, 32);
  EXPECT_DOUBLE_EQ(c.token.per_pod_miss_rate, 5.0);
  EXPECT_EQ(c.token.per_pod_miss_burst, 20);
}

TEST(ConfigDefaultsTest, AnEmptyArgvIsAccepted) {
  const Result<ParseOutcome> outcome = parse({}, testing::noEnv);
  ASSERT_TRUE(outcome.has_value());
  EXPECT_EQ(outcome->config.server.port, 2579);
}

// Every Go/pflag spelling of a value flag.
class ValueFormTest : public ::testing::TestWithParam<std::vector<std::string>> {};

TEST_P(ValueFormTest, SetsTheValue) {
  const Result<ParseOutcome> outcome = parse(testing::withProgram(GetParam()), testing::noEnv);
  ASSERT_TRUE(outcome.has_value()) << outcome.error().message;
  EXPECT_EQ(outcome->config.server.port, 3000);
  EXPECT_EQ(outcome->config.identity.node_name, "node-1");
}

INSTANTIATE_TEST_SUITE_P(
    GoForms, ValueFormTest,
    ::testing::Values(std::vector<std::string>{"--nmi-port=3000", "--node=node-1"},
                      std::vector<std::string>{"--nmi-port", "3000", "--node", "node-1"},
                      std::vector<std::string>{"-nmi-port=3000", "-node=node-1"},
                      std::vector<std::string>{"-nmi-port", "3000", "-node", "node-1"},
                      std::vector<std::string>{"-nmi-port=3000", "--node", "node-1"}));

class VerbosityFormTest : public ::testing::TestWithParam<std::vector<std::string>> {};

TEST_P(VerbosityFormTest, SetsTheLevel) {
  const Result<ParseOutcome> outcome = parse(testing::withProgram(GetParam()), testing::noEnv);
  ASSERT_TRUE(outcome.has_value()) << outcome.error().message;
  EXPECT_EQ(outcome->config.log.verbosity, 2);
}

INSTANTIATE_TEST_SUITE_P(KlogForms, VerbosityFormTest,
                         ::testing::Values(std::vector<std::string>{"-v=2"},
                                           std::vector<std::string>{"-v", "2"},
                                           std::vector<std::string>{"--v=2"},
                                           std::vector<std::string>{"--v", "2"},
                                           std::vector<std::string>{"-v2"}));

TEST(ConfigFormTest, BareBooleanMeansTrue) {
  EXPECT_TRUE(configOf({"--forceNamespaced"}).identity.force_namespaced);
  EXPECT_TRUE(configOf({"-block-instance-metadata"}).metadata.block_instance_metadata);
}

TEST(ConfigFormTest, BooleanTakesFalseAfterEquals) {
  EXPECT_FALSE(configOf({"--metadata-header-required=false"}).metadata.header_required);
  EXPECT_FALSE(configOf({"-enableScaleFeatures=false"}).identity.scale_features);
}

class BoolSpellingTest : public ::testing::TestWithParam<std::pair<std::string, bool>> {};

TEST_P(BoolSpellingTest, FollowsStrconvParseBool) {
  const auto& [spelling, expected] = GetParam();
  // Start from the opposite of the expected value so the flag must change it.
  const std::string start =
      expected ? "--allow-network-plugin-kubenet=false" : "--allow-network-plugin-kubenet=true";
  const Config c = configOf({start, "--allow-network-plugin-kubenet=" + spelling});
  EXPECT_EQ(c.iptables.allow_kubenet, expected);
}

INSTANTIATE_TEST_SUITE_P(GoSpellings, BoolSpellingTest,
                         ::testing::Values(std::pair{"1", true}, std::pair{"t", true},
                                           std::pair{"T", true}, std::pair{"TRUE", true},
                                           std::pair{"true", true}, std::pair{"True", true},
                                           std::pair{"0", false}, std::pair{"f", false},
                                           std::pair{"F", false}, std::pair{"FALSE", false},
                                           std::pair{"false", false}, std::pair{"False", false}));

TEST(ConfigFormTest, OtherBooleanSpellingsAreRejected) {
  for (const std::string bad : {"yes", "on", "tRuE", "2", ""}) {
    EXPECT_EQ(errorOf({"--enableScaleFeatures=" + bad}),
              "invalid value \"" + bad +
                  "\" for flag --enableScaleFeatures: not a boolean (use true or false)");
  }
}

TEST(ConfigFormTest, BooleanValueAsSeparateWordIsAPositionalError) {
  const std::string message = errorOf({"--enableScaleFeatures", "false"});
  EXPECT_THAT(message, StartsWith("unexpected argument \"false\""));
  EXPECT_THAT(message, HasSubstr("--enableScaleFeatures=false"));
}

TEST(ConfigFormTest, LastOccurrenceWins) {
  EXPECT_EQ(configOf({"--nmi-port=1000", "--nmi-port", "2000"}).server.port, 2000);
  EXPECT_FALSE(
      configOf({"--forceNamespaced", "--forceNamespaced=false"}).identity.force_namespaced);
  EXPECT_EQ(configOf({"-v=5", "--v=1"}).log.verbosity, 1);
  EXPECT_EQ(configOf({"--node=a", "-node", "b"}).identity.node_name, "b");
}

TEST(ConfigFormTest, ValuesInBracketsAreKeptAsGiven) {
  EXPECT_EQ(configOf({"--custom-user-agent=[bot]"}).token.custom_user_agent, "[bot]");
  EXPECT_EQ(configOf({"--custom-user-agent", "[a],[b]"}).token.custom_user_agent, "[a],[b]");
  EXPECT_EQ(configOf({"--node=[x]"}).identity.node_name, "[x]");
}

TEST(ConfigFormTest, EveryOccurrenceIsChecked) {
  EXPECT_EQ(errorOf({"--nmi-port=abc", "--nmi-port=2000"}),
            "invalid value \"abc\" for flag --nmi-port: not a port number");
}

TEST(ConfigFormTest, ValueFlagTakesTheNextWordEvenWithADash) {
  EXPECT_EQ(configOf({"--custom-user-agent", "-x"}).token.custom_user_agent, "-x");
  EXPECT_EQ(configOf({"--node", "--nmi-port"}).identity.node_name, "--nmi-port");
}

TEST(ConfigFormTest, ValuesKeepTheirShape) {
  EXPECT_EQ(configOf({"--custom-user-agent=a=b c"}).token.custom_user_agent, "a=b c");
  EXPECT_EQ(configOf({"--custom-user-agent='q' \"x\""}).token.custom_user_agent, "'q' \"x\"");
  EXPECT_EQ(configOf({"--kubelet-config=", "--node=n"}).iptables.kubelet_config, "");
  EXPECT_EQ(configOf({"--kubelet-config", "", "--node=n"}).identity.node_name, "n");
  EXPECT_EQ(configOf({"--node=-"}).identity.node_name, "-");
}

TEST(ConfigFormTest, IntegersTakeGoSpellings) {
  EXPECT_EQ(configOf({"--retry-attempts-for-created=0x10"}).identity.retry_attempts_for_created,
            16);
  EXPECT_EQ(configOf({"--retry-attempts-for-created=1_000"}).identity.retry_attempts_for_created,
            1000);
  EXPECT_EQ(configOf({"--retry-attempts-for-created=010"}).identity.retry_attempts_for_created, 8);
}

TEST(ConfigFormTest, DoubleDashEndsFlags) {
  EXPECT_EQ(configOf({"--nmi-port=3000", "--"}).server.port, 3000);
  EXPECT_THAT(errorOf({"--", "--nmi-port=3000"}),
              StartsWith("unexpected argument \"--nmi-port=3000\""));
}

TEST(ConfigFormTest, PositionalArgumentsAreRejected) {
  EXPECT_EQ(errorOf({"run"}), "unexpected argument \"run\": nmi takes no positional arguments");
  EXPECT_THAT(errorOf({"--node=a", "-"}), StartsWith("unexpected argument \"-\""));
}

TEST(ConfigFormTest, MissingValueIsRejected) {
  EXPECT_EQ(errorOf({"--node"}), "flag --node needs a value");
  EXPECT_EQ(errorOf({"-v"}), "flag -v needs a value");
}

TEST(ConfigFormTest, BadFlagSyntaxIsRejected) {
  EXPECT_EQ(errorOf({"---node=a"}), "bad flag syntax: ---node=a");
  EXPECT_EQ(errorOf({"--=a"}), "bad flag syntax: --=a");
}

TEST(ConfigFlagsTest, UnknownFlagIsRejectedByName) {
  EXPECT_EQ(errorOf({"--no-such-flag=1"}),
            "unknown flag --no-such-flag (see nmi --help for the flags nmi accepts)");
  EXPECT_THAT(errorOf({"-bogus"}), StartsWith("unknown flag -bogus "));
  EXPECT_THAT(errorOf({"--micnamespace=x"}), StartsWith("unknown flag --micnamespace "));
  EXPECT_THAT(errorOf({"--debug"}), StartsWith("unknown flag --debug "));
}

TEST(ConfigFlagsTest, HostIpIsRejected) {
  for (const auto& args : {std::vector<std::string>{"nmi", "--host-ip=10.0.0.4"},
                           std::vector<std::string>{"nmi", "-host-ip", "10.0.0.4"}}) {
    const Result<ParseOutcome> outcome = parse(args, testing::noEnv);
    ASSERT_FALSE(outcome.has_value());
    EXPECT_EQ(outcome.error().code, ErrorCode::InvalidArgument);
    EXPECT_THAT(outcome.error().message, HasSubstr("host-ip is not supported"));
    EXPECT_THAT(outcome.error().message, HasSubstr("removed in aad-pod-identity v1.6.2"));
  }
}

class CompatFlagTest : public ::testing::TestWithParam<std::string> {};

TEST_P(CompatFlagTest, IsAcceptedWithOneWarning) {
  const std::string& arg = GetParam();
  const std::string name = arg.substr(2, arg.find('=') - 2);
  const Config c = configOf({arg, arg});  // given twice: still one line
  EXPECT_EQ(c.warnings, std::vector<std::string>{
                            "flag --" + name + " is accepted for compatibility and has no effect"});
}

INSTANTIATE_TEST_SUITE_P(
    OriginalAndKlog, CompatFlagTest,
    ::testing::Values("--enableProfile", "--enableProfile=false", "--vmodule=server=4,main=2",
                      "--logtostderr=true", "--alsologtostderr", "--log_dir=/var/log",
                      "--log_file=/var/log/nmi.log", "--log_file_max_size=100", "--skip_headers",
                      "--skip_log_headers", "--stderrthreshold=WARNING", "--stderrthreshold=1",
                      "--add_dir_header", "--one_output", "--log_backtrace_at=main.go:10",
                      "--MICNamespace=kube-system"));

TEST(ConfigFlagsTest, MicNamespaceIsStoredAndWarned) {
  const Config c = configOf({"-MICNamespace", "kube-system"});
  EXPECT_EQ(c.identity.mic_namespace, "kube-system");
  EXPECT_EQ(c.warnings.size(), 1U);
}

TEST(ConfigFlagsTest, WarningsFollowTheFlagTableOrder) {
  const Config c = configOf({"--one_output", "--enableProfile", "--nmi-port=3000"});
  EXPECT_EQ(c.warnings, (std::vector<std::string>{
                            "flag --enableProfile is accepted for compatibility and has no effect",
                            "flag --one_output is accepted for compatibility and has no effect"}));
}

TEST(ConfigFlagsTest, CompatValuesAreCheckedLikeTheOriginal) {
  EXPECT_THAT(errorOf({"--logtostderr=maybe"}), HasSubstr("for flag --logtostderr: not a boolean"));
  EXPECT_THAT(errorOf({"--stderrthreshold=LOUD"}), HasSubstr("for flag --stderrthreshold:"));
  EXPECT_THAT(errorOf({"--log_file_max_size=-1"}), HasSubstr("for flag --log_file_max_size:"));
  EXPECT_THAT(errorOf({"--vmodule=server"}), HasSubstr("for flag --vmodule:"));
  EXPECT_THAT(errorOf({"--log_backtrace_at=main.go"}), HasSubstr("for flag --log_backtrace_at:"));
  EXPECT_THAT(errorOf({"--enableProfile", "yes"}), StartsWith("unexpected argument \"yes\""));
}

TEST(ConfigEnvTest, ForceNamespacedOnlyForExactlyTrue) {
  FakeEnv env;
  env.vars["FORCENAMESPACED"] = "true";
  EXPECT_TRUE(configOf({}, FakeEnv::get).identity.force_namespaced);
  for (const char* other : {"True", "1", "TRUE", "yes", ""}) {
    env.vars["FORCENAMESPACED"] = other;
    EXPECT_FALSE(configOf({}, FakeEnv::get).identity.force_namespaced) << other;
  }
  env.vars["FORCENAMESPACED"] = "false";
  EXPECT_TRUE(configOf({"--forceNamespaced"}, FakeEnv::get).identity.force_namespaced);
}

TEST(ConfigEnvTest, KubeconfigFromEnvUnlessTheFlagIsGiven) {
  FakeEnv env;
  env.vars["KUBECONFIG"] = "/env/kubeconfig";
  EXPECT_EQ(configOf({}, FakeEnv::get).identity.kubeconfig, "/env/kubeconfig");
  EXPECT_EQ(configOf({"--kubeconfig=/flag/kc"}, FakeEnv::get).identity.kubeconfig, "/flag/kc");
  EXPECT_EQ(configOf({"--kubeconfig="}, FakeEnv::get).identity.kubeconfig, "");
}

TEST(ConfigEnvTest, NodeNameFromEnvUnlessTheFlagIsGiven) {
  FakeEnv env;
  env.vars["NODE_NAME"] = "aks-node-0";
  EXPECT_EQ(configOf({}, FakeEnv::get).identity.node_name, "aks-node-0");
  EXPECT_EQ(configOf({"--node=other"}, FakeEnv::get).identity.node_name, "other");
}

TEST(ConfigEnvTest, DaemonSetNameFromTheFlagAndNamespaceFromEnv) {
  FakeEnv env;
  Config c = configOf({}, FakeEnv::get);
  EXPECT_EQ(c.iptables.daemonset_name, "");
  EXPECT_EQ(c.iptables.daemonset_namespace, "");
  env.vars["POD_NAMESPACE"] = "kube-system";
  env.vars["POD_NAME"] = "nmi-x7k2p";
  c = configOf({"--daemonset-name=nmi"}, FakeEnv::get);
  EXPECT_EQ(c.iptables.daemonset_name, "nmi");
  EXPECT_EQ(c.iptables.daemonset_namespace, "kube-system");
  EXPECT_EQ(c.iptables.pod_name, "nmi-x7k2p");
}

TEST(ConfigEnvTest, ProxiesPreferUpperCaseAndSkipEmpty) {
  FakeEnv env;
  env.vars["https_proxy"] = "http://lower:3128";
  env.vars["no_proxy"] = "lower.local";
  Config c = configOf({}, FakeEnv::get);
  EXPECT_EQ(c.token.https_proxy, "http://lower:3128");
  EXPECT_EQ(c.token.no_proxy, "lower.local");
  env.vars["HTTPS_PROXY"] = "http://upper:3128";
  env.vars["NO_PROXY"] = "upper.local,169.254.169.254";
  c = configOf({}, FakeEnv::get);
  EXPECT_EQ(c.token.https_proxy, "http://upper:3128");
  EXPECT_EQ(c.token.no_proxy, "upper.local,169.254.169.254");
  env.vars["HTTPS_PROXY"] = "";
  EXPECT_EQ(configOf({}, FakeEnv::get).token.https_proxy, "http://lower:3128");
}

TEST(ConfigEnvTest, NoEnvironmentLeavesProxiesEmpty) {
  const Config c = configOf({});
  EXPECT_EQ(c.token.https_proxy, "");
  EXPECT_EQ(c.token.no_proxy, "");
}

TEST(ConfigEnvTest, ProcessEnvReadsTheRealEnvironment) {
  EXPECT_TRUE(processEnv("PATH").has_value());
  EXPECT_FALSE(processEnv("NMI_CONFIG_TEST_VARIABLE_THAT_IS_NEVER_SET").has_value());
}

TEST(ConfigHelpTest, HelpFlagsPrintHelp) {
  for (const char* flag : {"--help", "-help", "-h", "--help=true"}) {
    const Result<ParseOutcome> outcome = parseFlags({flag});
    ASSERT_TRUE(outcome.has_value()) << flag;
    EXPECT_EQ(outcome->action, ParseOutcome::Action::PrintHelp) << flag;
    EXPECT_THAT(outcome->text, HasSubstr("--nmi-port")) << flag;
  }
}

TEST(ConfigHelpTest, HelpStopsParsingButEarlierErrorsStand) {
  const Result<ParseOutcome> outcome = parseFlags({"--help", "--no-such-flag", "--nmi-port=0"});
  ASSERT_TRUE(outcome.has_value());
  EXPECT_EQ(outcome->action, ParseOutcome::Action::PrintHelp);
  EXPECT_THAT(errorOf({"--no-such-flag", "--help"}), StartsWith("unknown flag --no-such-flag"));
}

TEST(ConfigHelpTest, HelpListsEveryFlagOnOneLineInGroups) {
  const Result<ParseOutcome> outcome = parseFlags({"--help"});
  ASSERT_TRUE(outcome.has_value());
  const std::string& text = outcome->text;
  for (const char* group : {"General:", "Server:", "Metadata endpoint:", "Identity:", "Token:",
                            "iptables:", "Logging:", "Compatibility (accepted, no effect):"}) {
    EXPECT_THAT(text, HasSubstr(group));
  }
  const std::vector<std::string> flags = {"version",
                                          "nmi-listen-address",
                                          "nmi-port",
                                          "http-probe-port",
                                          "prometheus-port",
                                          "io-threads",
                                          "max-connections",
                                          "max-connections-per-peer",
                                          "header-read-timeout-sec",
                                          "idle-timeout-sec",
                                          "shutdown-grace-sec",
                                          "handover-wait-sec",
                                          "metadata-ip",
                                          "metadata-port",
                                          "imds-token-endpoint",
                                          "metadata-header-required",
                                          "block-instance-metadata",
                                          "disable-host-token",
                                          "set-retry-after-header",
                                          "operation-mode",
                                          "forceNamespaced",
                                          "node",
                                          "MICNamespace",
                                          "enableScaleFeatures",
                                          "retry-attempts-for-created",
                                          "retry-attempts-for-assigned",
                                          "find-identity-retry-interval",
                                          "pod-wait-timeout-ms",
                                          "identity-file",
                                          "kubeconfig",
                                          "service-account-dir",
                                          "watch-silence-timeout-sec",
                                          "secret-cache-ttl-sec",
                                          "aad-ca-file",
                                          "aad-allowed-hosts",
                                          "custom-user-agent",
                                          "token-retry-budget-sec",
                                          "token-refresh-ahead-sec",
                                          "token-min-lifetime-sec",
                                          "token-cache-max-entries",
                                          "imds-max-concurrent",
                                          "per-pod-max-tokens",
                                          "per-pod-miss-rate",
                                          "per-pod-miss-burst",
                                          "ipt-update-interval-sec",
                                          "ipt-check-interval-sec",
                                          "iptables-backend",
                                          "iptables-lock-file",
                                          "disable-interception",
                                          "enable-conntrack-deletion",
                                          "allow-network-plugin-kubenet",
                                          "kubelet-config",
                                          "daemonset-name",
                                          "log-format",
                                          "v",
                                          "enableProfile",
                                          "vmodule",
                                          "logtostderr",
                                          "alsologtostderr",
                                          "log_dir",
                                          "log_file",
                                          "log_file_max_size",
                                          "skip_headers",
                                          "skip_log_headers",
                                          "stderrthreshold",
                                          "add_dir_header",
                                          "one_output",
                                          "log_backtrace_at"};
  for (const std::string& flag : flags) {
    // Each flag heads exactly one line, which also carries its description.
    int lines = 0;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
      std::string_view rest(line);
      rest.remove_prefix(std::min(rest.find_first_not_of(' '), rest.size()));
      if (rest.starts_with("-v,")) {
        rest.remove_prefix(3);
      }
      const std::string head = "--" + flag + " ";
      if (rest.starts_with(head)) {
        ++lines;
        // The description follows on the same line.
        EXPECT_NE(rest.find_first_not_of(' ', head.size()), std::string_view::npos) << line;
        EXPECT_GT(rest.size(), head.size() + 30) << line;
      }
    }
    EXPECT_EQ(lines, 1) << flag;
  }
  EXPECT_THAT(text, HasSubstr("(default 2579)"));
  EXPECT_THAT(text, HasSubstr("(default \"127.0.0.1\")"));
  EXPECT_THAT(text, HasSubstr("[compatibility: no effect]"));
  EXPECT_THAT(text, ::testing::Not(HasSubstr("host-ip")));
}

TEST(ConfigVersionTest, VersionFlagPrintsTheVersion) {
  for (const char* flag : {"--version", "-version", "--version=true"}) {
    const Result<ParseOutcome> outcome = parseFlags({flag});
    ASSERT_TRUE(outcome.has_value()) << flag;
    EXPECT_EQ(outcome->action, ParseOutcome::Action::PrintVersion) << flag;
    EXPECT_EQ(outcome->text, "nmi " NMI_EXPECTED_VERSION) << flag;
  }
}

TEST(ConfigVersionTest, VersionFalseRuns) {
  const Result<ParseOutcome> outcome = parseFlags({"--version", "--version=false"});
  ASSERT_TRUE(outcome.has_value());
  EXPECT_EQ(outcome->action, ParseOutcome::Action::Run);
}

TEST(ConfigVersionTest, VersionSkipsValueChecksButNotSyntax) {
  const Result<ParseOutcome> outcome = parseFlags({"--nmi-port=0", "--version"});
  ASSERT_TRUE(outcome.has_value());
  EXPECT_EQ(outcome->action, ParseOutcome::Action::PrintVersion);
  EXPECT_THAT(errorOf({"--version", "--no-such-flag"}), StartsWith("unknown flag"));
  EXPECT_EQ(errorOf({"--version=maybe"}),
            "invalid value \"maybe\" for flag --version: not a boolean (use true or false)");
}

}  // namespace
}  // namespace nmi::config
