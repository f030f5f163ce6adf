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

#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/cancellation.h"
#include "common/clock.h"
#include "common/result.h"
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

  void hold(bool on) {
    const std::lock_guard lock(mu_);
    hold_ = on;
  }
  std::size_t release(std::size_t n = 1) {
    std::vector<std::shared_ptr<Held>> to_wake;
    {
      const std::lock_guard lock(mu_);
      while (n-- > 0 && !held_.empty()) {
        held_.front()->released = true;
        to_wake.push_back(held_.front());
        held_.pop_front();
      }
    }
    for (const auto& h : to_wake) {
      boost::asio::post(h->timer->get_executor(), [t = h->timer] { t->cancel(); });
    }
    return to_wake.size();
  }
  std::size_t releaseAll() { return release(static_cast<std::size_t>(-1)); }

  std::size_t calls() const {
    const std::lock_guard lock(mu_);
    return requests_.size();
  }
  std::vector<token::TokenRequest> requests() const {
    const std::lock_guard lock(mu_);
    return requests_;
  }
  std::size_t heldCount() const {
    const std::lock_guard lock(mu_);
    return held_.size();
  }
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
      hold = hold_;
    }
    if (hold) {
      auto executor = co_await boost::asio::this_coro::executor;
      auto held = std::make_shared<Held>();
      held->timer = std::make_shared<boost::asio::steady_timer>(
          executor, boost::asio::steady_timer::time_point::max());
      {
        const std::lock_guard lock(mu_);
        held_.push_back(held);
      }
      auto timer = held->timer;
      const std::size_t id = cancel != nullptr ? cancel->add([timer] {
        boost::asio::post(timer->get_executor(), [timer] { timer->cancel(); });
      })
                                               : 0;
      boost::system::error_code ec;
      co_await timer->async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
      if (cancel != nullptr) {
        cancel->remove(id);
      }
      const std::lock_guard lock(mu_);
      if (!held->released) {
        held_.erase(std::remove(held_.begin(), held_.end(), held), held_.end());
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
  struct Held {
    std::shared_ptr<boost::asio::steady_timer> timer;
    bool released = false;
  };

  const Clock* clock_ = nullptr;
  mutable std::mutex mu_;
  std::deque<Result<token::AccessToken>> script_;
  std::vector<token::TokenRequest> requests_;
  std::deque<std::shared_ptr<Held>> held_;
  std::chrono::seconds default_lifetime_{3600};
  bool hold_ = false;
  std::size_t minted_ = 0;
  std::size_t cancelled_ = 0;
};

}  // namespace nmi::testing
