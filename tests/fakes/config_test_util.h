#pragma once

// Helpers shared by the config tests.

#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "config/config.h"

namespace nmi::config::testing {

inline std::optional<std::string> noEnv(const char* /*name*/) {
  return std::nullopt;
}

// argv with the program name in front.
inline std::vector<std::string> withProgram(const std::vector<std::string>& flags) {
  std::vector<std::string> out{"nmi"};
  out.insert(out.end(), flags.begin(), flags.end());
  return out;
}

inline Result<ParseOutcome> parseFlags(std::initializer_list<std::string> flags,
                                       GetEnv env = noEnv) {
  return parse(withProgram(flags), env);
}

// Parses flags that must be valid and returns the Config (a default one after a failure).
inline Config configOf(std::initializer_list<std::string> flags, GetEnv env = noEnv) {
  Result<ParseOutcome> outcome = parseFlags(flags, env);
  EXPECT_TRUE(outcome.has_value()) << (outcome ? "" : outcome.error().message);
  if (!outcome) {
    return Config{};
  }
  EXPECT_EQ(outcome->action, ParseOutcome::Action::Run);
  return std::move(outcome)->config;
}

// The error message of flags that must be rejected; checks it is one InvalidArgument line.
inline std::string errorOf(std::initializer_list<std::string> flags, GetEnv env = noEnv) {
  Result<ParseOutcome> outcome = parseFlags(flags, env);
  EXPECT_FALSE(outcome.has_value()) << "accepted";
  if (outcome) {
    return "<accepted>";
  }
  EXPECT_EQ(outcome.error().code, ErrorCode::InvalidArgument);
  EXPECT_EQ(outcome.error().message.find('\n'), std::string::npos) << outcome.error().message;
  return outcome.error().message;
}

// "<flag>=<value>", e.g. flagArg("--nmi-port", "0").
inline std::string flagArg(std::string_view flag, std::string_view value) {
  std::string out(flag);
  out += '=';
  out += value;
  return out;
}

// The message parse() gives for a value that fails validation.
inline std::string invalidMessage(std::string_view value, std::string_view flag,
                                  std::string_view why) {
  std::string out = "invalid value \"";
  out += value;
  out += "\" for flag ";
  out += flag;
  out += ": ";
  out += why;
  return out;
}

// A fake environment: tests fill `vars` and pass `FakeEnv::get`.
class FakeEnv {
 public:
  FakeEnv() { active = &vars; }
  ~FakeEnv() { active = nullptr; }
  FakeEnv(const FakeEnv&) = delete;
  FakeEnv& operator=(const FakeEnv&) = delete;

  static std::optional<std::string> get(const char* name) {
    if (active == nullptr) {
      return std::nullopt;
    }
    const auto it = active->find(name);
    if (it == active->end()) {
      return std::nullopt;
    }
    return it->second;
  }

  std::map<std::string, std::string> vars;

 private:
  static inline const std::map<std::string, std::string>* active = nullptr;
};

}  // namespace nmi::config::testing
