#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace nmi::config {

enum class OperationMode { Standard, Managed };
enum class LogFormat { Text, Json };

// Where nmi listens and how it bounds its clients.
struct ServerConfig {
  std::string listen_address = "127.0.0.1";          // --nmi-listen-address
  std::uint16_t port = 2579;                         // --nmi-port
  std::uint16_t probe_port = 8080;                   // --http-probe-port (/healthz, /readyz)
  std::uint16_t metrics_port = 9090;                 // --prometheus-port (/metrics)
  int io_threads = 2;                                // --io-threads
  int max_connections = 4096;                        // --max-connections
  int max_connections_per_peer = 128;                // --max-connections-per-peer
  std::chrono::milliseconds header_timeout{10'000};  // --header-read-timeout-sec
  std::chrono::milliseconds idle_timeout{60'000};    // --idle-timeout-sec
  std::chrono::milliseconds shutdown_grace{5'000};   // --shutdown-grace-sec
  // On SIGTERM without an uninstall, how long nmi keeps serving until the DaemonSet's next pod on
  // this node serves (a `kubectl delete pod` starts it only then).
  std::chrono::milliseconds handover_wait{20'000};  // --handover-wait-sec
};

// The metadata endpoint nmi stands in for.
struct MetadataConfig {
  std::string ip = "169.254.169.254";  // --metadata-ip (iptables match and proxy target)
  std::uint16_t port = 80;             // --metadata-port
  // Where nmi itself asks IMDS for managed-identity tokens, host:port. The original hard-codes
  // 169.254.169.254:80; tests point it at the emulator.
  std::string token_endpoint = "169.254.169.254:80";  // --imds-token-endpoint
  bool header_required = true;                        // --metadata-header-required
  bool block_instance_metadata = false;               // --block-instance-metadata
  bool disable_host_token = false;                    // --disable-host-token
  bool set_retry_after_header = false;                // --set-retry-after-header
  // Pods' requests forwarded to IMDS in flight at most, overall and from one pod.
  int proxy_max_concurrent = 32;         // --proxy-max-concurrent
  int proxy_max_concurrent_per_pod = 4;  // --proxy-max-concurrent-per-pod
};

// How identities are found and how long a request may wait for them.
struct IdentityConfig {
  OperationMode mode = OperationMode::Standard;  // --operation-mode
  bool force_namespaced = false;                 // --forceNamespaced or env FORCENAMESPACED=true
  std::string node_name;                         // --node, else env NODE_NAME
  std::string mic_namespace = "default";         // --MICNamespace (accepted; see docs/compat.md)
  bool scale_features = true;                    // --enableScaleFeatures
  int retry_attempts_for_created = 16;           // --retry-attempts-for-created
  int retry_attempts_for_assigned = 4;           // --retry-attempts-for-assigned
  std::chrono::seconds find_identity_retry_interval{5};  // --find-identity-retry-interval
  // How long a request from an address no known pod holds waits for one to appear.
  std::chrono::milliseconds pod_wait{2'000};  // --pod-wait-timeout-ms
  std::string identity_file;                  // --identity-file (file-backed identity source)
  std::string kubeconfig;                     // --kubeconfig or env KUBECONFIG
  // In-cluster configuration: the service-account token and CA directory.
  std::string service_account_dir =
      "/var/run/secrets/kubernetes.io/serviceaccount";  // --service-account-dir
  // A watch that receives nothing for this long is closed and re-opened.
  std::chrono::seconds watch_silence_timeout{90};  // --watch-silence-timeout-sec
  // How long a Secret read from the API server is reused (0: not cached).
  std::chrono::seconds secret_cache_ttl{30};  // --secret-cache-ttl-sec
};

// Token acquisition and caching.
struct TokenConfig {
  std::string aad_ca_file;                  // --aad-ca-file (extra CA bundle for Azure AD; tests)
  std::string custom_user_agent;            // --custom-user-agent
  std::chrono::seconds retry_budget{30};    // --token-retry-budget-sec
  std::chrono::seconds refresh_ahead{300};  // --token-refresh-ahead-sec
  std::chrono::seconds min_lifetime{60};    // --token-min-lifetime-sec
  int cache_max_entries = 4096;             // --token-cache-max-entries
  int imds_max_concurrent = 5;              // --imds-max-concurrent
  int per_pod_max_keys = 32;                // --per-pod-max-tokens
  double per_pod_miss_rate = 5.0;           // --per-pod-miss-rate (misses per second)
  int per_pod_miss_burst = 20;              // --per-pod-miss-burst
  // --aad-allowed-hosts (comma-separated, repeatable): Azure AD hosts, beyond the Azure clouds',
  // that service-principal credentials may be sent to: "host", "host:port", "[v6]", "[v6]:port".
  std::vector<std::string> aad_allowed_hosts;
  // HTTPS_PROXY / NO_PROXY from the environment, for Azure AD calls.
  std::string https_proxy;
  std::string no_proxy;
};

enum class IptablesBackend { Auto, Nft, Legacy };

// Interception: the iptables rules that send pods' metadata traffic to nmi (docs/operations.md,
// "Interception (iptables)").
struct IptablesConfig {
  std::chrono::seconds update_interval{60};             // --ipt-update-interval-sec (caps the next)
  std::chrono::seconds check_interval{5};               // --ipt-check-interval-sec
  IptablesBackend backend = IptablesBackend::Auto;      // --iptables-backend
  std::string lock_file = "/run/xtables.lock";          // --iptables-lock-file
  bool disable_interception = false;                    // --disable-interception
  bool enable_conntrack_deletion = false;               // --enable-conntrack-deletion (always on)
  bool allow_kubenet = false;                           // --allow-network-plugin-kubenet
  std::string kubelet_config = "/etc/default/kubelet";  // --kubelet-config
  // Uninstall: nmi's own DaemonSet. When set (and the API server is the identity source), nmi
  // watches it and, on SIGTERM, removes its rules if it is gone or being deleted.
  std::string daemonset_name;  // --daemonset-name
  // Its namespace: env POD_NAMESPACE (downward API), else the service account's namespace file.
  std::string daemonset_namespace;
  // nmi's own pod: env POD_NAME (downward API). Its controller reference, read from the pod
  // cache, names the DaemonSet (uid included) nmi belongs to.
  std::string pod_name;
};

struct LogConfig {
  LogFormat format = LogFormat::Text;  // --log-format
  int verbosity = 0;                   // -v / --v (klog levels: 0 info, >=4 debug, >=6 trace)
};

struct Config {
  ServerConfig server;
  MetadataConfig metadata;
  IdentityConfig identity;
  TokenConfig token;
  IptablesConfig iptables;
  LogConfig log;
  // One line per flag that was accepted for compatibility but has no effect, to be logged at
  // start-up ("flag --enableProfile is accepted for compatibility and has no effect").
  std::vector<std::string> warnings;
};

// What the command line asked for.
struct ParseOutcome {
  // Cleanup: `nmi cleanup [flags]` removes nmi's iptables rules and exits.
  enum class Action { Run, PrintHelp, PrintVersion, Cleanup };
  Action action = Action::Run;
  Config config;
  std::string text;  // help or version text for PrintHelp / PrintVersion
};

// Environment lookups are injected so tests need no real environment.
using GetEnv = std::optional<std::string> (*)(const char* name);
// std::getenv. Not thread-safe against setenv: call it before any thread starts.
std::optional<std::string> processEnv(const char* name);

// Parses argv (argv[0] is the program name) and the environment (FORCENAMESPACED, KUBECONFIG,
// NODE_NAME, POD_NAMESPACE, POD_NAME, HTTPS_PROXY/https_proxy, NO_PROXY/no_proxy), validates every
// value, and returns the Config or an InvalidArgument error whose message is one clear line naming
// the flag. Command-line forms follow the original's pflag + Go flag parsing: --name=value, --name
// value, -name=value, -name value, -v2; booleans as --name or --name=<strconv.ParseBool spelling>;
// the last occurrence of a flag wins. docs/operations.md lists the flags.
Result<ParseOutcome> parse(const std::vector<std::string>& args, GetEnv env = processEnv);

// A host and a port split from "host:port" (IPv6 literals in brackets: "[::1]:80"; the host is
// returned without them). Used for --imds-token-endpoint. Errors: InvalidArgument, saying why.
struct HostPort {
  std::string host;
  std::uint16_t port = 0;
};
Result<HostPort> splitHostPort(std::string_view text);

}  // namespace nmi::config
