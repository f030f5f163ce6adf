#pragma once

// Test-only: an ApiTransport answering from per-collection scripts.

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include "kube/api_client.h"

namespace nmi::kube::testing {

// A 200 answer with `body` as JSON.
inline ApiResponse okJson(const nlohmann::json& body) {
  return ApiResponse{200, body.dump(), std::nullopt};
}

// An error answer with a meta/v1 Status body.
inline ApiResponse statusAnswer(unsigned code, const std::string& reason,
                                const std::string& message,
                                std::optional<std::chrono::seconds> retry_after = {}) {
  const nlohmann::json status = {{"kind", "Status"},   {"apiVersion", "v1"}, {"status", "Failure"},
                                 {"message", message}, {"reason", reason},   {"code", code}};
  return ApiResponse{code, status.dump(), retry_after};
}

// A List body.
inline nlohmann::json listBody(const std::string& resource_version,
                               const std::vector<nlohmann::json>& items,
                               const std::string& continue_token = "") {
  nlohmann::json metadata = {{"resourceVersion", resource_version}};
  if (!continue_token.empty()) {
    metadata["continue"] = continue_token;
  }
  return {{"kind", "List"}, {"apiVersion", "v1"}, {"metadata", metadata}, {"items", items}};
}

// One watch line.
inline std::string eventLine(const std::string& type, const nlohmann::json& object) {
  return nlohmann::json{{"type", type}, {"object", object}}.dump();
}

inline std::string bookmarkLine(const std::string& resource_version) {
  return eventLine("BOOKMARK", {{"kind", "Pod"},
                                {"apiVersion", "v1"},
                                {"metadata", {{"resourceVersion", resource_version}}}});
}

inline std::string errorEventLine(int code, const std::string& reason, const std::string& message) {
  return eventLine("ERROR", {{"kind", "Status"},
                             {"apiVersion", "v1"},
                             {"status", "Failure"},
                             {"code", code},
                             {"reason", reason},
                             {"message", message}});
}

// Answers GETs and watches from scripts kept per collection path (the target before '?'), in
// order, and records every call ("GET <target>" / "WATCH <target>"). A call finding its script
// empty runs the exhausted hook (e.g. to stop a reflector) and then waits until its
// CancellationSignal fires (Cancelled). With holdGets(true), GETs wait until release(), and
// so do watches whose script says `held`.
// Thread-safe; callers run on strands.
class FakeApiTransport final : public ApiTransport {
 public:
  struct WatchScript {
    bool open = true;  // the server accepts the watch (opened() is called)
    std::vector<std::string> lines;
    Result<ApiResponse> end = ApiResponse{200, "", std::nullopt};
    std::function<void()> before;  // runs when the watch starts
    bool held = false;             // after opened(), wait for release() before the lines
  };

  void addGet(const std::string& path, Result<ApiResponse> answer,
              std::function<void()> before = {}) {
    const std::lock_guard lock(mu_);
    gets_[path].push_back(GetScript{std::move(answer), std::move(before)});
  }

  void addWatch(const std::string& path, WatchScript script) {
    const std::lock_guard lock(mu_);
    watches_[path].push_back(std::move(script));
  }

  void onExhausted(std::function<void()> hook) {
    const std::lock_guard lock(mu_);
    exhausted_ = std::move(hook);
  }

  void holdGets(bool on) {
    const std::lock_guard lock(mu_);
    hold_ = on;
  }

  // Lets every held GET and watch go on.
  void release() {
    std::vector<std::shared_ptr<boost::asio::steady_timer>> timers;
    {
      const std::lock_guard lock(mu_);
      timers.swap(held_);
    }
    for (const auto& timer : timers) {
      boost::asio::post(timer->get_executor(), [timer] { timer->cancel(); });
    }
  }

  std::size_t held() const {
    const std::lock_guard lock(mu_);
    return held_.size();
  }

  std::vector<std::string> calls() const {
    const std::lock_guard lock(mu_);
    return calls_;
  }

  Task<Result<ApiResponse>> get(std::string target, std::size_t /*max_body*/,
                                std::chrono::milliseconds /*timeout*/,
                                CancellationSignal* cancel) override {
    GetScript script;
    bool found = false;
    std::shared_ptr<boost::asio::steady_timer> held;
    auto executor = co_await boost::asio::this_coro::executor;
    {
      const std::lock_guard lock(mu_);
      calls_.push_back("GET " + target);
      auto& queue = gets_[pathOf(target)];
      if (!queue.empty()) {
        script = std::move(queue.front());
        queue.pop_front();
        found = true;
      }
      if (found && hold_) {
        held = std::make_shared<boost::asio::steady_timer>(executor, std::chrono::hours(1));
        held_.push_back(held);
      }
    }
    if (!found) {
      co_await exhausted(cancel);
      co_return makeError(ErrorCode::Cancelled, "script exhausted");
    }
    if (held) {
      boost::system::error_code ec;
      co_await held->async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
    }
    if (script.before) {
      script.before();
    }
    co_return script.answer;
  }

  Task<Result<ApiResponse>> watch(std::string target, std::size_t /*max_line*/,
                                  WatchTimeouts /*timeouts*/, WatchHandler& handler,
                                  CancellationSignal* cancel) override {
    WatchScript script;
    bool found = false;
    {
      const std::lock_guard lock(mu_);
      calls_.push_back("WATCH " + target);
      auto& queue = watches_[pathOf(target)];
      if (!queue.empty()) {
        script = std::move(queue.front());
        queue.pop_front();
        found = true;
      }
    }
    if (!found) {
      handler.opened();
      co_await exhausted(cancel);
      co_return makeError(ErrorCode::Cancelled, "script exhausted");
    }
    if (script.before) {
      script.before();
    }
    if (script.open) {
      handler.opened();
      if (script.held) {
        auto executor = co_await boost::asio::this_coro::executor;
        auto timer = std::make_shared<boost::asio::steady_timer>(executor, std::chrono::hours(1));
        {
          const std::lock_guard lock(mu_);
          held_.push_back(timer);
        }
        boost::system::error_code ec;
        co_await timer->async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
      }
      for (const auto& line : script.lines) {
        if (!handler.line(line)) {
          co_return ApiResponse{200, "", std::nullopt};
        }
      }
    }
    co_return script.end;
  }

 private:
  struct GetScript {
    Result<ApiResponse> answer = ApiResponse{};
    std::function<void()> before;
  };

  static std::string pathOf(const std::string& target) {
    return target.substr(0, target.find('?'));
  }

  Task<void> exhausted(CancellationSignal* cancel) {
    std::function<void()> hook;
    {
      const std::lock_guard lock(mu_);
      hook = exhausted_;
    }
    if (hook) {
      hook();
    }
    if (cancel == nullptr) {
      co_return;
    }
    auto executor = co_await boost::asio::this_coro::executor;
    auto timer = std::make_shared<boost::asio::steady_timer>(executor, std::chrono::hours(1));
    const std::size_t id = cancel->add(
        [timer] { boost::asio::post(timer->get_executor(), [timer] { timer->cancel(); }); });
    boost::system::error_code ec;
    co_await timer->async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
    cancel->remove(id);
  }

  mutable std::mutex mu_;
  std::map<std::string, std::deque<GetScript>> gets_;
  std::map<std::string, std::deque<WatchScript>> watches_;
  std::function<void()> exhausted_;
  bool hold_ = false;
  std::vector<std::shared_ptr<boost::asio::steady_timer>> held_;
  std::vector<std::string> calls_;
};

}  // namespace nmi::kube::testing
