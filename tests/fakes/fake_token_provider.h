#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "common/cancellation.h"
#include "common/clock.h"
#include "common/result.h"
#include "tests/fakes/hold_gate.h"
#include "token/types.h"

namespace nmi::testing {

// A TokenProvider that answers from a script and records every request. Results are consumed in
// order; when the script is empty it answers a fresh token "token-<n>" valid for
// `default_lifetime` from the clock given (or fails with Unavailable without a clock). With
// hold(true) each call waits until release()d or its CancellationSignal fires (then Cancelled).
// Thread-safe; callers run on strands.
class FakeTokenProvider final : public token::TokenProvider {
 public:
  FakeTokenProvider() = default;
  explicit FakeTokenProvider(const Clock* clock) : clock_(clock) {}

  void setNext(token::AccessToken token) { push(std::move(token)); }
  void push(Result<token::AccessToken> result) {
    const std::lock_guard lock(mu_);
    script_.push_back(std::move(result));
  }
  void setDefaultLifetime(std::chrono::seconds lifetime) {
    const std::lock_guard lock(mu_);
    default_lifetime_ = lifetime;
  }

  void hold(bool on) { gate_.hold(on); }
  // Lets the `n` oldest held calls go on; returns how many were released.
  std::size_t release(std::size_t n = 1) { return gate_.release(n); }
  std::size_t releaseAll() { return gate_.releaseAll(); }

  std::size_t calls() const {
    const std::lock_guard lock(mu_);
    return requests_.size();
  }
  std::vector<token::TokenRequest> requests() const {
    const std::lock_guard lock(mu_);
    return requests_;
  }
  std::size_t heldCount() const { return gate_.heldCount(); }
  std::size_t cancelledCalls() const {
    const std::lock_guard lock(mu_);
    return cancelled_;
  }

  Task<Result<token::AccessToken>> fetchToken(const token::TokenRequest& request,
                                              CancellationSignal* cancel) override {
    bool hold = false;
    {
      const std::lock_guard lock(mu_);
      requests_.push_back(request);
      hold = gate_.holding();
    }
    if (hold) {
      const bool passed = co_await gate_.pass(cancel);
      if (!passed) {
        const std::lock_guard lock(mu_);
        ++cancelled_;
        co_return makeError(ErrorCode::Cancelled, "fetch cancelled");
      }
    }
    const std::lock_guard lock(mu_);
    if (!script_.empty()) {
      Result<token::AccessToken> next = std::move(script_.front());
      script_.pop_front();
      co_return next;
    }
    if (clock_ == nullptr) {
      co_return makeError(ErrorCode::Unavailable, "no scripted token");
    }
    token::AccessToken token;
    token.access_token = "token-" + std::to_string(++minted_);
    token.resource = request.resource;
    token.not_before = clock_->systemNow();
    token.expires_on = clock_->systemNow() + default_lifetime_;
    co_return token;
  }

 private:
  const Clock* clock_ = nullptr;
  mutable std::mutex mu_;
  std::deque<Result<token::AccessToken>> script_;
  std::vector<token::TokenRequest> requests_;
  std::chrono::seconds default_lifetime_{3600};
  HoldGate gate_;
  std::size_t minted_ = 0;
  std::size_t cancelled_ = 0;
};

}  // namespace nmi::testing
