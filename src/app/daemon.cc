#include "app/daemon.h"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/strand.hpp>
#include <fmt/format.h>
#include <unistd.h>

#include "app/instance_lock.h"
#include "common/clock.h"
#include "common/file.h"
#include "common/log.h"
#include "health/health.h"
#include "http/beast_http_client.h"
#include "http/server.h"
#include "imds/audit.h"
#include "imds/handler.h"
#include "iptables/cleanup.h"
#include "iptables/node_checks.h"
#include "iptables/process_command_runner.h"
#include "iptables/reconciler.h"
#include "kube/api_client.h"
#include "kube/api_identity_source.h"
#include "kube/file_source.h"
#include "kube/owner_check.h"
#include "kube/rest_config.h"
#include "metrics/exposition.h"
#include "metrics/nmi_metrics.h"
#include "token/aad_token_provider.h"
#include "token/caching_token_provider.h"
#include "token/imds_token_provider.h"

namespace nmi::app {

namespace asio = boost::asio;

namespace {

// Files nmi reads once at start-up.
constexpr std::size_t kMaxNamespaceFileBytes = 4096;  // the ServiceAccount's namespace
constexpr std::size_t kMaxKubeletConfigBytes = std::size_t{1} << 20U;

// Service-principal credentials come from Secrets, read through the identity source.
class SourceCredentials final : public token::CredentialSource {
 public:
  explicit SourceCredentials(identity::IdentitySource& source) : source_(source) {}
  Task<Result<token::Credential>> load(const token::CredentialRef& ref) override {
    const identity::SecretRef secret_ref{ref.name, ref.ns};
    auto secret = co_await source_.secret(secret_ref);
    if (!secret) {
      co_return secret.error();
    }
    co_return token::Credential{std::move(secret->data)};
  }

 private:
  identity::IdentitySource& source_;
};

http::ServerLimits serverLimits(const config::ServerConfig& s) {
  http::ServerLimits limits;
  limits.header_timeout = s.header_timeout;
  limits.idle_timeout = s.idle_timeout;
  limits.max_connections = s.max_connections;
  limits.max_connections_per_peer = s.max_connections_per_peer;
  return limits;
}

std::string userAgent(const config::Config& config) {
  std::string ua = fmt::format("nmi/{}", NMI_VERSION);
  if (!config.token.custom_user_agent.empty()) {
    ua += " " + config.token.custom_user_agent;
  }
  return ua;
}

// The client of the Kubernetes API server: --kubeconfig / KUBECONFIG or the in-cluster
// environment. --node is required. The error is one line.
Result<kube::ApiTransportPtr> makeApiTransport(const config::Config& config, asio::io_context& io,
                                               const Clock& clock) {
  if (config.identity.node_name.empty()) {
    return makeError(ErrorCode::InvalidArgument,
                     "no node name: give --node (or env NODE_NAME), or --identity-file; nmi "
                     "watches only this node's pods");
  }
  kube::RestConfigSources sources;
  sources.kubeconfig = config.identity.kubeconfig;
  sources.service_host = config::processEnv("KUBERNETES_SERVICE_HOST");
  sources.service_port = config::processEnv("KUBERNETES_SERVICE_PORT");
  sources.service_account_dir = config.identity.service_account_dir;
  auto rest = kube::loadRestConfig(sources);
  if (!rest) {
    return makeError(rest.error().code,
                     "cannot configure the Kubernetes API client: " + rest.error().message);
  }
  kube::TransportOptions transport_options;
  transport_options.user_agent = userAgent(config);
  auto transport =
      kube::BeastApiTransport::create(io.get_executor(), *rest, transport_options, clock);
  if (!transport) {
    return makeError(transport.error().code, "cannot set up the Kubernetes API client (" +
                                                 rest->source + "): " + transport.error().message);
  }
  logger("nmi")->info("identity source: Kubernetes API at {} ({})", rest->server_text,
                      rest->source);
  return kube::ApiTransportPtr(std::move(*transport));
}

// The Kubernetes-backed identity source.
std::unique_ptr<kube::ApiIdentitySource> makeApiSource(const config::Config& config,
                                                       asio::io_context& io, const Clock& clock,
                                                       metrics::NmiMetrics& metrics,
                                                       kube::ApiTransportPtr transport) {
  kube::ApiSourceOptions options;
  options.node_name = config.identity.node_name;
  options.watch_assigned_identities = config.identity.mode == config::OperationMode::Standard;
  options.scale_features = config.identity.scale_features;
  options.watch_silence_timeout = config.identity.watch_silence_timeout;
  options.secret_cache_ttl = config.identity.secret_cache_ttl;
  return std::make_unique<kube::ApiIdentitySource>(io.get_executor(), std::move(transport), options,
                                                   clock, &metrics, logger("nmi.kube"));
}

// The namespace of nmi's DaemonSet: POD_NAMESPACE, else the service account's namespace file.
std::string daemonSetNamespace(const config::Config& config) {
  std::string ns = config.iptables.daemonset_namespace;
  if (ns.empty()) {
    auto file =
        readSmallFile(config.identity.service_account_dir + "/namespace", kMaxNamespaceFileBytes);
    if (file) {
      ns = *file;
      ns.erase(ns.find_last_not_of(" \t\r\n") + 1);
    }
  }
  return ns;
}

// Who this nmi is, for the port lock: "<namespace>/<name>" of its DaemonSet when both are known.
InstanceIdentity instanceIdentity(const config::Config& config) {
  InstanceIdentity me;
  const std::string ns = daemonSetNamespace(config);
  if (!config.iptables.daemonset_name.empty() && !ns.empty()) {
    me.daemonset = ns + "/" + config.iptables.daemonset_name;
  }
  me.node = config.identity.node_name;
  me.version = NMI_VERSION;
  me.pid = static_cast<std::int64_t>(::getpid());
  std::random_device random;
  me.instance = fmt::format("{:08x}{:08x}", random(), random());
  return me;
}

// Pure. On SIGTERM, whether to wait for a successor before draining: a hand-over is possible (nmi
// knows its DaemonSet), the wait is not 0, and this is no uninstall (rules kept).
bool shouldAwaitSuccessor(const config::Config& config, const InstanceIdentity& me,
                          const std::optional<kube::ExitDecision>& decision) {
  return config.server.handover_wait.count() > 0 && !me.daemonset.empty() &&
         (!decision || decision->action == kube::ExitAction::KeepRules);
}

// Serves on until a successor says it serves, or `limit` passes.
Task<void> awaitSuccessor(const InstanceLock& lock, const Clock& clock, Timer& timer,
                          std::chrono::milliseconds limit, spdlog::logger& log) {
  const MonotonicTime start = clock.monotonicNow();
  bool said = false;
  for (;;) {
    if (lock.successorServing()) {
      log.info("the next nmi on this node serves: draining");
      co_return;
    }
    const auto waited = clock.monotonicNow() - start;
    if (waited >= limit) {
      log.warn("no next nmi served on this node within {} s: draining (the rules stay)",
               std::chrono::duration_cast<std::chrono::seconds>(limit).count());
      co_return;
    }
    if (!said) {
      log.info("serving until the next nmi on this node serves (up to {} s)",
               std::chrono::duration_cast<std::chrono::seconds>(limit).count());
      said = true;
    }
    const std::chrono::milliseconds poll_every(100);
    if (co_await timer.waitFor(poll_every)) {
      co_return;
    }
  }
}

// Uninstall detection (--daemonset-name): a watch of nmi's own DaemonSet, or null when it is not
// asked for or cannot work (logged once). With POD_NAME, nmi's own pod (in `source`'s pod cache)
// names the DaemonSet nmi belongs to.
std::unique_ptr<kube::OwnerWatch> makeOwnerWatch(const config::Config& config, asio::io_context& io,
                                                 const Clock& clock,
                                                 const kube::ApiTransportPtr& transport,
                                                 const identity::IdentitySource& source,
                                                 bool intercepting) {
  const auto log = logger("nmi");
  const std::string& name = config.iptables.daemonset_name;
  if (name.empty()) {
    return nullptr;
  }
  if (!intercepting) {
    log->info("--daemonset-name={} has no effect: nmi installs no iptables rules", name);
    return nullptr;
  }
  if (!transport) {
    log->warn(
        "--daemonset-name={} needs the Kubernetes API (not --identity-file): the rules stay "
        "on exit",
        name);
    return nullptr;
  }
  const std::string ns = daemonSetNamespace(config);
  if (ns.empty()) {
    log->warn(
        "--daemonset-name={}: no namespace (env POD_NAMESPACE, or the service account's "
        "namespace file): the rules stay on exit",
        name);
    return nullptr;
  }
  std::function<kube::PodController()> pod_controller;
  if (config.iptables.pod_name.empty()) {
    log->info(
        "--daemonset-name={}: no POD_NAME, so nmi takes the first daemonset of that name it sees "
        "as its own",
        name);
  } else {
    pod_controller = [&source, ns, pod = config.iptables.pod_name] {
      return kube::podControllerOf(source.podByName(ns, pod));
    };
  }
  kube::OwnerWatchOptions options;
  options.ns = ns;
  options.name = name;
  options.watch_silence_timeout = config.identity.watch_silence_timeout;
  return std::make_unique<kube::OwnerWatch>(io.get_executor(), transport, std::move(options), clock,
                                            logger("nmi.kube"), std::move(pod_controller));
}

// Removes the rules after an uninstall was detected. False when iptables failed (the rules may
// stay; logged).
bool removeRulesOnExit(const config::Config& config) {
  const auto log = logger("nmi");
  // A runner of its own: the reconciler's was cancelled when the loop stopped.
  iptables::ProcessCommandRunner runner;
  auto removed = iptables::removeInterception(runner, cleanupOptions(config));
  if (!removed) {
    log->error("cannot remove the iptables rules on uninstall: {}", removed.error().message);
    return false;
  }
  if (removed->empty()) {
    log->info("uninstall: no nmi iptables rules found");
  }
  for (const std::string& line : *removed) {
    log->info("uninstall: {}", line);
  }
  return true;
}

// Why nmi installs no interception rules, or "" when it does.
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

// The original refused to run on kubenet nodes; an unreadable kubelet configuration is not fatal.
bool refusedForKubenet(const config::Config& config) {
  if (config.iptables.allow_kubenet) {
    return false;
  }
  const auto log = logger("nmi");
  auto kubelet = readSmallFile(config.iptables.kubelet_config, kMaxKubeletConfigBytes);
  if (!kubelet) {
    log->warn("cannot check whether the node uses kubenet: {} (not fatal)",
              kubelet.error().message);
    return false;
  }
  if (iptables::selectsKubenet(*kubelet)) {
    log->error("{}", iptables::kKubenetRefusal);
    return true;
  }
  return false;
}

}  // namespace

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

int runDaemon(const config::Config& config) {
  const auto log = logger("nmi");
  for (const auto& warning : config.warnings) {
    log->warn("{}", warning);
  }
  log->info("starting nmi version={} mode={} namespaced={} listen={}:{} node={}", NMI_VERSION,
            config.identity.mode == config::OperationMode::Managed ? "managed" : "standard",
            config.identity.force_namespaced, config.server.listen_address, config.server.port,
            config.identity.node_name);
  if (refusedForKubenet(config)) {
    return 1;
  }

  const int threads = std::max(1, config.server.io_threads);
  // The time seam's real side: every time read and timer of the daemon comes from here.
  const SystemClock clock;
  asio::io_context io(threads);
  // One nmi per port on a node, except for a hand-over within the same DaemonSet.
  const InstanceIdentity me = instanceIdentity(config);
  InstanceLock port_lock(io, config.server.port, me, clock);
  if (auto locked = port_lock.acquire(); !locked) {
    log->error("refusing to start on port {}: {}", config.server.port, locked.error().message);
    return 1;
  }
  metrics::NmiMetrics metrics;

  // Identity data: a file (--identity-file), else the Kubernetes API.
  std::unique_ptr<identity::IdentitySource> source;
  std::function<void()> stop_source;
  kube::ApiTransportPtr api_transport;
  const kube::ApiIdentitySource* api_source = nullptr;  // owned by `source`
  if (!config.identity.identity_file.empty()) {
    auto file = std::make_unique<kube::FileIdentitySource>(
        asio::make_strand(io), config.identity.identity_file, config.identity.node_name,
        logger("nmi.identity"), std::chrono::milliseconds(10), clock);
    if (auto loaded = file->load(); !loaded) {
      log->error("cannot load identity file {}: {}", config.identity.identity_file,
                 loaded.error().message);
      return 1;
    }
    if (auto watching = file->start(); !watching) {
      log->error("cannot watch identity file {}: {}", config.identity.identity_file,
                 watching.error().message);
      return 1;
    }
    stop_source = [raw = file.get()] { raw->stop(); };
    source = std::move(file);
  } else {
    auto transport = makeApiTransport(config, io, clock);
    if (!transport) {
      log->error("{}", transport.error().message);
      return 1;
    }
    api_transport = *transport;
    auto api = makeApiSource(config, io, clock, metrics, std::move(*transport));
    api->start();
    api_source = api.get();
    stop_source = [raw = api.get()] { raw->stop(); };
    source = std::move(api);
  }

  // Upstream clients: IMDS (plain HTTP on the link-local address, never through a proxy) and
  // Azure AD (HTTPS, HTTPS_PROXY/NO_PROXY honoured, an extra CA bundle for tests).
  http::ClientOptions imds_options;
  imds_options.user_agent = userAgent(config);
  auto imds_client = http::BeastHttpClient::create(io, imds_options);
  // Pods' proxied requests get a client of their own: whatever a pod sends or IMDS answers on
  // its behalf, it never shares a connection with nmi's token requests.
  http::ClientOptions proxy_options;
  proxy_options.user_agent = userAgent(config);  // (only when the pod sent none)
  proxy_options.max_open_per_host = config.metadata.proxy_max_concurrent;
  proxy_options.max_idle_per_host = 4;
  auto proxy_client = http::BeastHttpClient::create(io, proxy_options);
  http::ClientOptions aad_options;
  aad_options.user_agent = userAgent(config);
  aad_options.ca_file = config.token.aad_ca_file;
  aad_options.https_proxy = config.token.https_proxy;
  aad_options.no_proxy = config.token.no_proxy;
  auto aad_client = http::BeastHttpClient::create(io, aad_options);
  if (!imds_client || !aad_client || !proxy_client) {
    log->error("cannot create HTTP clients: {}", !imds_client  ? imds_client.error().message
                                                 : !aad_client ? aad_client.error().message
                                                               : proxy_client.error().message);
    return 1;
  }

  // Where service-principal credentials may go: the Azure clouds' Azure AD, plus the operator's.
  auto aad_authorities = token::AuthorityAllowlist::withExtraHosts(config.token.aad_allowed_hosts);
  if (!aad_authorities) {
    log->error("--aad-allowed-hosts: {}", aad_authorities.error().message);
    return 1;
  }
  if (!config.token.aad_allowed_hosts.empty()) {
    log->info("azure ad hosts allowed besides the azure clouds: {}",
              fmt::join(config.token.aad_allowed_hosts, ","));
  }

  token::RetryPolicy retry;
  retry.budget = config.token.retry_budget;
  token::ImdsTokenProvider::Options mi_options;
  mi_options.endpoint = config.metadata.token_endpoint;
  mi_options.user_agent = userAgent(config);
  mi_options.retry = retry;
  mi_options.max_concurrent = config.token.imds_max_concurrent;
  token::ImdsTokenProvider mi_provider(**imds_client, clock, metrics, mi_options);
  SourceCredentials credentials(*source);
  token::AadTokenProvider::Options sp_options;
  sp_options.user_agent = userAgent(config);
  sp_options.retry = retry;
  sp_options.allowed_authorities = *aad_authorities;
  token::AadTokenProvider sp_provider(**aad_client, credentials, clock, metrics, sp_options);
  token::CacheOptions cache_options;
  cache_options.refresh_ahead = config.token.refresh_ahead;
  cache_options.min_lifetime = config.token.min_lifetime;
  cache_options.max_entries = static_cast<std::size_t>(config.token.cache_max_entries);
  cache_options.per_pod_max_keys = static_cast<std::size_t>(config.token.per_pod_max_keys);
  cache_options.per_pod_miss_rate = config.token.per_pod_miss_rate;
  cache_options.per_pod_miss_burst = config.token.per_pod_miss_burst;
  token::CachingTokenProvider tokens(mi_provider, sp_provider, clock, metrics, cache_options);
  tokens.start(asio::make_strand(io));

  // The IMDS face.
  imds::HandlerOptions handler_options;
  handler_options.metadata_header_required = config.metadata.header_required;
  handler_options.block_instance_metadata = config.metadata.block_instance_metadata;
  handler_options.disable_host_token = config.metadata.disable_host_token;
  handler_options.set_retry_after_header = config.metadata.set_retry_after_header;
  handler_options.mode = config.identity.mode == config::OperationMode::Managed
                             ? identity::Mode::Managed
                             : identity::Mode::Standard;
  handler_options.force_namespaced = config.identity.force_namespaced;
  handler_options.wait.retry_attempts_for_created = config.identity.retry_attempts_for_created;
  handler_options.wait.retry_attempts_for_assigned = config.identity.retry_attempts_for_assigned;
  handler_options.wait.interval = config.identity.find_identity_retry_interval;
  handler_options.pod_wait = config.identity.pod_wait;
  handler_options.metadata_endpoint =
      fmt::format("{}:{}", config.metadata.ip, config.metadata.port);
  handler_options.proxy_max_concurrent =
      static_cast<std::size_t>(config.metadata.proxy_max_concurrent);
  handler_options.proxy_max_per_pod =
      static_cast<std::size_t>(config.metadata.proxy_max_concurrent_per_pod);
  handler_options.aad_authorities = *aad_authorities;
  imds::AuditLog audit(metrics);
  imds::ImdsHandler handler(handler_options, *source, tokens, **proxy_client, clock, metrics,
                            audit);

  health::Readiness readiness;
  readiness.add("identity", [&source] { return source->notReadyReason(); });
  if (api_source != nullptr) {
    // Stale caches do not fail readiness: nmi serves from them by design, and a NotReady nmi
    // would hold up rolling updates while the API server is away (docs/operations.md).
    readiness.addDetail("stale", [api_source] { return api_source->staleReason(); });
  }

  // Interception: nmi's iptables rules, checked and repaired on a thread of their own (iptables
  // processes never run on an I/O thread). Removed on exit only when nmi's DaemonSet is gone or
  // being deleted (an uninstall, --daemonset-name); otherwise nmi fails closed.
  iptables::ProcessCommandRunner ipt_runner(clock);
  std::unique_ptr<iptables::Reconciler> interception;
  if (const std::string off = interceptionOff(config); !off.empty()) {
    log->info("interception off ({}): nmi installs no iptables rules", off);
  } else {
    interception = std::make_unique<iptables::Reconciler>(reconcilerOptions(config), ipt_runner,
                                                          clock, metrics, logger("nmi.iptables"));
    readiness.add("interception", [raw = interception.get()] { return raw->notReadyReason(); });
  }
  std::unique_ptr<kube::OwnerWatch> owner =
      makeOwnerWatch(config, io, clock, api_transport, *source, interception != nullptr);
  if (owner) {
    // Not a readiness failure: the rules are kept (fail closed) whatever happens; an operator
    // sees why here and in the log (docs/operations.md, "Uninstall").
    readiness.addDetail("uninstall", [raw = owner.get()] { return raw->problem(); });
  }
  std::optional<kube::ExitDecision> exit_decision;
  health::ProbeHandler probe_handler(readiness);
  metrics::MetricsHandler metrics_handler(metrics, [&] {
    metrics.source_staleness.Set(static_cast<double>(source->staleness().count()));
    if (api_source != nullptr) {
      api_source->updateStaleGauges();
    }
    metrics.cache_entries.Set(static_cast<double>(tokens.size()));
  });

  http::Server server(io, "nmi", handler, serverLimits(config.server), &metrics, clock);
  http::Server probe_server(io, "probe", probe_handler, http::ServerLimits{}, nullptr, clock);
  http::Server metrics_server(io, "metrics", metrics_handler, http::ServerLimits{}, nullptr, clock);
  if (auto r = server.listen(config.server.listen_address, config.server.port); !r) {
    log->error("error creating http server: {}", r.error().message);
    return 1;
  }
  if (auto r = probe_server.listen("0.0.0.0", config.server.probe_port); !r) {
    log->error("error creating probe server: {}", r.error().message);
    return 1;
  }
  if (auto r = metrics_server.listen("0.0.0.0", config.server.metrics_port); !r) {
    log->error("error creating metrics server: {}", r.error().message);
    return 1;
  }
  server.start();
  probe_server.start();
  metrics_server.start();
  if (interception) {
    interception->start();
  }
  if (owner) {
    owner->start();
  }
  log->info("serving nmi={} probe={} metrics={}", server.localEndpoint().port(),
            probe_server.localEndpoint().port(), metrics_server.localEndpoint().port());
  // A hand-over successor (the lock is held by the previous nmi) tells it once it serves: rules in
  // place and caches synced, as /readyz says.
  // The announcement and the SIGTERM sequence share one strand: the sequence cancels the
  // announcement's timer.
  auto control = asio::make_strand(io);
  const TimerPtr announce_timer = clock.makeTimer(control);
  if (!port_lock.held()) {
    asio::co_spawn(
        control,
        [&]() -> Task<void> {
          while (!readiness.failures().empty()) {
            const std::chrono::milliseconds poll_every(100);
            if (co_await announce_timer->waitFor(poll_every)) {
              co_return;  // woken: the SIGTERM sequence began
            }
          }
          // New connections to this listener only from now on: the previous nmi is about to close
          // its own, and what is queued on a listener when it closes is reset. Undone once the
          // previous nmi has gone (onTaken below).
          if (auto steered = port_lock.held() ? Result<void>{} : server.preferThisListener();
              !steered) {
            log->warn(
                "{} (connections queued on the previous nmi when it closes are reset unless "
                "net.ipv4.tcp_migrate_req is 1)",
                steered.error().message);
          }
          port_lock.announceSuccessor();
        },
        asio::detached);
    port_lock.onTaken([&server] { server.clearListenerPreference(); });
  }

  // SIGTERM/SIGINT: unless nmi is being uninstalled, keep serving until the DaemonSet's next nmi
  // on this node serves (up to --handover-wait-sec), then stop accepting, let requests in flight
  // finish (up to the grace period), then stop everything.
  asio::signal_set signals(io, SIGTERM, SIGINT);
  const TimerPtr handover_timer = clock.makeTimer(control);
  signals.async_wait([&](const boost::system::error_code& ec, int signal) {
    if (ec) {
      return;
    }
    log->info("received signal {}, draining", signal);
    asio::co_spawn(
        control,
        [&]() -> Task<void> {
          if (owner) {
            // First, while nmi's credentials may still be valid; bounded (2 s).
            const kube::ExitDecision decision = co_await owner->decide();
            log->info("{}", decision.reason);
            exit_decision = decision;
            owner->stop();
          }
          announce_timer->wake();
          if (shouldAwaitSuccessor(config, me, exit_decision)) {
            co_await awaitSuccessor(port_lock, clock, *handover_timer, config.server.handover_wait,
                                    *log);
          }
          co_await server.drain(config.server.shutdown_grace);
          co_await probe_server.drain(std::chrono::milliseconds(0));
          co_await metrics_server.drain(std::chrono::milliseconds(0));
          tokens.stop();
          stop_source();
          log->info("drained, exiting");
          io.stop();
        },
        asio::detached);
  });

  std::vector<std::thread> workers;
  workers.reserve(static_cast<std::size_t>(threads - 1));
  for (int i = 1; i < threads; ++i) {
    workers.emplace_back([&io] { io.run(); });
  }
  io.run();
  for (auto& t : workers) {
    t.join();
  }
  if (interception) {
    interception->stop();  // the rules stay, unless nmi's DaemonSet is being removed
    if (exit_decision && exit_decision->action == kube::ExitAction::RemoveRules &&
        !removeRulesOnExit(config)) {
      return 1;
    }
  }
  return 0;
}

}  // namespace nmi::app
