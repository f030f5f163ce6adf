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

#include "common/cancellation.h"
#include "common/result.h"
#include "http/client.h"
#include "tests/fakes/hold_gate.h"

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

  void hold(bool on) { gate_.hold(on); }

  // Lets the `n` oldest held calls go on; returns how many were released.
  std::size_t release(std::size_t n = 1) { return gate_.release(n); }
  std::size_t releaseAll() { return gate_.releaseAll(); }

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
  std::size_t heldCount() const { return gate_.heldCount(); }
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
      hold = gate_.holding();
    }
    if (hook) {
      hook(request);
    }
    if (hold) {
      const bool passed = co_await gate_.pass(cancel);
      if (!passed) {
        const std::lock_guard lock(mu_);
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
  mutable std::mutex mu_;
  std::deque<Result<http::ClientResponse>> script_;
  std::vector<http::ClientRequest> requests_;
  std::function<void(const http::ClientRequest&)> on_send_;
  HoldGate gate_;
  std::size_t in_flight_ = 0;
  std::size_t max_in_flight_ = 0;
  std::size_t cancelled_ = 0;
};

}  // namespace nmi::testing
