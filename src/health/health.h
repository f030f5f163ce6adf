#pragma once

#include <functional>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "http/server.h"
#include "metrics/nmi_metrics.h"

namespace nmi::health {

// Readiness: a list of named checks, each returning why it is not ready ("" when ready).
// Thread-safe.
class Readiness {
 public:
  using Check = std::function<std::string()>;
  void add(std::string name, Check check);
  // Every failing check as "name: reason" lines; empty when ready.
  std::vector<std::string> failures() const;

 private:
  mutable std::mutex mu_;
  std::vector<std::pair<std::string, Check>> checks_;
};

// The probe port: /healthz (liveness: the event loop answers; never depends on the API server,
// IMDS or iptables) and /readyz (503 with the reasons until every readiness check passes).
class ProbeHandler final : public http::Handler {
 public:
  explicit ProbeHandler(const Readiness& readiness) : readiness_(readiness) {}
  Task<http::Response> handle(http::Request& request, const http::RequestContext& context) override;

 private:
  const Readiness& readiness_;
};

// The metrics port: /metrics in the Prometheus text format. `before_scrape` refreshes gauges
// that are computed rather than counted (staleness, cache sizes).
class MetricsHandler final : public http::Handler {
 public:
  MetricsHandler(metrics::NmiMetrics& metrics, std::function<void()> before_scrape)
      : metrics_(metrics), before_scrape_(std::move(before_scrape)) {}
  Task<http::Response> handle(http::Request& request, const http::RequestContext& context) override;

 private:
  metrics::NmiMetrics& metrics_;
  std::function<void()> before_scrape_;
};

}  // namespace nmi::health
