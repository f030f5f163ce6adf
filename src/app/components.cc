#include "app/components.h"

#include <random>
#include <string>
#include <utility>

#include <boost/asio/strand.hpp>
#include <fmt/format.h>
#include <unistd.h>

#include "app/options.h"
#include "common/file.h"
#include "common/log.h"
#include "iptables/node_checks.h"
#include "iptables/process_command_runner.h"
#include "kube/file_source.h"
#include "kube/rest_config.h"

namespace nmi::app {

namespace asio = boost::asio;

namespace {

// Files nmi reads once at start-up.
constexpr std::size_t kMaxNamespaceFileBytes = 4096;  // the ServiceAccount's namespace
constexpr std::size_t kMaxKubeletConfigBytes = std::size_t{1} << 20U;

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

}  // namespace

Result<IdentityData> startIdentityData(const config::Config& config, asio::io_context& io,
                                       const Clock& clock, metrics::NmiMetrics& metrics) {
  IdentityData data;
  if (!config.identity.identity_file.empty()) {
    auto file = std::make_unique<kube::FileIdentitySource>(
        asio::make_strand(io), config.identity.identity_file, config.identity.node_name,
        logger("nmi.identity"), std::chrono::milliseconds(10), clock);
    if (auto loaded = file->load(); !loaded) {
      return makeError(loaded.error().code,
                       fmt::format("cannot load identity file {}: {}",
                                   config.identity.identity_file, loaded.error().message));
    }
    if (auto watching = file->start(); !watching) {
      return makeError(watching.error().code,
                       fmt::format("cannot watch identity file {}: {}",
                                   config.identity.identity_file, watching.error().message));
    }
    data.stop = [raw = file.get()] { raw->stop(); };
    data.source = std::move(file);
    return data;
  }
  auto transport = makeApiTransport(config, io, clock);
  if (!transport) {
    return transport.error();
  }
  data.api_transport = *transport;
  auto api = std::make_unique<kube::ApiIdentitySource>(io.get_executor(), std::move(*transport),
                                                       apiSourceOptions(config), clock, &metrics,
                                                       logger("nmi.kube"));
  api->start();
  data.api = api.get();
  data.stop = [raw = api.get()] { raw->stop(); };
  data.source = std::move(api);
  return data;
}

// Service-principal credentials come from Secrets, read through the identity source.
class TokenStack::SourceCredentials final : public token::CredentialSource {
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

Result<std::unique_ptr<TokenStack>> TokenStack::create(const config::Config& config,
                                                       asio::io_context& io, const Clock& clock,
                                                       metrics::NmiMetrics& metrics,
                                                       identity::IdentitySource& source) {
  std::unique_ptr<TokenStack> stack(new TokenStack());
  auto allowed = token::AuthorityAllowlist::withExtraHosts(config.token.aad_allowed_hosts);
  if (!allowed) {
    return makeError(allowed.error().code, "--aad-allowed-hosts: " + allowed.error().message);
  }
  stack->aad_authorities_ = std::move(*allowed);
  auto imds_client = http::BeastHttpClient::create(io, imdsClientOptions(config));
  auto proxy_client = http::BeastHttpClient::create(io, proxyClientOptions(config));
  auto aad_client = http::BeastHttpClient::create(io, aadClientOptions(config));
  for (const auto* client : {&imds_client, &proxy_client, &aad_client}) {
    if (!*client) {
      return makeError(client->error().code,
                       "cannot create HTTP clients: " + client->error().message);
    }
  }
  stack->imds_client_ = std::move(*imds_client);
  stack->proxy_client_ = std::move(*proxy_client);
  stack->aad_client_ = std::move(*aad_client);
  stack->credentials_ = std::make_unique<SourceCredentials>(source);
  stack->mi_provider_ = std::make_unique<token::ImdsTokenProvider>(
      *stack->imds_client_, clock, metrics, imdsProviderOptions(config));
  stack->sp_provider_ = std::make_unique<token::AadTokenProvider>(
      *stack->aad_client_, *stack->credentials_, clock, metrics,
      aadProviderOptions(config, stack->aad_authorities_));
  stack->cache_ = std::make_unique<token::CachingTokenProvider>(
      *stack->mi_provider_, *stack->sp_provider_, clock, metrics, cacheOptions(config));
  stack->cache_->start(asio::make_strand(io));
  return stack;
}

TokenStack::~TokenStack() = default;

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

}  // namespace nmi::app
