#pragma once

#include <chrono>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/cancellation.h"
#include "common/clock.h"
#include "common/result.h"
#include "token/types.h"

namespace nmi::testing {

// A TokenCache that answers from a script and records every call (request and requester).
// Scripted results are consumed in order; with none left it answers a token "token-<n>" valid
// for one hour from the clock given. Answers without suspending, as a cache hit does.
// Thread-safe.
class FakeTokenCache final : public token::TokenCache {
 public:
  explicit FakeTokenCache(const Clock& clock) : clock_(clock) {}

  struct Call {
    token::TokenRequest request;
    std::string requester;
  };

  void push(Result<token::AccessToken> result) {
    const std::lock_guard lock(mu_);
    script_.push_back(std::move(result));
  }

  std::vector<Call> calls() const {
    const std::lock_guard lock(mu_);
    return calls_;
  }

  token::TokenAnswer get(const token::TokenRequest& request, std::string_view requester,
                         const boost::asio::any_io_executor& /*executor*/,
                         CancellationSignal* /*cancel*/) override {
    return next(request, requester);
  }

 private:
  Result<token::AccessToken> next(const token::TokenRequest& request, std::string_view requester) {
    const std::lock_guard lock(mu_);
    calls_.push_back(Call{request, std::string(requester)});
    if (!script_.empty()) {
      Result<token::AccessToken> r = std::move(script_.front());
      script_.pop_front();
      return r;
    }
    token::AccessToken t;
    t.access_token = "token-" + std::to_string(calls_.size());
    t.resource = request.resource;
    t.not_before = clock_.systemNow();
    t.expires_on = t.not_before + std::chrono::hours{1};
    return t;
  }

  const Clock& clock_;
  mutable std::mutex mu_;
  std::deque<Result<token::AccessToken>> script_;
  std::vector<Call> calls_;
};

}  // namespace nmi::testing
