#include "metrics/nmi_metrics.h"

#include <array>
#include <string>

#include <prometheus/text_serializer.h>

namespace nmi::metrics {

namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

// The original's buckets (seconds): requests may legitimately wait up to ~100 s.
const prometheus::Histogram::BucketBoundaries& operationBuckets() {
  static const prometheus::Histogram::BucketBoundaries kBuckets{
      0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,  2,  3,  4,  5,
      10,    15,   20,    25,   30,  40,   50,  60, 70, 80, 90, 100};
  return kBuckets;
}

const prometheus::Histogram::BucketBoundaries& upstreamBuckets() {
  static const prometheus::Histogram::BucketBoundaries kBuckets{
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  return kBuckets;
}

constexpr std::array<std::string_view, 12> kKnownResources = {
    "https://management.azure.com/",
    "https://management.azure.com",
    "https://management.core.windows.net/",
    "https://vault.azure.net",
    "https://vault.azure.net/",
    "https://storage.azure.com/",
    "https://storage.azure.com",
    "https://graph.microsoft.com/",
    "https://database.windows.net/",
    "https://ossrdbms-aad.database.windows.net",
    "https://servicebus.azure.net/",
    "https://eventhubs.azure.net/",
};

template <class Metric, class Make>
Metric& cached(std::shared_mutex& mu, std::unordered_map<std::string, Metric*>& by_key,
               const std::string& key, Make make) {
  {
    const std::shared_lock lock(mu);
    if (auto it = by_key.find(key); it != by_key.end()) {
      return *it->second;
    }
  }
  Metric& metric = make();
  const std::unique_lock lock(mu);
  by_key.emplace(key, &metric);
  return metric;
}

}  // namespace

NmiMetrics::NmiMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      kubernetes_api_errors(BuildCounter()
                                .Name("aadpodidentity_kubernetes_api_operations_errors_count")
                                .Help("Kubernetes API operations that failed")
                                .Register(*registry_)),
      cache_hits(BuildCounter()
                     .Name("nmi_token_cache_requests_total")
                     .Help("Token cache lookups by result")
                     .Register(*registry_)
                     .Add({{"result", "hit"}})),
      cache_misses(BuildCounter()
                       .Name("nmi_token_cache_requests_total")
                       .Help("Token cache lookups by result")
                       .Register(*registry_)
                       .Add({{"result", "miss"}})),
      cache_coalesced(BuildCounter()
                          .Name("nmi_token_cache_requests_total")
                          .Help("Token cache lookups by result")
                          .Register(*registry_)
                          .Add({{"result", "coalesced"}})),
      cache_refreshes(BuildCounter()
                          .Name("nmi_token_cache_requests_total")
                          .Help("Token cache lookups by result")
                          .Register(*registry_)
                          .Add({{"result", "refresh"}})),
      cache_entries(BuildGauge()
                        .Name("nmi_token_cache_entries")
                        .Help("Tokens held in the cache")
                        .Register(*registry_)
                        .Add({})),
      requests_waiting(BuildGauge()
                           .Name("nmi_requests_waiting")
                           .Help("Requests waiting for identity data")
                           .Register(*registry_)
                           .Add({})),
      token_deliveries(BuildCounter()
                           .Name("nmi_token_deliveries_total")
                           .Help("Tokens delivered to pods and host callers")
                           .Register(*registry_)
                           .Add({})),
      token_rejections(BuildCounter()
                           .Name("nmi_token_rejections_total")
                           .Help("Token requests refused to protect the upstream, by reason")
                           .Register(*registry_)),
      connections_active(BuildGauge()
                             .Name("nmi_connections_active")
                             .Help("Open client connections")
                             .Register(*registry_)
                             .Add({})),
      connections_rejected(BuildCounter()
                               .Name("nmi_connections_rejected_total")
                               .Help("Client connections refused, by reason")
                               .Register(*registry_)),
      pod_cache_pods(BuildGauge()
                         .Name("nmi_pod_cache_pods")
                         .Help("Pods held for this node")
                         .Register(*registry_)
                         .Add({})),
      source_staleness(BuildGauge()
                           .Name("nmi_identity_source_staleness_seconds")
                           .Help("Seconds since the identity data was last known current")
                           .Register(*registry_)
                           .Add({})),
      source_stale(BuildGauge()
                       .Name("nmi_identity_source_stale")
                       .Help("1 while the identity cache of that resource may be behind the API "
                             "server (watch in backoff, relisting, or silent past its limit)")
                       .Register(*registry_)),
      source_reload_failures(BuildCounter()
                                 .Name("nmi_identity_source_reload_failures_total")
                                 .Help("Identity file reloads that failed (old data kept)")
                                 .Register(*registry_)
                                 .Add({})),
      iptables_reconcile_ok(BuildCounter()
                                .Name("nmi_iptables_reconcile_total")
                                .Help("Checks of the interception rules, by result")
                                .Register(*registry_)
                                .Add({{"result", "ok"}})),
      iptables_reconcile_repaired(BuildCounter()
                                      .Name("nmi_iptables_reconcile_total")
                                      .Help("Checks of the interception rules, by result")
                                      .Register(*registry_)
                                      .Add({{"result", "repaired"}})),
      iptables_reconcile_error(BuildCounter()
                                   .Name("nmi_iptables_reconcile_total")
                                   .Help("Checks of the interception rules, by result")
                                   .Register(*registry_)
                                   .Add({{"result", "error"}})),
      iptables_rules_installed(BuildGauge()
                                   .Name("nmi_iptables_rules_installed")
                                   .Help("1 while nmi's interception rules are in place")
                                   .Register(*registry_)
                                   .Add({})),
      conntrack_flows_deleted(BuildCounter()
                                  .Name("nmi_conntrack_flows_deleted_total")
                                  .Help("Connections to the metadata address dropped from "
                                        "conntrack after the rules were installed")
                                  .Register(*registry_)
                                  .Add({})),
      operations_(BuildHistogram()
                      .Name("aadpodidentity_nmi_operations_duration_seconds")
                      .Help("Duration of token requests (route, status, pod namespace, resource)")
                      .Register(*registry_)),
      token_durations_(BuildHistogram()
                           .Name("aadpodidentity_imds_operations_duration_seconds")
                           .Help("Duration of successful token acquisitions")
                           .Register(*registry_)),
      token_errors_(BuildCounter()
                        .Name("aadpodidentity_imds_operations_errors_count")
                        .Help("Failed token acquisitions")
                        .Register(*registry_)),
      requests_(BuildCounter()
                    .Name("nmi_requests_total")
                    .Help("Requests answered, by route and status code")
                    .Register(*registry_)),
      upstream_requests_(BuildCounter()
                             .Name("nmi_upstream_requests_total")
                             .Help("Requests to IMDS and Azure AD, by upstream and status")
                             .Register(*registry_)),
      upstream_durations_(BuildHistogram()
                              .Name("nmi_upstream_request_duration_seconds")
                              .Help("Duration of requests to IMDS and Azure AD")
                              .Register(*registry_)) {}

std::string NmiMetrics::serialize() const {
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

void NmiMetrics::observeOperation(std::string_view route, unsigned status,
                                  std::string_view pod_namespace, std::string_view resource,
                                  double seconds) {
  const std::string_view resource_label = resourceLabel(resource);
  std::string key;
  key.reserve(route.size() + pod_namespace.size() + resource_label.size() + 8);
  key.append(route).append("\x1f").append(std::to_string(status)).append("\x1f");
  key.append(pod_namespace).append("\x1f").append(resource_label);
  cached(
      operation_histograms_.mu, operation_histograms_.by_key, key,
      [&]() -> auto& {
        return operations_.Add({{"operation_type", std::string(route)},
                                {"status_code", std::to_string(status)},
                                {"namespace", std::string(pod_namespace)},
                                {"resource", std::string(resource_label)}},
                               operationBuckets());
      })
      .Observe(seconds);
}

void NmiMetrics::observeTokenAcquisition(std::string_view operation_type, bool ok, double seconds) {
  if (ok) {
    token_durations_.Add({{"operation_type", std::string(operation_type)}}, upstreamBuckets())
        .Observe(seconds);
  } else {
    token_errors_.Add({{"operation_type", std::string(operation_type)}}).Increment();
  }
}

void NmiMetrics::countRequest(std::string_view route, unsigned status) {
  std::string key(route);
  key.append("\x1f").append(std::to_string(status));
  cached(
      request_counters_.mu, request_counters_.by_key, key,
      [&]() -> auto& {
        return requests_.Add({{"route", std::string(route)}, {"code", std::to_string(status)}});
      })
      .Increment();
}

void NmiMetrics::countUpstream(std::string_view upstream, int status) {
  upstream_requests_
      .Add({{"upstream", std::string(upstream)},
            {"status", status > 0 ? std::to_string(status) : std::string("error")}})
      .Increment();
}

void NmiMetrics::observeUpstream(std::string_view upstream, double seconds) {
  upstream_durations_.Add({{"upstream", std::string(upstream)}}, upstreamBuckets())
      .Observe(seconds);
}

std::string_view NmiMetrics::resourceLabel(std::string_view resource) {
  for (const std::string_view known : kKnownResources) {
    if (resource == known) {
      return known;
    }
  }
  return resource.empty() ? std::string_view{} : std::string_view{"other"};
}

}  // namespace nmi::metrics
