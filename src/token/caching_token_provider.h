#pragma once

#include <chrono>
#include <cstddef>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <boost/asio/any_io_executor.hpp>

#include "common/cancellation.h"
#include "common/clock.h"
#include "common/result.h"
#include "common/task.h"
#include "metrics/nmi_metrics.h"
#include "token/rate_limit.h"
#include "token/refresh_policy.h"
#include "token/types.h"

namespace nmi::token {

struct CacheOptions {
  std::chrono::seconds refresh_ahead{300};  // renew in the background this long before expiry
  std::chrono::seconds min_lifetime{60};    // fetch anew when less than this is left
  std::size_t max_entries = 4096;           // least recently used evicted beyond this
  std::size_t per_pod_max_keys = 32;        // distinct tokens one requester may miss on
  double per_pod_miss_rate = 5.0;           // misses per second per requester...
  double per_pod_miss_burst = 20;           // ...with this burst
  std::chrono::seconds recent_use{1800};    // "in use": sweeper refreshes; requester kept
  std::chrono::seconds sweep_interval{30};
  std::size_t max_requesters = 4096;  // requester states kept at most
};

// The token cache in front of the upstream providers (managed identities -> `upstream_mi`,
// service principals -> `upstream_sp`), keyed by TokenRequest (TokenRequestKeyEqual: any spelling
// of a client or resource id finds the same entry):
//   * a hit (at least min_lifetime left) is answered at once; inside the refresh window a
//     background refresh starts and the cached token is still returned;
//   * misses are single-flight: one upstream call per key, every concurrent caller gets its
//     result. The upstream call is cancelled only when every caller waiting for it has gone
//     (cancelled); a background refresh is never cancelled that way. Errors are not cached;
//   * at most max_entries tokens (LRU); expired ones are dropped by the sweeper, which also
//     renews tokens used within recent_use once they are inside the refresh window;
//   * misses (not hits) are limited per requester: per_pod_max_keys distinct tokens in use and a
//     token bucket of per_pod_miss_rate/s (burst per_pod_miss_burst). Beyond: ResourceExhausted.
// Thread-safe. Callers must run on strands (wake-ups are posted to the caller's executor). The
// object must outlive its flights: stop() it and let its executors finish before destroying it
// (the destructor calls stop(), which posts to the executor given to start(), so that executor
// must still exist then).
class CachingTokenProvider final : public TokenCache {
 public:
  CachingTokenProvider(TokenProvider& upstream_mi, TokenProvider& upstream_sp, const Clock& clock,
                       metrics::NmiMetrics& metrics, CacheOptions options);
  CachingTokenProvider(const CachingTokenProvider&) = delete;
  CachingTokenProvider& operator=(const CachingTokenProvider&) = delete;
  ~CachingTokenProvider() override;

  // TokenCache::get: a hit (or a refusal) at once, else the wait for the shared fetch. Errors:
  // those of the upstream providers; ResourceExhausted "too many distinct tokens for this pod" /
  // "too many token fetches for this pod"; Cancelled (`cancel`, may be null, fired; the shared
  // fetch goes on while others wait for it).
  TokenAnswer get(const TokenRequest& request, std::string_view requester,
                  const boost::asio::any_io_executor& executor,
                  CancellationSignal* cancel) override;

  // get() as one coroutine, on the calling coroutine's strand.
  Task<Result<AccessToken>> fetch(TokenRequest request, std::string requester,
                                  CancellationSignal* cancel);

  // Starts the sweeper (every sweep_interval) on a strand of `executor`; stop() ends it.
  void start(const boost::asio::any_io_executor& executor);
  void stop();

  // One sweep now; refreshes run on `executor`.
  void sweepForTest(const boost::asio::any_io_executor& executor);
  std::size_t inFlightForTest() const;

  // Tokens held now (the nmi_token_cache_entries gauge).
  std::size_t size() const;
  std::optional<AccessToken> peekForTest(const TokenRequest& request) const;

 private:
  struct Flight {
    bool background = false;
    bool done = false;
    int waiters = 0;
    std::vector<TimerPtr> timers;
    CancellationSignal cancel;  // cancels the upstream call
    std::optional<Result<AccessToken>> result;
  };
  using FlightPtr = std::shared_ptr<Flight>;

  struct Entry {
    AccessToken token;
    MonotonicTime last_used;
    std::list<const TokenRequest*>::iterator lru;
  };

  struct Requester {
    explicit Requester(TokenBucket b) : bucket(b) {}
    TokenBucket bucket;
    MonotonicTime last_seen;
    std::unordered_map<TokenRequest, MonotonicTime, TokenRequestHash, TokenRequestKeyEqual> keys;
  };

  struct SweeperControl {
    std::mutex mu;
    bool stopped = false;
    boost::asio::any_io_executor strand;  // where the sweeper and its refreshes run
    TimerPtr timer;                       // of clock_, on `strand`
  };

  Task<Result<AccessToken>> waitFor(FlightPtr flight, TimerPtr timer, TokenRequest key,
                                    CancellationSignal* cancel);
  Task<void> runFlight(TokenRequest key, FlightPtr flight);
  void spawnFlight(const boost::asio::any_io_executor& executor, const TokenRequest& key,
                   const FlightPtr& flight);
  void sweep(const boost::asio::any_io_executor& executor);
  static Task<void> sweepLoop(CachingTokenProvider* self, std::shared_ptr<SweeperControl> control);

  // Under mu_.
  void touch(Entry& entry, MonotonicTime now);
  // A servable cached token for `request` (mu_ held); sets `refresh` to a new background flight
  // when the token is inside the refresh window and no flight runs.
  std::optional<AccessToken> hitLocked(const TokenRequest& request, std::string_view requester,
                                       SystemTime now, MonotonicTime mono, FlightPtr& refresh);
  void countHit(const boost::asio::any_io_executor& executor, const TokenRequest& request,
                const FlightPtr& refresh);
  void store(const TokenRequest& key, const AccessToken& token, MonotonicTime now);
  std::optional<std::string_view> admit(std::string_view requester, const TokenRequest& key,
                                        MonotonicTime now, bool charge_rate);
  Requester& requesterFor(std::string_view requester, MonotonicTime now);
  void pruneRequesters(MonotonicTime now);
  void updateGauge();

  TokenProvider& upstream_mi_;
  TokenProvider& upstream_sp_;
  const Clock& clock_;
  metrics::NmiMetrics& metrics_;
  const CacheOptions options_;
  const RefreshPolicy policy_;

  mutable std::mutex mu_;
  std::unordered_map<TokenRequest, Entry, TokenRequestHash, TokenRequestKeyEqual> entries_;
  std::list<const TokenRequest*> lru_;  // front: most recently used; points at entries_' keys
  std::unordered_map<TokenRequest, FlightPtr, TokenRequestHash, TokenRequestKeyEqual> flights_;
  std::unordered_map<std::string, Requester> requesters_;
  std::shared_ptr<SweeperControl> sweeper_;
};

}  // namespace nmi::token
