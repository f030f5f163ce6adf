#include "kube/api_identity_source.h"

#include <algorithm>
#include <atomic>
#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/strand.hpp>
#include <fmt/format.h>

#include "common/log.h"
#include "kube/crd_cache.h"
#include "kube/pod_cache.h"
#include "kube/query.h"
#include "kube/secret_cache.h"
#include "metrics/nmi_metrics.h"

namespace nmi::kube {

namespace asio = boost::asio;

struct ApiIdentitySource::State {
  State(ApiTransportPtr api, ApiSourceOptions opts, const Clock& c, metrics::NmiMetrics* m,
        std::shared_ptr<spdlog::logger> log)
      : transport(std::move(api)),
        options(std::move(opts)),
        clock(c),
        metrics(m),
        logger(log ? std::move(log) : nmi::logger("nmi.kube")),
        pods(options.node_name),
        secrets(*transport, clock, secretOptions(options), [this] { countError(secret_errors); }) {
    if (metrics != nullptr) {
      list_errors = &metrics->kubernetes_api_errors.Add({{"operation_type", "list"}});
      watch_errors = &metrics->kubernetes_api_errors.Add({{"operation_type", "watch"}});
      secret_errors = &metrics->kubernetes_api_errors.Add({{"operation_type", "get_secret"}});
    }
    const std::string node = options.node_name;
    ReflectorOptions pod_options = base("pods", kPodsPath);
    pod_options.field_selector = "spec.nodeName=" + node;
    pod_options.paginate = false;
    add(std::move(pod_options), pods);
    if (options.watch_assigned_identities) {
      ReflectorOptions assigned_options = base("azureassignedidentities", kAssignedIdentitiesPath);
      if (options.scale_features) {
        assigned_options.label_selector = "nodename=" + node;
        assigned_options.paginate = false;
      }
      add(std::move(assigned_options), assigned);
    }
    add(base("azureidentitybindings", kBindingsPath), bindings);
    add(base("azureidentities", kIdentitiesPath), identities);
    add(base("azurepodidentityexceptions", kExceptionsPath), exceptions);
  }

  static SecretCacheOptions secretOptions(const ApiSourceOptions& options) {
    SecretCacheOptions out;
    out.ttl = options.secret_cache_ttl;
    return out;
  }

  ReflectorOptions base(std::string resource, std::string_view path) const {
    ReflectorOptions out;
    out.resource = std::move(resource);
    out.path = std::string(path);
    out.page_limit = options.page_limit;
    out.min_watch_timeout = options.min_watch_timeout;
    out.max_watch_timeout = options.max_watch_timeout;
    out.watch_timeouts.head = options.head_timeout;
    out.watch_timeouts.silence = options.watch_silence_timeout;
    out.backoff = options.backoff;
    return out;
  }

  void add(ReflectorOptions reflector_options, ObjectStore& store) {
    ReflectorHooks hooks;
    hooks.changed = [this] { onChange(); };
    hooks.failed = [this](std::string_view operation) {
      countError(operation == "list" ? list_errors : watch_errors);
    };
    if (metrics != nullptr) {
      // One series per watched resource, from the start (0 = current): bounded by construction.
      stale_gauges.push_back(
          &metrics->source_stale.Add({{"resource", reflector_options.resource}}));
    }
    reflectors.push_back(std::make_unique<Reflector>(
        *transport, store, std::move(reflector_options), clock, std::move(hooks), logger));
    stores.push_back(&store);
  }

  static void countError(prometheus::Counter* counter) {
    if (counter != nullptr) {
      counter->Increment();
    }
  }

  bool allSynced() const {
    return std::all_of(reflectors.begin(), reflectors.end(),
                       [](const auto& r) { return r->hasSynced(); });
  }

  void onChange() {
    if (metrics != nullptr) {
      metrics->pod_cache_pods.Set(static_cast<double>(pods.size()));
    }
    if (!synced.load() && allSynced() && !synced.exchange(true)) {
      const auto took =
          std::chrono::duration_cast<std::chrono::milliseconds>(clock.monotonicNow() - started_at);
      std::string counts;
      for (std::size_t i = 0; i < reflectors.size(); ++i) {
        counts += fmt::format(" {}={}", reflectors[i]->resource(), stores[i]->size());
      }
      logger->info("identity caches synced in {} ms:{}", took.count(), counts);
    }
    notifier.notify();
  }

  static Task<void> run(std::shared_ptr<State> state, std::size_t index) {
    co_await state->reflectors[index]->run(state->stop);
  }

  const ApiTransportPtr transport;
  const ApiSourceOptions options;
  const Clock& clock;
  metrics::NmiMetrics* const metrics;
  const std::shared_ptr<spdlog::logger> logger;
  prometheus::Counter* list_errors = nullptr;
  prometheus::Counter* watch_errors = nullptr;
  prometheus::Counter* secret_errors = nullptr;

  ChangeNotifier notifier{clock};
  PodCache pods;
  AssignedIdentityCache assigned;
  BindingCache bindings;
  AzureIdentityCache identities;
  ExceptionCache exceptions;
  SecretCache secrets;
  std::vector<std::unique_ptr<Reflector>> reflectors;
  std::vector<const ObjectStore*> stores;        // parallel to reflectors
  std::vector<prometheus::Gauge*> stale_gauges;  // parallel to reflectors (with metrics)
  CancellationSignal stop;
  MonotonicTime started_at{};
  std::atomic<bool> started{false};
  std::atomic<bool> synced{false};
};

ApiIdentitySource::ApiIdentitySource(asio::any_io_executor executor, ApiTransportPtr transport,
                                     ApiSourceOptions options, const Clock& clock,
                                     metrics::NmiMetrics* metrics,
                                     std::shared_ptr<spdlog::logger> logger)
    : state_(std::make_shared<State>(std::move(transport), std::move(options), clock, metrics,
                                     std::move(logger))),
      executor_(std::move(executor)) {}

ApiIdentitySource::~ApiIdentitySource() {
  stop();
}

void ApiIdentitySource::start() {
  if (state_->started.exchange(true)) {
    return;
  }
  state_->started_at = state_->clock.monotonicNow();
  state_->logger->info("watching the API server for node {}: {} resources",
                       state_->options.node_name, state_->reflectors.size());
  for (std::size_t i = 0; i < state_->reflectors.size(); ++i) {
    asio::co_spawn(asio::make_strand(executor_), State::run(state_, i), asio::detached);
  }
}

void ApiIdentitySource::stop() {
  state_->stop.cancel();
}

bool ApiIdentitySource::hasSynced() const {
  return state_->synced.load() || (state_->started.load() && state_->allSynced());
}

std::string ApiIdentitySource::notReadyReason() const {
  if (hasSynced()) {
    return {};
  }
  if (!state_->started.load()) {
    return "the Kubernetes identity source is not started";
  }
  std::string waiting;
  std::string errors;
  for (const auto& reflector : state_->reflectors) {
    if (reflector->hasSynced()) {
      continue;
    }
    waiting += (waiting.empty() ? "" : ", ") + reflector->resource();
    if (std::string error = reflector->lastError(); !error.empty()) {
      errors += "; " + error;
    }
  }
  return "waiting for the initial list of " + waiting + errors;
}

std::chrono::seconds ApiIdentitySource::staleness() const {
  std::chrono::milliseconds worst{0};
  for (const auto& reflector : state_->reflectors) {
    worst = std::max(worst, reflector->staleness());
  }
  return std::chrono::duration_cast<std::chrono::seconds>(worst);
}

std::string ApiIdentitySource::staleReason() const {
  std::string out;
  for (const auto& reflector : state_->reflectors) {
    const Freshness freshness = reflector->freshness();
    if (freshness.stale) {
      out += (out.empty() ? "" : "; ") + reflector->resource() + ": " + freshness.reason;
    }
  }
  return out;
}

void ApiIdentitySource::updateStaleGauges() const {
  for (std::size_t i = 0; i < state_->stale_gauges.size(); ++i) {
    state_->stale_gauges[i]->Set(state_->reflectors[i]->freshness().stale ? 1.0 : 0.0);
  }
}

std::vector<identity::PodInfo> ApiIdentitySource::podsByIp(std::string_view ip) const {
  return state_->pods.podsByIp(ip);
}

identity::IpClaims ApiIdentitySource::ipClaims(std::string_view ip) const {
  return state_->pods.ipClaims(ip);
}

std::optional<identity::PodInfo> ApiIdentitySource::podByName(std::string_view ns,
                                                              std::string_view name) const {
  return state_->pods.podByName(ns, name);
}

std::vector<identity::AzureAssignedIdentity> ApiIdentitySource::assignedIdentities(
    std::string_view pod_ns, std::string_view pod_name) const {
  return state_->assigned.byPod(pod_ns, pod_name);
}

std::vector<identity::AzureIdentityBinding> ApiIdentitySource::bindingsBySelector(
    std::string_view selector) const {
  return state_->bindings.bySelector(selector);
}

std::optional<identity::AzureIdentity> ApiIdentitySource::identity(std::string_view ns,
                                                                   std::string_view name) const {
  return state_->identities.get(ns, name);
}

std::vector<identity::AzurePodIdentityException> ApiIdentitySource::exceptions(
    std::string_view ns) const {
  return state_->exceptions.byNamespace(ns);
}

Task<Result<identity::SecretData>> ApiIdentitySource::secret(const identity::SecretRef& ref) {
  const std::shared_ptr<State> state = state_;     // alive while the read runs
  auto result = co_await state->secrets.get(ref);  // copied into the read's frame at once
  co_return result;
}

ChangeNotifier& ApiIdentitySource::changes() {
  return state_->notifier;
}

std::vector<ApiIdentitySource::ResourceStatus> ApiIdentitySource::statusForTest() const {
  std::vector<ResourceStatus> out;
  for (std::size_t i = 0; i < state_->reflectors.size(); ++i) {
    const auto& reflector = *state_->reflectors[i];
    out.push_back(ResourceStatus{reflector.resource(), reflector.hasSynced(), reflector.connected(),
                                 state_->stores[i]->size(), reflector.lastError(),
                                 reflector.stats(), reflector.freshness()});
  }
  return out;
}

}  // namespace nmi::kube
