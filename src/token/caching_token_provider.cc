#include "token/caching_token_provider.h"

#include <algorithm>
#include <exception>
#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>

#include "token/log.h"

namespace nmi::token {

namespace asio = boost::asio;

namespace {

constexpr std::string_view kPerPodKeys = "per_pod_keys";
constexpr std::string_view kPerPodRate = "per_pod_rate";

Error cancelledError() {
  return makeError(ErrorCode::Cancelled, "token request cancelled");
}

}  // namespace

CachingTokenProvider::CachingTokenProvider(TokenProvider& upstream_mi, TokenProvider& upstream_sp,
                                           const Clock& clock, metrics::NmiMetrics& metrics,
                                           CacheOptions options)
    : upstream_mi_(upstream_mi),
      upstream_sp_(upstream_sp),
      clock_(clock),
      metrics_(metrics),
      options_(options),
      policy_{options.refresh_ahead, options.min_lifetime} {}

CachingTokenProvider::~CachingTokenProvider() {
  stop();
}

std::optional<AccessToken> CachingTokenProvider::hitLocked(const TokenRequest& request,
                                                           std::string_view requester,
                                                           SystemTime now, MonotonicTime mono,
                                                           FlightPtr& refresh) {
  const auto it = entries_.find(request);
  if (it == entries_.end()) {
    return std::nullopt;
  }
  const CacheDecision decision = decide(it->second.token, now, policy_);
  if (decision == CacheDecision::Fetch) {
    return std::nullopt;
  }
  touch(it->second, mono);
  if (const auto r = requesters_.find(std::string(requester)); r != requesters_.end()) {
    if (const auto k = r->second.keys.find(request); k != r->second.keys.end()) {
      k->second = mono;
    }
  }
  if (decision == CacheDecision::ServeAndRefresh && !flights_.contains(request)) {
    refresh = std::make_shared<Flight>();
    refresh->background = true;
    flights_.emplace(request, refresh);
  }
  return it->second.token;
}

void CachingTokenProvider::countHit(const asio::any_io_executor& executor,
                                    const TokenRequest& request, const FlightPtr& refresh) {
  metrics_.cache_hits.Increment();
  if (refresh) {
    metrics_.cache_refreshes.Increment();
    spawnFlight(executor, request, refresh);
  }
}

TokenAnswer CachingTokenProvider::get(const TokenRequest& request, std::string_view requester,
                                      const asio::any_io_executor& executor,
                                      CancellationSignal* cancel) {
  if (cancel != nullptr && cancel->cancelled()) {
    return Result<AccessToken>(cancelledError());
  }
  const SystemTime now = clock_.systemNow();
  const MonotonicTime mono = clock_.monotonicNow();
  std::optional<AccessToken> hit;
  std::optional<std::string_view> rejection;
  FlightPtr flight;
  TimerPtr timer;
  bool started = false;
  {
    const std::lock_guard lock(mu_);
    hit = hitLocked(request, requester, now, mono, flight);
    if (!hit) {
      const auto fit = flights_.find(request);
      const bool joining = fit != flights_.end();
      rejection = admit(requester, request, mono, /*charge_rate=*/!joining);
      if (!rejection) {
        timer = clock_.makeTimer(executor);
        if (joining) {
          flight = fit->second;
        } else {
          flight = std::make_shared<Flight>();
          flights_.emplace(request, flight);
          started = true;
        }
        ++flight->waiters;
        flight->timers.push_back(timer);
      }
    }
  }
  if (hit) {
    countHit(executor, request, flight);
    return Result<AccessToken>(std::move(*hit));
  }
  if (rejection) {
    metrics_.token_rejections.Add({{"reason", std::string(*rejection)}}).Increment();
    logger()->warn("requester={} reason={} token request refused", requester, *rejection);
    return Result<AccessToken>(
        makeError(ErrorCode::ResourceExhausted, *rejection == kPerPodKeys
                                                    ? "too many distinct tokens for this pod"
                                                    : "too many token fetches for this pod"));
  }
  if (started) {
    metrics_.cache_misses.Increment();
    spawnFlight(executor, request, flight);
  } else {
    metrics_.cache_coalesced.Increment();
  }
  return waitFor(std::move(flight), std::move(timer), request, cancel);
}

Task<Result<AccessToken>> CachingTokenProvider::fetch(TokenRequest request, std::string requester,
                                                      CancellationSignal* cancel) {
  const asio::any_io_executor executor = co_await asio::this_coro::executor;
  TokenAnswer answer = get(request, requester, executor, cancel);
  if (auto* ready = std::get_if<Result<AccessToken>>(&answer)) {
    co_return std::move(*ready);
  }
  co_return co_await std::get<Task<Result<AccessToken>>>(std::move(answer));
}

Task<Result<AccessToken>> CachingTokenProvider::waitFor(FlightPtr flight, TimerPtr timer,
                                                        TokenRequest key,
                                                        CancellationSignal* cancel) {
  const CancelRegistration on_cancel(cancel, [timer] { timer->wake(); });
  for (;;) {
    bool leaving = false;
    bool cancel_upstream = false;
    {
      const std::lock_guard lock(mu_);
      if (flight->done) {
        std::erase(flight->timers, timer);
        --flight->waiters;
        Result<AccessToken> result = *flight->result;
        co_return result;
      }
      if (cancel != nullptr && cancel->cancelled()) {
        leaving = true;
        std::erase(flight->timers, timer);
        --flight->waiters;
        // The last waiter of a fetch nobody else needs stops it; new callers start afresh.
        cancel_upstream = flight->waiters == 0 && !flight->background;
        if (cancel_upstream) {
          if (const auto it = flights_.find(key); it != flights_.end() && it->second == flight) {
            flights_.erase(it);
          }
        }
      }
    }
    if (leaving) {
      if (cancel_upstream) {
        flight->cancel.cancel();
      }
      co_return cancelledError();
    }
    // Until the flight ends or the caller leaves (both wake the timer): no deadline of its own.
    co_await timer->waitUntil(MonotonicTime::max());
  }
}

void CachingTokenProvider::spawnFlight(const asio::any_io_executor& executor,
                                       const TokenRequest& key, const FlightPtr& flight) {
  asio::co_spawn(executor, runFlight(key, flight), asio::detached);
}

Task<void> CachingTokenProvider::runFlight(TokenRequest key, FlightPtr flight) {
  TokenProvider& upstream =
      key.kind == TokenRequest::Kind::ManagedIdentity ? upstream_mi_ : upstream_sp_;
  Result<AccessToken> result = makeError(ErrorCode::Internal, "token fetch did not run");
  try {
    result = co_await upstream.fetchToken(key, &flight->cancel);
  } catch (const std::exception& e) {
    result = makeError(ErrorCode::Internal, std::string("token fetch threw: ") + e.what());
  }
  if (result && isExpired(*result, clock_.systemNow())) {
    result = makeError(ErrorCode::Unavailable, "upstream returned an expired token");
  }
  std::vector<TimerPtr> timers;
  {
    const std::lock_guard lock(mu_);
    if (const auto it = flights_.find(key); it != flights_.end() && it->second == flight) {
      flights_.erase(it);
    }
    if (result) {
      store(key, *result, clock_.monotonicNow());
    }
    flight->done = true;
    flight->result = result;
    timers = flight->timers;
  }
  for (const auto& timer : timers) {
    timer->wake();
  }
  if (!result && flight->background) {
    logger()->warn("background token refresh failed code={} error=\"{}\"",
                   errorCodeName(result.error().code), result.error().message);
  }
}

void CachingTokenProvider::touch(Entry& entry, MonotonicTime now) {
  entry.last_used = now;
  lru_.splice(lru_.begin(), lru_, entry.lru);
}

void CachingTokenProvider::store(const TokenRequest& key, const AccessToken& token,
                                 MonotonicTime now) {
  if (const auto it = entries_.find(key); it != entries_.end()) {
    it->second.token = token;  // a refresh keeps the entry's use time and LRU place
    return;
  }
  while (!lru_.empty() && entries_.size() >= std::max<std::size_t>(1, options_.max_entries)) {
    const TokenRequest* oldest = lru_.back();
    lru_.pop_back();
    entries_.erase(*oldest);
  }
  const auto [it, inserted] = entries_.emplace(key, Entry{token, now, {}});
  lru_.push_front(&it->first);
  it->second.lru = lru_.begin();
  updateGauge();
}

std::optional<std::string_view> CachingTokenProvider::admit(std::string_view requester,
                                                            const TokenRequest& key,
                                                            MonotonicTime now, bool charge_rate) {
  Requester& state = requesterFor(requester, now);
  state.last_seen = now;
  std::erase_if(state.keys, [&](const auto& kv) { return now - kv.second > options_.recent_use; });
  const auto k = state.keys.find(key);
  if (k == state.keys.end() && state.keys.size() >= options_.per_pod_max_keys) {
    return kPerPodKeys;
  }
  if (charge_rate && !state.bucket.tryTake(now)) {
    return kPerPodRate;
  }
  state.keys.insert_or_assign(key, now);
  return std::nullopt;
}

CachingTokenProvider::Requester& CachingTokenProvider::requesterFor(std::string_view requester,
                                                                    MonotonicTime now) {
  std::string id(requester);
  if (const auto it = requesters_.find(id); it != requesters_.end()) {
    return it->second;
  }
  if (requesters_.size() >= std::max<std::size_t>(1, options_.max_requesters)) {
    pruneRequesters(now);
  }
  if (requesters_.size() >= std::max<std::size_t>(1, options_.max_requesters)) {
    const auto oldest = std::min_element(
        requesters_.begin(), requesters_.end(),
        [](const auto& a, const auto& b) { return a.second.last_seen < b.second.last_seen; });
    requesters_.erase(oldest);
  }
  Requester state(TokenBucket(options_.per_pod_miss_rate, options_.per_pod_miss_burst, now));
  state.last_seen = now;
  return requesters_.emplace(std::move(id), std::move(state)).first->second;
}

void CachingTokenProvider::pruneRequesters(MonotonicTime now) {
  std::erase_if(requesters_,
                [&](const auto& kv) { return now - kv.second.last_seen > options_.recent_use; });
}

void CachingTokenProvider::updateGauge() {
  metrics_.cache_entries.Set(static_cast<double>(entries_.size()));
}

void CachingTokenProvider::sweep(const asio::any_io_executor& executor) {
  const SystemTime now = clock_.systemNow();
  const MonotonicTime mono = clock_.monotonicNow();
  std::vector<std::pair<TokenRequest, FlightPtr>> refreshes;
  {
    const std::lock_guard lock(mu_);
    for (auto it = entries_.begin(); it != entries_.end();) {
      const Entry& entry = it->second;
      if (isExpired(entry.token, now)) {
        lru_.erase(entry.lru);
        it = entries_.erase(it);
        continue;
      }
      if (sweeperShouldRefresh(entry.token, now, entry.last_used, mono, options_.recent_use,
                               policy_) &&
          !flights_.contains(it->first)) {
        auto flight = std::make_shared<Flight>();
        flight->background = true;
        flights_.emplace(it->first, flight);
        refreshes.emplace_back(it->first, std::move(flight));
      }
      ++it;
    }
    pruneRequesters(mono);
    updateGauge();
  }
  for (const auto& [key, flight] : refreshes) {
    metrics_.cache_refreshes.Increment();
    spawnFlight(executor, key, flight);
  }
}

void CachingTokenProvider::sweepForTest(const asio::any_io_executor& executor) {
  sweep(executor);
}

Task<void> CachingTokenProvider::sweepLoop(CachingTokenProvider* self,
                                           std::shared_ptr<SweeperControl> control) {
  const TimerPtr timer = control->timer;
  for (;;) {
    {
      const std::lock_guard lock(control->mu);
      if (control->stopped) {
        co_return;
      }
    }
    const std::chrono::nanoseconds interval = self->options_.sweep_interval;
    co_await timer->waitFor(interval);
    {
      const std::lock_guard lock(control->mu);
      if (control->stopped) {
        co_return;  // `self` may be gone: touch nothing
      }
    }
    self->sweep(control->strand);
  }
}

void CachingTokenProvider::start(const asio::any_io_executor& executor) {
  const std::lock_guard lock(mu_);
  if (sweeper_) {
    return;
  }
  const asio::any_io_executor strand = asio::make_strand(executor);
  sweeper_ = std::make_shared<SweeperControl>();
  sweeper_->strand = strand;
  sweeper_->timer = clock_.makeTimer(strand);
  asio::co_spawn(strand, sweepLoop(this, sweeper_), asio::detached);
}

void CachingTokenProvider::stop() {
  std::shared_ptr<SweeperControl> control;
  {
    const std::lock_guard lock(mu_);
    control = std::exchange(sweeper_, nullptr);
  }
  if (!control) {
    return;
  }
  {
    const std::lock_guard lock(control->mu);
    control->stopped = true;
  }
  control->timer->wake();
}

std::size_t CachingTokenProvider::size() const {
  const std::lock_guard lock(mu_);
  return entries_.size();
}

std::size_t CachingTokenProvider::inFlightForTest() const {
  const std::lock_guard lock(mu_);
  return flights_.size();
}

std::optional<AccessToken> CachingTokenProvider::peekForTest(const TokenRequest& request) const {
  const std::lock_guard lock(mu_);
  const auto it = entries_.find(request);
  if (it == entries_.end()) {
    return std::nullopt;
  }
  return it->second.token;
}

}  // namespace nmi::token
