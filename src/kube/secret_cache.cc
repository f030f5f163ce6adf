#include "kube/secret_cache.h"

#include <utility>

#include <boost/asio/this_coro.hpp>
#include <nlohmann/json.hpp>

#include "kube/decode.h"
#include "kube/query.h"
#include "kube/store.h"
#include "kube/watch_decode.h"

namespace nmi::kube {

namespace asio = boost::asio;

SecretCache::SecretCache(ApiTransport& transport, const Clock& clock, SecretCacheOptions options,
                         std::function<void()> on_error)
    : transport_(transport), clock_(clock), options_(options), on_error_(std::move(on_error)) {}

std::size_t SecretCache::sizeForTest() const {
  const std::lock_guard lock(mu_);
  return entries_.size();
}

std::uint64_t SecretCache::fetchesForTest() const {
  const std::lock_guard lock(mu_);
  return fetches_;
}

void SecretCache::storeLocked(const std::string& key, const identity::SecretData& data,
                              MonotonicTime now) {
  if (options_.ttl.count() <= 0 || options_.max_entries == 0) {
    return;
  }
  if (entries_.size() >= options_.max_entries && entries_.find(key) == entries_.end()) {
    std::erase_if(entries_, [now](const auto& entry) { return entry.second.expires <= now; });
  }
  if (entries_.size() >= options_.max_entries && entries_.find(key) == entries_.end()) {
    auto oldest = entries_.begin();
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (it->second.expires < oldest->second.expires) {
        oldest = it;
      }
    }
    entries_.erase(oldest);
  }
  entries_.insert_or_assign(key, Entry{data, now + options_.ttl});
}

Task<Result<identity::SecretData>> SecretCache::fetch(const identity::SecretRef& ref) {
  const std::string target = secretPath(ref.ns, ref.name);
  const std::string what = "get secret " + ref.ns + "/" + ref.name;
  auto response = co_await transport_.get(target, kMaxSecretBytes, options_.timeout, nullptr);
  Result<identity::SecretData> result = makeError(ErrorCode::Internal, "not read");
  if (!response) {
    const ErrorCode code =
        response.error().code == ErrorCode::Timeout ? ErrorCode::Timeout : ErrorCode::Unavailable;
    result = makeError(code, what + ": " + response.error().message);
  } else if (auto failure =
                 classifyStatus(response->status, response->body, response->retry_after, what)) {
    Error error = std::move(failure->error);
    if (error.code != ErrorCode::PermissionDenied && error.code != ErrorCode::NotFound) {
      error.code = ErrorCode::Unavailable;
    }
    result = std::move(error);
  } else {
    const auto json = nlohmann::json::parse(response->body, nullptr, /*allow_exceptions=*/false);
    if (json.is_discarded()) {
      result = makeError(ErrorCode::Unavailable, what + ": not valid JSON");
    } else {
      auto decoded = decodeSecret(json);
      if (decoded) {
        result = std::move(*decoded);
      } else {
        result = makeError(ErrorCode::Unavailable, what + ": " + decoded.error().message);
      }
    }
  }
  if (!result && on_error_) {
    on_error_();
  }
  co_return result;
}

Task<Result<identity::SecretData>> SecretCache::get(identity::SecretRef ref) {
  if (ref.name.empty() || ref.ns.empty()) {
    co_return makeError(ErrorCode::NotFound, "the identity names no secret (clientPassword)");
  }
  const std::string key = objectKey(ref.ns, ref.name);
  auto executor = co_await asio::this_coro::executor;
  std::shared_ptr<Flight> flight;
  TimerPtr waiter;
  {
    const std::lock_guard lock(mu_);
    const MonotonicTime now = clock_.monotonicNow();
    if (const auto it = entries_.find(key); it != entries_.end()) {
      if (it->second.expires > now) {
        co_return it->second.data;
      }
      entries_.erase(it);
    }
    if (const auto it = flights_.find(key); it != flights_.end()) {
      flight = it->second;
      waiter = clock_.makeTimer(executor);
      flight->waiters.push_back(waiter);
    } else {
      flight = std::make_shared<Flight>();
      flights_.emplace(key, flight);
      ++fetches_;
    }
  }
  if (waiter) {
    const std::chrono::milliseconds wait_for = options_.timeout + std::chrono::seconds(1);
    co_await waiter->waitFor(wait_for);
    const std::lock_guard lock(mu_);
    if (flight->result) {
      co_return *flight->result;
    }
    co_return makeError(ErrorCode::Timeout,
                        "timed out waiting for secret " + ref.ns + "/" + ref.name);
  }
  auto result = co_await fetch(ref);
  std::vector<TimerPtr> to_wake;
  {
    const std::lock_guard lock(mu_);
    flights_.erase(key);
    if (result) {
      storeLocked(key, *result, clock_.monotonicNow());
    }
    flight->result = result;
    to_wake.swap(flight->waiters);
  }
  for (const auto& timer : to_wake) {
    timer->wake();
  }
  co_return result;
}

}  // namespace nmi::kube
