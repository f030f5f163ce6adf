#include "config/flag_set.h"

#include <algorithm>
#include <exception>
#include <utility>

#include <CLI/CLI.hpp>

#include "config/values.h"

namespace nmi::config {
namespace {

constexpr std::size_t kHelpColumn = 44;

std::string describe(const FlagDef& def, const Binding& binding) {
  std::string text(def.help);
  if (!binding.default_text.empty() && !(binding.is_bool && binding.default_text == "false")) {
    text += " (default " + binding.default_text + ")";
  }
  if (def.origin == Origin::Compat) {
    text += " [compatibility: no effect]";
  }
  return text;
}

}  // namespace

Error invalidValue(std::string_view name, std::string_view value, std::string_view why) {
  return makeError(ErrorCode::InvalidArgument, "invalid value " + quoteValue(value) +
                                                   " for flag --" + std::string(name) + ": " +
                                                   std::string(why));
}

FlagSet::FlagSet(std::string_view description, std::string_view footer)
    : app_(std::make_unique<CLI::App>(std::string(description), "nmi")) {
  app_->footer(std::string(footer));
  app_->get_formatter()->column_width(kHelpColumn);
  app_->set_help_flag("-h,--help", "print this help and exit")->group("General");
}

FlagSet::~FlagSet() = default;

void FlagSet::add(const FlagDef& def, Binding binding) {
  Flag& flag = flags_.emplace_back(Flag{def, std::move(binding), {}});
  // "v" is also reachable as -v; every other name is long only (CLI11's view, for --help).
  const std::string names = def.name == "v" ? "-v,--v" : "--" + std::string(def.name);
  CLI::Option* option = app_->add_option(names, flag.values, describe(flag.def, flag.binding));
  option->expected(1)->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  option->type_name(flag.binding.type)->group(std::string(def.group));
}

void FlagSet::addRemoved(std::string_view name, std::string_view note) {
  removed_.emplace_back(name, note);
}

const FlagSet::Flag* FlagSet::find(std::string_view name) const {
  const auto it = std::find_if(flags_.begin(), flags_.end(),
                               [name](const Flag& flag) { return flag.def.name == name; });
  return it == flags_.end() ? nullptr : &*it;
}

ArgSpec FlagSet::specOf(std::string_view name) const {
  for (const auto& [removed, note] : removed_) {
    if (removed == name) {
      return ArgSpec{ArgKind::Removed, note};
    }
  }
  const Flag* flag = find(name);
  if (flag == nullptr) {
    return ArgSpec{};
  }
  return ArgSpec{flag->binding.is_bool ? ArgKind::Bool : ArgKind::Value, {}};
}

Result<void> FlagSet::store(const std::vector<ArgValue>& values) {
  // Every occurrence is kept exactly as given, in order. (Handing them to CLI11's parser rewrote
  // a value written as "[...]" into a list: "[::1]" became "::1", "[a],[b]" two values.)
  for (const ArgValue& arg : values) {
    const auto it = std::find_if(flags_.begin(), flags_.end(),
                                 [&arg](const Flag& flag) { return flag.def.name == arg.name; });
    if (it == flags_.end()) {
      return makeError(ErrorCode::Internal, "flag parser: unknown flag --" + arg.name);
    }
    it->values.push_back(arg.value);
  }
  return {};
}

bool FlagSet::given(std::string_view name) const {
  const Flag* flag = find(name);
  return flag != nullptr && !flag->values.empty();
}

std::optional<std::string> FlagSet::lastValue(std::string_view name) const {
  const Flag* flag = find(name);
  if (flag == nullptr || flag->values.empty()) {
    return std::nullopt;
  }
  return flag->values.back();
}

Result<void> FlagSet::apply(std::string_view skip) {
  for (const Flag& flag : flags_) {
    if (flag.def.name == skip) {
      continue;
    }
    for (const std::string& value : flag.values) {
      if (std::optional<std::string> why = flag.binding.apply(value)) {
        return invalidValue(flag.def.name, value, *why);
      }
    }
  }
  return {};
}

std::vector<std::string> FlagSet::compatWarnings() const {
  std::vector<std::string> warnings;
  for (const Flag& flag : flags_) {
    if (flag.def.origin == Origin::Compat && !flag.values.empty()) {
      warnings.push_back("flag --" + std::string(flag.def.name) +
                         " is accepted for compatibility and has no effect");
    }
  }
  return warnings;
}

std::string FlagSet::help() const {
  try {
    return app_->help();
  } catch (const std::exception& e) {
    return std::string("nmi: cannot render help: ") + e.what() + "\n";
  }
}

}  // namespace nmi::config
