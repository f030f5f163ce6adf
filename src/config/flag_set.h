#pragma once

// The set of flags: each flag's name, help group, origin and the Binding that converts its text
// into a Config field. CLI11 renders --help; nothing outside config/ sees it.
// Internal to config/.

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "config/bindings.h"
#include "config/config.h"
#include "config/go_args.h"

namespace CLI {
class App;
}  // namespace CLI

namespace nmi::config {

enum class Origin {
  Original,  // a flag of aad-pod-identity's NMI that nmi implements
  New,       // nmi only
  Compat,    // accepted from the original's command line; nmi ignores it (one warning each)
};

struct FlagDef {
  std::string_view name;   // without dashes
  std::string_view group;  // --help section
  std::string_view help;
  Origin origin = Origin::Original;
};

// Not thread-safe; lives for one parse() call. The fields bound must outlive it.
class FlagSet final {
 public:
  FlagSet(std::string_view description, std::string_view footer);
  ~FlagSet();
  FlagSet(const FlagSet&) = delete;
  FlagSet& operator=(const FlagSet&) = delete;

  void add(const FlagDef& def, Binding binding);
  // A flag the original had once; giving it is an error that says `note`.
  void addRemoved(std::string_view name, std::string_view note);

  ArgSpec specOf(std::string_view name) const;

  // Keeps every occurrence, in order, exactly as given.
  Result<void> store(const std::vector<ArgValue>& values);
  bool given(std::string_view name) const;
  // The last value given for `name` (pflag: the last one wins), if any.
  std::optional<std::string> lastValue(std::string_view name) const;
  // Applies every stored occurrence in table order (each is checked; the last one wins), skipping
  // `skip`. The error is `invalid value "<v>" for flag --<name>: <why>`.
  Result<void> apply(std::string_view skip);
  // One line per Compat flag that was given.
  std::vector<std::string> compatWarnings() const;
  std::string help() const;

 private:
  struct Flag {
    FlagDef def;
    Binding binding;
    std::vector<std::string> values;  // filled by store()
  };
  const Flag* find(std::string_view name) const;

  std::unique_ptr<CLI::App> app_;
  std::deque<Flag> flags_;  // a deque: CLI11 keeps pointers to `values` (for --help)
  std::vector<std::pair<std::string_view, std::string_view>> removed_;
};

// `invalid value "<v>" for flag --<name>: <why>`.
Error invalidValue(std::string_view name, std::string_view value, std::string_view why);

}  // namespace nmi::config
