#include "imds/audit.h"

#include <fmt/format.h>

#include "common/log.h"
#include "identity/redact.h"
#include "metrics/nmi_metrics.h"

namespace nmi::imds {

AuditLog::AuditLog(metrics::NmiMetrics& metrics, std::size_t capacity)
    : metrics_(metrics), capacity_(capacity == 0 ? 1 : capacity) {}

bool AuditLog::record(const Delivery& d) {
  metrics_.token_deliveries.Increment();
  std::string key = fmt::format("{}\x1f{}\x1f{}\x1f{}\x1f{}", d.pod_uid, d.identity, d.client_id,
                                d.resource, d.expires_on);
  {
    const std::lock_guard lock(mu_);
    if (!seen_.insert(key).second) {
      return false;
    }
    order_.push_back(std::move(key));
    if (order_.size() > capacity_) {
      seen_.erase(order_.front());
      order_.pop_front();
    }
  }
  static const auto log = logger("nmi.audit");
  log->info(
      "token delivered endpoint={} pod={}/{} pod_uid={} identity={} client_id={} "
      "resource={} expires_on={}",
      d.endpoint, d.pod_ns, d.pod_name, d.pod_uid, d.identity,
      identity::redactClientId(d.client_id), d.resource, d.expires_on);
  return true;
}

}  // namespace nmi::imds
