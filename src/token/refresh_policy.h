#pragma once

#include <chrono>
#include <cstdint>

#include "common/clock.h"
#include "token/types.h"

namespace nmi::token {

// When a cached token is served, renewed in the background, or fetched anew. Pure value type.
struct RefreshPolicy {
  std::chrono::seconds refresh_ahead{300};  // renew this long before expiry
  std::chrono::seconds min_lifetime{60};    // never hand out a token with less left than this
};

// Time left before `token` expires (negative once expired).
[[nodiscard]] inline std::chrono::seconds remainingLifetime(const AccessToken& token,
                                                            SystemTime now) {
  return std::chrono::duration_cast<std::chrono::seconds>(token.expires_on - now);
}

[[nodiscard]] inline bool isExpired(const AccessToken& token, SystemTime now) {
  return now >= token.expires_on;
}

// The token may be handed out: it has at least min_lifetime (and more than nothing) left.
[[nodiscard]] inline bool isServable(const AccessToken& token, SystemTime now,
                                     const RefreshPolicy& policy) {
  const auto left = remainingLifetime(token, now);
  return left > std::chrono::seconds{0} && left >= policy.min_lifetime;
}

// The token is inside the refresh window: renew it now.
[[nodiscard]] inline bool needsRefresh(const AccessToken& token, SystemTime now,
                                       const RefreshPolicy& policy) {
  return now + policy.refresh_ahead >= token.expires_on;
}

enum class CacheDecision : std::int8_t {
  Serve,            // fresh: hand it out
  ServeAndRefresh,  // hand it out and renew it in the background
  Fetch,            // too close to expiry (or expired): fetch before answering
};

[[nodiscard]] inline CacheDecision decide(const AccessToken& token, SystemTime now,
                                          const RefreshPolicy& policy) {
  if (!isServable(token, now, policy)) {
    return CacheDecision::Fetch;
  }
  return needsRefresh(token, now, policy) ? CacheDecision::ServeAndRefresh : CacheDecision::Serve;
}

// The sweeper renews an entry used within `recent_use` once it is inside the refresh window;
// an idle entry is left to expire.
[[nodiscard]] inline bool sweeperShouldRefresh(const AccessToken& token, SystemTime now,
                                               MonotonicTime last_used, MonotonicTime mono_now,
                                               std::chrono::seconds recent_use,
                                               const RefreshPolicy& policy) {
  return !isExpired(token, now) && mono_now - last_used <= recent_use &&
         needsRefresh(token, now, policy);
}

}  // namespace nmi::token
