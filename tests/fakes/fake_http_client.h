#pragma once

#include <algorithm>
#include <cstddef>
#include <deque>
#include <functional>
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
#include "common/result.h"
#include "http/client.h"

namespace nmi::testing {

// An HttpClient that answers from a script and records every request. Outcomes are consumed in
// order; when the script is empty a call fails with Unavailable ("no scripted reply"). With
// hold(true) each call waits, without consuming anything, until release()d or its
// CancellationSignal fires (then it returns Cancelled), so tests can observe calls in flight.
// Thread-safe; callers run on strands.
class FakeHttpClient final : public http::HttpClient {
 public:
  void reply(unsigned status, std::string body, http::Headers headers = {}) {
    http::ClientResponse response;
    response.status = status;
    response.body = std::move(body);
    response.headers = std::move(headers);
    const std::lock_guard lock(mu_);
    script_.emplace_back(std::move(response));
  }

  void fail(ErrorCode code, std::string message = "scripted failure") {
    const std::lock_guard lock(mu_);
    script_.emplace_back(makeError(code, std::move(message)));
  }

  // Runs at the start of every call (e.g. to advance a FakeClock), outside the lock.
  void onSend(std::function<void(const http::ClientRequest&)> hook) {
    const std::lock_guard lock(mu_);
    on_send_ = std::move(hook);
  }

  void hold(bool on) {
    const std::lock_guard lock(mu_);
    hold_ = on;
  }

  // Lets the `n` oldest held calls go on; returns how many were released.
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

  std::vector<http::ClientRequest> requests() const {
    const std::lock_guard lock(mu_);
    return requests_;
  }
  http::ClientRequest lastRequest() const {
    const std::lock_guard lock(mu_);
    return requests_.empty() ? http::ClientRequest{} : requests_.back();
  }
  std::size_t calls() const {
    const std::lock_guard lock(mu_);
    return requests_.size();
  }
  std::size_t inFlight() const {
    const std::lock_guard lock(mu_);
    return in_flight_;
  }
  std::size_t maxInFlight() const {
    const std::lock_guard lock(mu_);
    return max_in_flight_;
  }
  std::size_t heldCount() const {
    const std::lock_guard lock(mu_);
    return held_.size();
  }
  std::size_t cancelledCalls() const {
    const std::lock_guard lock(mu_);
    return cancelled_;
  }

  Task<Result<http::ClientResponse>> send(http::ClientRequest request,
                                          CancellationSignal* cancel) override {
    std::function<void(const http::ClientRequest&)> hook;
    bool hold = false;
    {
      const std::lock_guard lock(mu_);
      requests_.push_back(request);
      ++in_flight_;
      max_in_flight_ = std::max(max_in_flight_, in_flight_);
      hook = on_send_;
      hold = hold_;
    }
    if (hook) {
      hook(request);
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
        --in_flight_;
        ++cancelled_;
        co_return makeError(ErrorCode::Cancelled, "request cancelled");
      }
    }
    const std::lock_guard lock(mu_);
    --in_flight_;
    if (cancel != nullptr && cancel->cancelled()) {
      ++cancelled_;
      co_return makeError(ErrorCode::Cancelled, "request cancelled");
    }
    if (script_.empty()) {
      co_return makeError(ErrorCode::Unavailable, "no scripted reply");
    }
    Result<http::ClientResponse> next = std::move(script_.front());
    script_.pop_front();
    co_return next;
  }

  // A stream answers like send(): a scripted 200's body goes to `receiver` in one piece (the
  // head is returned without it), any other answer is returned whole.
  Task<Result<http::ClientResponse>> stream(http::ClientRequest request,
                                            std::chrono::milliseconds /*silence*/,
                                            http::BodyReceiver& receiver,
                                            CancellationSignal* cancel) override {
    Result<http::ClientResponse> answer = co_await send(std::move(request), cancel);
    if (!answer || answer->status != 200) {
      co_return answer;
    }
    receiver.opened();
    std::string body = std::move(answer->body);
    answer->body.clear();
    if (!body.empty()) {
      auto more = receiver.receive(body);
      if (!more) {
        co_return more.error();
      }
    }
    co_return answer;
  }

 private:
  struct Held {
    std::shared_ptr<boost::asio::steady_timer> timer;
    bool released = false;
  };

  mutable std::mutex mu_;
  std::deque<Result<http::ClientResponse>> script_;
  std::vector<http::ClientRequest> requests_;
  std::deque<std::shared_ptr<Held>> held_;
  std::function<void(const http::ClientRequest&)> on_send_;
  bool hold_ = false;
  std::size_t in_flight_ = 0;
  std::size_t max_in_flight_ = 0;
  std::size_t cancelled_ = 0;
};

}  // namespace nmi::testing
