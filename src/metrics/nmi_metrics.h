#pragma once

#include <array>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace nmi::metrics {

// Every metric nmi exports, declared in one place (Envoy's stats struct). Modules receive a
// reference to this struct and touch only their own members. Label values always come from
// bounded sets: route names, status codes, a known resource or "other" — never a pod, an
// identity or a raw path. The original NMI's series keep their names and label keys so existing
// dashboards keep working. Thread-safe (prometheus-cpp metrics are atomic; Family::Add locks).
class NmiMetrics {
 private:
  // First member: everything below is registered in it.
  std::shared_ptr<prometheus::Registry> registry_;

 public:
  NmiMetrics();
  NmiMetrics(const NmiMetrics&) = delete;
  NmiMetrics& operator=(const NmiMetrics&) = delete;

  prometheus::Registry& registry() { return *registry_; }
  std::shared_ptr<prometheus::Registry> registryPtr() { return registry_; }

  // Text exposition format of everything registered.
  std::string serialize() const;

  // --- The original NMI's series -------------------------------------------------------------
  // aadpodidentity_nmi_operations_duration_seconds{operation_type,status_code,namespace,resource}
  // operation_type is the route name (the original used the raw path: unbounded).
  void observeOperation(std::string_view route, unsigned status, std::string_view pod_namespace,
                        std::string_view resource, double seconds);
  // aadpodidentity_imds_operations_duration_seconds / _errors_count{operation_type}
  // operation_type: adal_token_msi, adal_token_msi_userassignedid, adal_token.
  void observeTokenAcquisition(std::string_view operation_type, bool ok, double seconds);
  // aadpodidentity_kubernetes_api_operations_errors_count{operation_type}
  prometheus::Family<prometheus::Counter>& kubernetes_api_errors;

  // --- nmi's own series ----------------------------------------------------------------------
  // nmi_requests_total{route,code}
  void countRequest(std::string_view route, unsigned status);
  // nmi_token_cache_requests_total{result="hit"|"miss"|"coalesced"|"refresh"}
  prometheus::Counter& cache_hits;
  prometheus::Counter& cache_misses;
  prometheus::Counter& cache_coalesced;
  prometheus::Counter& cache_refreshes;
  prometheus::Gauge& cache_entries;  // nmi_token_cache_entries
  // nmi_upstream_requests_total{upstream="imds"|"aad"|"proxy",status} (status "error" when none)
  void countUpstream(std::string_view upstream, int status);
  // nmi_upstream_request_duration_seconds{upstream}
  void observeUpstream(std::string_view upstream, double seconds);
  // nmi_requests_waiting: requests waiting for identity data now.
  prometheus::Gauge& requests_waiting;
  // nmi_token_deliveries_total: tokens handed out (the audit log logs the first of each kind).
  prometheus::Counter& token_deliveries;
  // nmi_token_rejections_total{reason="per_pod_keys"|"per_pod_rate"|"cache_full"}
  prometheus::Family<prometheus::Counter>& token_rejections;
  // nmi_connections_active, nmi_connections_rejected_total{reason}
  prometheus::Gauge& connections_active;
  prometheus::Family<prometheus::Counter>& connections_rejected;
  // nmi_pod_cache_pods: pods this node's cache holds.
  prometheus::Gauge& pod_cache_pods;
  // nmi_identity_source_staleness_seconds: 0 while every cache is current, else the time since
  // the worst stale cache last heard from the API server.
  prometheus::Gauge& source_staleness;
  // nmi_identity_source_stale{resource}: 1 while that cache may be behind the API server (its
  // watch in backoff, listing again, or silent past its limit). resource: one of the fixed set of
  // kinds nmi watches (pods, azureassignedidentities, ...).
  prometheus::Family<prometheus::Gauge>& source_stale;
  // nmi_identity_source_reload_failures_total (identity file)
  prometheus::Counter& source_reload_failures;
  // nmi_iptables_reconcile_total{result="ok"|"repaired"|"error"}: checks of the interception
  // rules that found them in place, that repaired them, or that failed.
  prometheus::Counter& iptables_reconcile_ok;
  prometheus::Counter& iptables_reconcile_repaired;
  prometheus::Counter& iptables_reconcile_error;
  // nmi_iptables_rules_installed: 1 while the last check found (or put) nmi's rules in place.
  prometheus::Gauge& iptables_rules_installed;
  // nmi_conntrack_flows_deleted_total: connections to the metadata address dropped from the
  // conntrack table after the rules were installed.
  prometheus::Counter& conntrack_flows_deleted;

  // The resource label: well-known Azure resources keep their value, anything else is "other".
  static std::string_view resourceLabel(std::string_view resource);

 private:
  // Label sets seen before map straight to their metric: Family::Add builds a label map and
  // takes a lock on every call, which is too slow for the per-request path.
  template <class Metric>
  struct LabelCache {
    std::shared_mutex mu;
    std::unordered_map<std::string, Metric*> by_key;
  };
  LabelCache<prometheus::Counter> request_counters_;
  LabelCache<prometheus::Histogram> operation_histograms_;

  prometheus::Family<prometheus::Histogram>& operations_;
  prometheus::Family<prometheus::Histogram>& token_durations_;
  prometheus::Family<prometheus::Counter>& token_errors_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Counter>& upstream_requests_;
  prometheus::Family<prometheus::Histogram>& upstream_durations_;
};

}  // namespace nmi::metrics
