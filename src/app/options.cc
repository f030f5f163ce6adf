#include "app/options.h"

#include <algorithm>

#include <fmt/format.h>

namespace nmi::app {

iptables::BackendChoice backendChoice(config::IptablesBackend backend) {
  switch (backend) {
    case config::IptablesBackend::Nft:
      return iptables::BackendChoice::Nft;
    case config::IptablesBackend::Legacy:
      return iptables::BackendChoice::Legacy;
    case config::IptablesBackend::Auto:
      break;
  }
  return iptables::BackendChoice::Auto;
}

iptables::CleanupOptions cleanupOptions(const config::Config& config) {
  iptables::CleanupOptions options;
  options.backend = backendChoice(config.iptables.backend);
  options.lock_file = config.iptables.lock_file;
  return options;
}

std::string userAgent(const config::Config& config) {
  std::string ua = fmt::format("nmi/{}", NMI_VERSION);
  if (!config.token.custom_user_agent.empty()) {
    ua += " " + config.token.custom_user_agent;
  }
  return ua;
}

http::ServerLimits serverLimits(const config::ServerConfig& server) {
  http::ServerLimits limits;
  limits.header_timeout = server.header_timeout;
  limits.idle_timeout = server.idle_timeout;
  limits.max_connections = server.max_connections;
  limits.max_connections_per_peer = server.max_connections_per_peer;
  return limits;
}

http::ClientOptions imdsClientOptions(const config::Config& config) {
  http::ClientOptions options;
  options.user_agent = userAgent(config);
  return options;
}

http::ClientOptions proxyClientOptions(const config::Config& config) {
  http::ClientOptions options;
  options.user_agent = userAgent(config);  // (only when the pod sent none)
  options.max_open_per_host = config.metadata.proxy_max_concurrent;
  options.max_idle_per_host = 4;
  return options;
}

http::ClientOptions aadClientOptions(const config::Config& config) {
  http::ClientOptions options;
  options.user_agent = userAgent(config);
  options.tls.ca_file = config.token.aad_ca_file;
  options.https_proxy = config.token.https_proxy;
  options.no_proxy = config.token.no_proxy;
  return options;
}

namespace {

token::RetryPolicy retryPolicy(const config::Config& config) {
  token::RetryPolicy retry;
  retry.budget = config.token.retry_budget;
  return retry;
}

}  // namespace

token::ImdsTokenProvider::Options imdsProviderOptions(const config::Config& config) {
  token::ImdsTokenProvider::Options options;
  options.endpoint = config.metadata.token_endpoint;
  options.user_agent = userAgent(config);
  options.retry = retryPolicy(config);
  options.max_concurrent = config.token.imds_max_concurrent;
  return options;
}

token::AadTokenProvider::Options aadProviderOptions(const config::Config& config,
                                                    const token::AuthorityAllowlist& allowed) {
  token::AadTokenProvider::Options options;
  options.user_agent = userAgent(config);
  options.retry = retryPolicy(config);
  options.allowed_authorities = allowed;
  return options;
}

token::CacheOptions cacheOptions(const config::Config& config) {
  token::CacheOptions options;
  options.refresh_ahead = config.token.refresh_ahead;
  options.min_lifetime = config.token.min_lifetime;
  options.max_entries = static_cast<std::size_t>(config.token.cache_max_entries);
  options.per_pod_max_keys = static_cast<std::size_t>(config.token.per_pod_max_keys);
  options.per_pod_miss_rate = config.token.per_pod_miss_rate;
  options.per_pod_miss_burst = config.token.per_pod_miss_burst;
  return options;
}

imds::HandlerOptions handlerOptions(const config::Config& config,
                                    const token::AuthorityAllowlist& allowed) {
  imds::HandlerOptions options;
  options.metadata_header_required = config.metadata.header_required;
  options.block_instance_metadata = config.metadata.block_instance_metadata;
  options.disable_host_token = config.metadata.disable_host_token;
  options.set_retry_after_header = config.metadata.set_retry_after_header;
  options.mode = config.identity.mode == config::OperationMode::Managed ? identity::Mode::Managed
                                                                        : identity::Mode::Standard;
  options.force_namespaced = config.identity.force_namespaced;
  options.wait.retry_attempts_for_created = config.identity.retry_attempts_for_created;
  options.wait.retry_attempts_for_assigned = config.identity.retry_attempts_for_assigned;
  options.wait.interval = config.identity.find_identity_retry_interval;
  options.pod_wait = config.identity.pod_wait;
  options.metadata_endpoint = fmt::format("{}:{}", config.metadata.ip, config.metadata.port);
  options.proxy_max_concurrent = static_cast<std::size_t>(config.metadata.proxy_max_concurrent);
  options.proxy_max_per_pod =
      static_cast<std::size_t>(config.metadata.proxy_max_concurrent_per_pod);
  options.aad_authorities = allowed;
  return options;
}

kube::ApiSourceOptions apiSourceOptions(const config::Config& config) {
  kube::ApiSourceOptions options;
  options.node_name = config.identity.node_name;
  options.watch_assigned_identities = config.identity.mode == config::OperationMode::Standard;
  options.scale_features = config.identity.scale_features;
  options.watch_silence_timeout = config.identity.watch_silence_timeout;
  options.secret_cache_ttl = config.identity.secret_cache_ttl;
  return options;
}

std::string interceptionOff(const config::Config& config) {
  if (config.iptables.disable_interception) {
    return "--disable-interception";
  }
  if (config.metadata.ip.rfind("127.", 0) == 0) {
    // Pods cannot send to a loopback address: nothing to intercept (a test set-up).
    return "--metadata-ip " + config.metadata.ip + " is a loopback address";
  }
  return "";
}

iptables::ReconcilerOptions reconcilerOptions(const config::Config& config) {
  iptables::ReconcilerOptions options;
  options.spec.metadata_ip = config.metadata.ip;
  options.spec.metadata_port = config.metadata.port;
  options.spec.target_ip = iptables::dnatTargetFor(config.server.listen_address);
  options.spec.target_port = config.server.port;
  options.backend = backendChoice(config.iptables.backend);
  options.lock_file = config.iptables.lock_file;
  // The original's --ipt-update-interval-sec caps the check interval.
  options.interval = std::min(config.iptables.check_interval, config.iptables.update_interval);
  return options;
}

bool shouldAwaitSuccessor(const config::Config& config, const std::string& daemonset,
                          const std::optional<kube::ExitDecision>& decision) {
  return config.server.handover_wait.count() > 0 && !daemonset.empty() &&
         (!decision || decision->action == kube::ExitAction::KeepRules);
}

}  // namespace nmi::app
