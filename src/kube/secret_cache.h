#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "common/result.h"
#include "common/task.h"
#include "identity/types.h"
#include "kube/api_client.h"

namespace nmi::kube {

struct SecretCacheOptions {
  std::chrono::seconds ttl{30};  // 0: no caching (concurrent reads still share one request)
  std::size_t max_entries = 64;
  std::chrono::milliseconds timeout{10'000};  // one GET
};

// Reads Secrets on demand (GET /api/v1/namespaces/<ns>/secrets/<name>, at most kMaxSecretBytes)
// through a short, bounded cache: a Secret read successfully is served for `ttl`; errors are
// never cached; concurrent reads of one Secret share one request. When full, expired entries go
// first, then the one closest to expiry. Thread-safe; callers run on strands. The transport and
// clock must outlive the cache.
class SecretCache {
 public:
  // on_error runs once per failed GET (metrics), may be empty.
  SecretCache(ApiTransport& transport, const Clock& clock, SecretCacheOptions options,
              std::function<void()> on_error);

  // Errors: NotFound (no such Secret, or an empty reference), PermissionDenied (RBAC),
  // Unavailable (the API server, or a Secret that does not decode), Timeout.
  Task<Result<identity::SecretData>> get(identity::SecretRef ref);

  std::size_t sizeForTest() const;
  std::uint64_t fetchesForTest() const;

 private:
  struct Flight {
    std::optional<Result<identity::SecretData>> result;
    std::vector<TimerPtr> waiters;
  };
  struct Entry {
    identity::SecretData data;
    MonotonicTime expires;
  };

  Task<Result<identity::SecretData>> fetch(const identity::SecretRef& ref);
  void storeLocked(const std::string& key, const identity::SecretData& data, MonotonicTime now);

  ApiTransport& transport_;
  const Clock& clock_;
  const SecretCacheOptions options_;
  const std::function<void()> on_error_;

  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> entries_;
  std::unordered_map<std::string, std::shared_ptr<Flight>> flights_;
  std::uint64_t fetches_ = 0;
};

}  // namespace nmi::kube
