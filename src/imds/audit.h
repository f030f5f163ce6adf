#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_set>

namespace nmi::metrics {
class NmiMetrics;
}

namespace nmi::imds {

// The audit trail of tokens handed out: one structured log line the first time a given
// (pod, identity, resource, token expiry) is delivered, a counter for every delivery. Never the
// token. Bounded: remembers the last `capacity` deliveries. Thread-safe.
class AuditLog {
 public:
  explicit AuditLog(metrics::NmiMetrics& metrics, std::size_t capacity = 16'384);

  struct Delivery {
    std::string_view endpoint;  // "token" or "host_token"
    std::string_view pod_ns;
    std::string_view pod_name;
    std::string_view pod_uid;
    std::string_view identity;  // ns/name of the AzureIdentity, or "exception:<selector>"
    std::string_view client_id;
    std::string_view resource;
    std::int64_t expires_on = 0;
  };

  // Counts the delivery; logs it when it is the first of its kind. Returns whether it logged.
  bool record(const Delivery& delivery);

  // The log line of a delivery: key=value fields whose values are quoted and escaped
  // (quoteLogValue), so that a value from the pod (the resource) cannot forge another field.
  // The client id is redacted. Pure.
  static std::string line(const Delivery& delivery);

 private:
  metrics::NmiMetrics& metrics_;
  const std::size_t capacity_;
  std::mutex mu_;
  // 64-bit digests of the deliveries seen (a collision costs one missed log line, never a token).
  std::unordered_set<std::uint64_t> seen_;
  std::deque<std::uint64_t> order_;
};

}  // namespace nmi::imds
