#pragma once

#include <functional>
#include <utility>

#include "http/server.h"
#include "metrics/nmi_metrics.h"

namespace nmi::metrics {

// The metrics port: /metrics in the Prometheus text format (version 0.0.4); 404 for any other
// path. `before_scrape` refreshes gauges that are computed rather than counted (staleness, cache
// sizes) just before each scrape.
class MetricsHandler final : public http::Handler {
 public:
  MetricsHandler(NmiMetrics& metrics, std::function<void()> before_scrape)
      : metrics_(metrics), before_scrape_(std::move(before_scrape)) {}
  Task<http::Response> handle(http::Request& request, const http::RequestContext& context) override;

 private:
  NmiMetrics& metrics_;
  std::function<void()> before_scrape_;
};

}  // namespace nmi::metrics
