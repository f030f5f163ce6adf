#include "config/flag_table.h"

#include <limits>

#include "config/values.h"

namespace nmi::config {
namespace {

constexpr int kNoMax = std::numeric_limits<int>::max();
constexpr int kDay = 24 * 60 * 60;

constexpr std::string_view kGeneral = "General";
constexpr std::string_view kServer = "Server";
constexpr std::string_view kMetadata = "Metadata endpoint";
constexpr std::string_view kIdentity = "Identity";
constexpr std::string_view kToken = "Token";
constexpr std::string_view kIptables = "iptables";
constexpr std::string_view kLogging = "Logging";
constexpr std::string_view kCompat = "Compatibility (accepted, no effect)";

void registerServer(FlagSet& f, ServerConfig& c) {
  f.add({"nmi-listen-address", kServer, "address the token proxy listens on"},
        ipv4Into(c.listen_address, true));
  f.add({"nmi-port", kServer, "port the token proxy listens on (and iptables redirects to)"},
        portInto(c.port));
  f.add({"http-probe-port", kServer, "port of /healthz and /readyz, on all addresses"},
        portInto(c.probe_port));
  f.add({"prometheus-port", kServer, "port of /metrics, on all addresses"},
        portInto(c.metrics_port));
  f.add({"io-threads", kServer, "threads serving connections", Origin::New},
        intInto(c.io_threads, 1, 64));
  f.add(
      {"max-connections", kServer,
       "open connections at most; more are answered 503 (Retry-After: 1) and closed", Origin::New},
      intInto(c.max_connections, 1, 1'000'000));
  f.add({"max-connections-per-peer", kServer,
         "open connections from one address at most; more are answered 429 (Retry-After: 1)",
         Origin::New},
        intInto(c.max_connections_per_peer, 1, 1'000'000));
  f.add({"header-read-timeout-sec", kServer, "time a client has to send its request head",
         Origin::New},
        millisFromSecondsInto(c.header_timeout, 1, kDay));
  f.add({"idle-timeout-sec", kServer, "keep-alive connections idle longer are closed", Origin::New},
        millisFromSecondsInto(c.idle_timeout, 1, kDay));
  f.add(
      {"shutdown-grace-sec", kServer, "on SIGTERM, time given to requests in flight", Origin::New},
      millisFromSecondsInto(c.shutdown_grace, 0, 3600));
  f.add({"handover-wait-sec", kServer,
         "on SIGTERM (not an uninstall), keep serving until the DaemonSet's next nmi on this node "
         "serves, this long at most; 0: drain at once",
         Origin::New},
        millisFromSecondsInto(c.handover_wait, 0, 3600));
}

void registerMetadata(FlagSet& f, MetadataConfig& c) {
  f.add({"metadata-ip", kMetadata, "instance metadata IP (iptables match and proxy target)"},
        ipv4Into(c.ip, false));
  f.add({"metadata-port", kMetadata, "instance metadata port"}, portInto(c.port));
  f.add({"imds-token-endpoint", kMetadata,
         "where nmi asks IMDS for managed-identity tokens, host:port", Origin::New},
        hostPortInto(c.token_endpoint));
  f.add({"metadata-header-required", kMetadata, "require the Metadata: true header"},
        boolInto(c.header_required));
  f.add({"block-instance-metadata", kMetadata, "answer 403 to /metadata/instance"},
        boolInto(c.block_instance_metadata));
  f.add({"disable-host-token", kMetadata, "turn off the /host/token endpoint", Origin::New},
        boolInto(c.disable_host_token));
  f.add({"set-retry-after-header", kMetadata,
         "answer 503 with Retry-After while an identity is still being assigned"},
        boolInto(c.set_retry_after_header));
  f.add({"proxy-max-concurrent", kMetadata,
         "pods' requests forwarded to IMDS at once at most; more are answered 503", Origin::New},
        intInto(c.proxy_max_concurrent, 1, 4096));
  f.add({"proxy-max-concurrent-per-pod", kMetadata,
         "requests forwarded to IMDS at once from one pod at most; more are answered 429",
         Origin::New},
        intInto(c.proxy_max_concurrent_per_pod, 1, 4096));
}

void registerIdentity(FlagSet& f, IdentityConfig& c) {
  f.add({"operation-mode", kIdentity, "standard or managed (managed needs --forceNamespaced)"},
        operationModeInto(c.mode));
  f.add({"forceNamespaced", kIdentity,
         "match identities only in the pod's namespace (also env FORCENAMESPACED=true)"},
        boolInto(c.force_namespaced));
  f.add({"node", kIdentity, "name of this node (else env NODE_NAME)"}, stringInto(c.node_name));
  f.add({"MICNamespace", kIdentity, "namespace of MIC; stored, nmi does not exempt MIC pods",
         Origin::Compat},
        stringInto(c.mic_namespace));
  f.add({"enableScaleFeatures", kIdentity, "watch only this node's AzureAssignedIdentities"},
        boolInto(c.scale_features));
  f.add({"retry-attempts-for-created", kIdentity,
         "lookups for an identity in CREATED state (standard mode)"},
        intInto(c.retry_attempts_for_created, 0, kNoMax));
  f.add({"retry-attempts-for-assigned", kIdentity,
         "lookups for an identity in ASSIGNED state (standard mode)"},
        intInto(c.retry_attempts_for_assigned, 0, kNoMax));
  f.add({"find-identity-retry-interval", kIdentity, "seconds between identity lookups"},
        secondsInto(c.find_identity_retry_interval, 1, kNoMax));
  f.add({"pod-wait-timeout-ms", kIdentity,
         "how long a request from an unknown address waits for its pod to appear", Origin::New},
        millisInto(c.pod_wait, 0, 600'000));
  f.add({"identity-file", kIdentity, "read identities from this file instead of the API server",
         Origin::New},
        stringInto(c.identity_file));
  f.add({"kubeconfig", kIdentity, "kubeconfig file (else env KUBECONFIG, else in-cluster)",
         Origin::New},
        stringInto(c.kubeconfig));
  f.add({"service-account-dir", kIdentity,
         "in-cluster: directory of the service-account token and ca.crt", Origin::New},
        stringInto(c.service_account_dir));
  f.add({"watch-silence-timeout-sec", kIdentity,
         "re-open an API watch that receives nothing for this long", Origin::New},
        secondsInto(c.watch_silence_timeout, 1, 3600));
  f.add({"secret-cache-ttl-sec", kIdentity,
         "seconds a Secret read from the API server is reused (0: not cached)", Origin::New},
        secondsInto(c.secret_cache_ttl, 0, 3600));
}

void registerToken(FlagSet& f, TokenConfig& c) {
  f.add({"aad-ca-file", kToken, "extra CA bundle trusted for Azure AD", Origin::New},
        stringInto(c.aad_ca_file));
  f.add({"aad-allowed-hosts", kToken,
         "Azure AD hosts (host[:port],...) service-principal secrets may be sent to, besides the "
         "Azure clouds' (ADFS, Azure Stack)",
         Origin::New},
        authorityListInto(c.aad_allowed_hosts));
  f.add({"custom-user-agent", kToken, "appended to the User-Agent of outgoing requests"},
        userAgentInto(c.custom_user_agent));
  f.add(
      {"token-retry-budget-sec", kToken, "total time spent retrying one token fetch", Origin::New},
      secondsInto(c.retry_budget, 1, 3600));
  f.add({"token-refresh-ahead-sec", kToken, "refresh cached tokens this long before expiry",
         Origin::New},
        secondsInto(c.refresh_ahead, 1, kDay));
  f.add({"token-min-lifetime-sec", kToken, "never serve a token with less lifetime left",
         Origin::New},
        secondsInto(c.min_lifetime, 0, kDay));
  f.add({"token-cache-max-entries", kToken, "tokens kept in the cache at most", Origin::New},
        intInto(c.cache_max_entries, 1, 10'000'000));
  f.add({"imds-max-concurrent", kToken, "concurrent token requests to IMDS at most", Origin::New},
        intInto(c.imds_max_concurrent, 1, 1024));
  f.add({"per-pod-max-tokens", kToken, "distinct cached tokens per pod at most", Origin::New},
        intInto(c.per_pod_max_keys, 1, 1'000'000));
  f.add({"per-pod-miss-rate", kToken, "cache misses per second a pod may cause", Origin::New},
        positiveDoubleInto(c.per_pod_miss_rate));
  f.add({"per-pod-miss-burst", kToken, "burst of cache misses a pod may cause", Origin::New},
        intInto(c.per_pod_miss_burst, 1, 1'000'000));
}

void registerIptables(FlagSet& f, IptablesConfig& c) {
  f.add({"ipt-update-interval-sec", kIptables,
         "seconds between iptables reconciles (caps --ipt-check-interval-sec)"},
        secondsInto(c.update_interval, 1, kNoMax));
  f.add({"ipt-check-interval-sec", kIptables,
         "seconds between checks (and repairs) of nmi's iptables rules", Origin::New},
        secondsInto(c.check_interval, 1, kDay));
  f.add({"iptables-backend", kIptables, "auto (the one the node's rules use), nft or legacy",
         Origin::New},
        iptablesBackendInto(c.backend));
  f.add({"iptables-lock-file", kIptables, "xtables lock file (XTABLES_LOCKFILE; legacy only)",
         Origin::New},
        stringInto(c.lock_file));
  f.add({"disable-interception", kIptables,
         "install no iptables rules (something else sends pods' metadata traffic to nmi)",
         Origin::New},
        boolInto(c.disable_interception));
  f.add({"enable-conntrack-deletion", kIptables,
         "accepted; nmi always deletes conntrack entries to the metadata IP after the first sync"},
        boolInto(c.enable_conntrack_deletion));
  f.add({"allow-network-plugin-kubenet", kIptables, "run even if the node uses kubenet"},
        boolInto(c.allow_kubenet));
  f.add({"kubelet-config", kIptables, "file searched for --network-plugin=kubenet"},
        stringInto(c.kubelet_config));
  f.add({"daemonset-name", kIptables,
         "nmi's DaemonSet (namespace: env POD_NAMESPACE; env POD_NAME: nmi's pod, whose "
         "controller it must be); on SIGTERM the rules are removed only if nmi saw it exist and "
         "then saw it being deleted or gone",
         Origin::New},
        stringInto(c.daemonset_name));
}

void registerCompat(FlagSet& f) {
  const auto any = [](std::string_view) { return true; };
  const auto compat = [&f](std::string_view name, std::string_view help, Binding binding) {
    f.add({name, kCompat, help, Origin::Compat}, std::move(binding));
  };
  compat("enableProfile", "pprof listener on localhost:6060", ignoredBool(false));
  compat("vmodule", "klog per-file verbosity",
         ignoredValue("pattern=N,...", "", isKlogModuleSpec,
                      "expected a comma-separated list of pattern=N"));
  compat("logtostderr", "klog: log to stderr", ignoredBool(true));
  compat("alsologtostderr", "klog: log to stderr as well as files", ignoredBool(false));
  compat("log_dir", "klog: log file directory", ignoredValue("string", "", any, ""));
  compat("log_file", "klog: log file", ignoredValue("string", "", any, ""));
  compat("log_file_max_size", "klog: log file size limit in MB",
         ignoredValue(
             "uint", "1800",
             [](std::string_view t) {
               const auto v = parseGoInt(t);
               return v && *v >= 0;
             },
             "not a non-negative integer"));
  compat("skip_headers", "klog: no header prefixes", ignoredBool(false));
  compat("skip_log_headers", "klog: no headers in log files", ignoredBool(false));
  compat("stderrthreshold", "klog: severity copied to stderr",
         ignoredValue("severity", "2", isKlogSeverity,
                      "expected INFO, WARNING, ERROR, FATAL or a number"));
  compat("add_dir_header", "klog: file directory in headers", ignoredBool(false));
  compat("one_output", "klog: each severity to one file only", ignoredBool(false));
  compat("log_backtrace_at", "klog: stack trace at file:N",
         ignoredValue("file:N", "\":0\"", isKlogTraceLocation, "expected file:N"));
}

}  // namespace

void registerFlags(FlagSet& flags, Config& config, bool& version) {
  flags.add({"version", kGeneral, "print the version and exit"}, boolInto(version));
  registerServer(flags, config.server);
  registerMetadata(flags, config.metadata);
  registerIdentity(flags, config.identity);
  registerToken(flags, config.token);
  registerIptables(flags, config.iptables);
  flags.add({"log-format", kLogging, "text or json"}, logFormatInto(config.log.format));
  flags.add({"v", kLogging, "log verbosity: 0 info, 4 debug, 6 trace"},
            levelInto(config.log.verbosity));
  registerCompat(flags);
  flags.addRemoved("host-ip",
                   "it was removed in aad-pod-identity v1.6.2; delete it from the command line");
}

}  // namespace nmi::config
