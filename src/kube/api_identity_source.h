#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <spdlog/logger.h>

#include "common/clock.h"
#include "identity/source.h"
#include "kube/api_client.h"
#include "kube/backoff.h"
#include "kube/reflector.h"

namespace nmi::metrics {
class NmiMetrics;
}

namespace nmi::kube {

struct ApiSourceOptions {
  std::string node_name;  // required: only this node's pods are held
  // Standard mode watches AzureAssignedIdentities; managed mode does not (its RBAC may lack
  // them).
  bool watch_assigned_identities = true;
  // Only this node's AzureAssignedIdentities (label nodename=<node>); else all of them.
  bool scale_features = true;
  std::chrono::milliseconds watch_silence_timeout{90'000};
  std::chrono::seconds secret_cache_ttl{30};
  // Reflector knobs (tests shorten them).
  std::chrono::milliseconds head_timeout{10'000};
  std::chrono::seconds min_watch_timeout{240};
  std::chrono::seconds max_watch_timeout{300};
  BackoffPolicy backoff;
  int page_limit = 500;
};

// The identity source backed by the Kubernetes API: one Reflector (list, then watch) per kind
// feeding compact, indexed caches — this node's Pods (fieldSelector spec.nodeName=<node>,
// resourceVersion=0, from the API server's watch cache), AzureAssignedIdentities (standard mode;
// labelSelector nodename=<node> with scale features), and cluster-wide, paginated
// AzureIdentityBindings, AzureIdentities and AzurePodIdentityExceptions — and Secrets read on
// demand through a short bounded cache. Every applied event and relist notifies changes(); there
// is no polling.
//
// Ready (hasSynced) once every reflector has listed; notReadyReason() names the others and their
// last error (e.g. a 403 with the API server's RBAC message). Afterwards a cache may go stale
// (Reflector::freshness: its watch in backoff, relisting, or silent past its limit): nmi keeps
// serving from it, staleReason() names it for /readyz, staleness() is the worst stale
// reflector's (0 while every cache is current). Metrics (optional): kubernetes API errors by
// operation_type list/watch/get_secret, nmi_pod_cache_pods, nmi_identity_source_stale{resource}
// (updateStaleGauges).
//
// Queries are thread-safe. start() spawns the reflectors on strands of `executor`; stop() (also
// called by the destructor) cancels them and every watch at once. Coroutines keep the shared
// state alive, so the object may be destroyed while they wind down.
class ApiIdentitySource final : public identity::IdentitySource {
 public:
  // `clock` and `metrics` (may be null) must outlive the executor's work.
  ApiIdentitySource(boost::asio::any_io_executor executor, ApiTransportPtr transport,
                    ApiSourceOptions options, const Clock& clock,
                    metrics::NmiMetrics* metrics = nullptr,
                    std::shared_ptr<spdlog::logger> logger = nullptr);
  ~ApiIdentitySource() override;
  ApiIdentitySource(const ApiIdentitySource&) = delete;
  ApiIdentitySource& operator=(const ApiIdentitySource&) = delete;
  ApiIdentitySource(ApiIdentitySource&&) = delete;
  ApiIdentitySource& operator=(ApiIdentitySource&&) = delete;

  void start();
  void stop();

  bool hasSynced() const override;
  std::string notReadyReason() const override;
  std::chrono::seconds staleness() const override;
  std::vector<identity::PodInfo> podsByIp(std::string_view ip) const override;
  identity::IpClaims ipClaims(std::string_view ip) const override;
  std::optional<identity::PodInfo> podByName(std::string_view ns,
                                             std::string_view name) const override;
  std::vector<identity::AzureAssignedIdentity> assignedIdentities(
      std::string_view pod_ns, std::string_view pod_name) const override;
  std::vector<identity::AzureIdentityBinding> bindingsBySelector(
      std::string_view selector) const override;
  std::optional<identity::AzureIdentity> identity(std::string_view ns,
                                                  std::string_view name) const override;
  std::vector<identity::AzurePodIdentityException> exceptions(std::string_view ns) const override;
  Task<Result<identity::SecretData>> secret(const identity::SecretRef& ref) override;
  ChangeNotifier& changes() override;

  // "resource: reason" of every stale cache, joined with "; " ("" when all are current).
  std::string staleReason() const;
  // Sets nmi_identity_source_stale{resource} for every watched resource (before a scrape).
  void updateStaleGauges() const;

  // Per-resource status, for tests and logs.
  struct ResourceStatus {
    std::string resource;
    bool synced = false;
    bool connected = false;
    std::size_t objects = 0;
    std::string last_error;
    ReflectorStats stats;
    Freshness freshness;
  };
  std::vector<ResourceStatus> statusForTest() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
  boost::asio::any_io_executor executor_;
};

}  // namespace nmi::kube
