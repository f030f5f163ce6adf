#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "iptables/command_runner.h"

namespace nmi::testing {

// A CommandRunner that records every command (argv, input, environment) and answers from
// handlers registered per program (argv[0]); a program without a handler is NotFound, like a
// missing binary. Thread-safe.
class FakeCommandRunner final : public iptables::CommandRunner {
 public:
  using Handler = std::function<Result<iptables::CommandOutput>(const iptables::Command&)>;

  // Answers every run of `program` with `handler`.
  void on(const std::string& program, Handler handler) {
    const std::lock_guard lock(mu_);
    handlers_[program] = std::move(handler);
  }
  // Answers every run of `program` with this output (exit 0 unless given).
  void succeed(const std::string& program, std::string out = "", int exit_code = 0,
               std::string err = "") {
    on(program, [out = std::move(out), exit_code, err = std::move(err)](const auto&) {
      return Result<iptables::CommandOutput>(iptables::CommandOutput{exit_code, out, err});
    });
  }
  void remove(const std::string& program) {
    const std::lock_guard lock(mu_);
    handlers_.erase(program);
  }

  Result<iptables::CommandOutput> run(const iptables::Command& command) override {
    Handler handler;
    {
      const std::lock_guard lock(mu_);
      calls_.push_back(command);
      if (cancelled_) {
        return makeError(ErrorCode::Cancelled, "cancelled");
      }
      const auto it = handlers_.find(command.argv.at(0));
      if (it == handlers_.end()) {
        return makeError(ErrorCode::NotFound, command.argv.at(0) + ": not found");
      }
      handler = it->second;
    }
    return handler(command);
  }
  void cancel() override {
    const std::lock_guard lock(mu_);
    cancelled_ = true;
  }

  std::vector<iptables::Command> calls() const {
    const std::lock_guard lock(mu_);
    return calls_;
  }
  // The commands run of one program, in order.
  std::vector<iptables::Command> callsTo(std::string_view program) const {
    const std::lock_guard lock(mu_);
    std::vector<iptables::Command> out;
    for (const auto& c : calls_) {
      if (c.argv.at(0) == program) {
        out.push_back(c);
      }
    }
    return out;
  }
  void clearCalls() {
    const std::lock_guard lock(mu_);
    calls_.clear();
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, Handler> handlers_;
  std::vector<iptables::Command> calls_;
  bool cancelled_ = false;
};

}  // namespace nmi::testing
