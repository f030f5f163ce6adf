#include "imds/audit.h"

#include <fmt/format.h>

#include "common/log.h"
#include "identity/redact.h"
#include "metrics/nmi_metrics.h"

namespace nmi::imds {

AuditLog::AuditLog(metrics::NmiMetrics& metrics, std::size_t capacity)
    : metrics_(metrics), capacity_(capacity == 0 ? 1 : capacity) {}

namespace {

// FNV-1a over the fields, each followed by a separator byte.
std::uint64_t digest(const AuditLog::Delivery& d) {
  std::uint64_t h = 1469598103934665603ULL;
  const auto mix = [&h](std::string_view s) {
    for (const char c : s) {
      h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
    }
    h = (h ^ 0x1FU) * 1099511628211ULL;
  };
  mix(d.endpoint);
  mix(d.pod_uid);
  mix(d.pod_ns);
  mix(d.pod_name);
  mix(d.identity);
  mix(d.client_id);
  mix(d.resource);
  h = (h ^ static_cast<std::uint64_t>(d.expires_on)) * 1099511628211ULL;
  return h;
}

}  // namespace

std::string AuditLog::line(const Delivery& d) {
  return fmt::format(
      "token delivered endpoint={} pod={} pod_uid={} identity={} client_id={} resource={} "
      "expires_on={}",
      d.endpoint, quoteLogValue(std::string(d.pod_ns) + "/" + std::string(d.pod_name)),
      quoteLogValue(d.pod_uid), quoteLogValue(d.identity),
      quoteLogValue(identity::redactClientId(d.client_id)), quoteLogValue(d.resource),
      d.expires_on);
}

bool AuditLog::record(const Delivery& d) {
  metrics_.token_deliveries.Increment();
  const std::uint64_t key = digest(d);
  {
    const std::lock_guard lock(mu_);
    if (!seen_.insert(key).second) {
      return false;
    }
    order_.push_back(key);
    if (order_.size() > capacity_) {
      seen_.erase(order_.front());
      order_.pop_front();
    }
  }
  static const auto log = logger("nmi.audit");
  log->info("{}", line(d));
  return true;
}

}  // namespace nmi::imds
