#pragma once

// Splits a command line the way the original's pflag + Go `flag` set read it, so every form the
// old manifests use keeps working: --name=value, --name value, -name=value, -name value, bare
// booleans (--name, -name) and pflag's -v2. CLI11 cannot read single-dash long names, so nmi
// resolves these forms first and hands CLI11 only canonical --name=value words. Internal to
// config/.

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace nmi::config {

enum class ArgKind {
  Unknown,  // not a flag of nmi
  Bool,     // takes a value only as name=value; a bare name means true
  Value,    // takes name=value or the next word
  Removed,  // was a flag of the original once; rejected with `removed_note`
};

struct ArgSpec {
  ArgKind kind = ArgKind::Unknown;
  std::string_view removed_note;  // for Removed: when and why
};

using ArgSpecOf = std::function<ArgSpec(std::string_view name)>;

// One flag occurrence; `name` carries no dashes. Bare booleans get the value "true".
struct ArgValue {
  std::string name;
  std::string value;

  bool operator==(const ArgValue&) const = default;
};

struct GoArgs {
  bool help = false;  // -h, -help or --help was met (everything after it is ignored, as pflag)
  std::vector<ArgValue> values;
};

// `args` excludes argv[0]. Errors are InvalidArgument with one line naming the offending word:
// unknown and removed flags, a value flag without a value, bad flag syntax (---x, --=x) and any
// positional argument (nmi takes none, so a word after `--` is rejected too).
Result<GoArgs> splitGoArgs(const std::vector<std::string>& args, const ArgSpecOf& spec_of);

}  // namespace nmi::config
