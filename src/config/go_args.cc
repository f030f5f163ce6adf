#include "config/go_args.h"

#include <cstddef>
#include <optional>

#include "config/values.h"

namespace nmi::config {
namespace {

Error invalid(std::string message) {
  return makeError(ErrorCode::InvalidArgument, std::move(message));
}

// pflag reads -v2 as the shorthand v with the value 2; Go's flag would call it an unknown -v2.
bool isVerbosityShorthand(std::string_view name) {
  return name.size() > 1 && name[0] == 'v' && parseDecimal(name.substr(1)).has_value();
}

Error positional(std::string_view word, const std::optional<std::string>& bare_bool_before) {
  std::string message =
      "unexpected argument " + quoteValue(word) + ": nmi takes no positional arguments";
  if (bare_bool_before && parseGoBool(word)) {
    // Go reads `--flag false` as --flag (true) followed by the word "false".
    message += " (set a boolean flag with --" + *bare_bool_before + "=" + std::string(word) + ")";
  }
  return invalid(std::move(message));
}

}  // namespace

Result<GoArgs> splitGoArgs(const std::vector<std::string>& args, const ArgSpecOf& spec_of) {
  GoArgs out;
  std::optional<std::string> bare_bool_before;  // the previous word was `--name` of a bool flag
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& word = args[i];
    if (word == "--") {
      if (i + 1 < args.size()) {
        return positional(args[i + 1], std::nullopt);
      }
      break;
    }
    if (word.size() < 2 || word[0] != '-') {
      return positional(word, bare_bool_before);
    }
    bare_bool_before.reset();
    const std::size_t dashes = word[1] == '-' ? 2 : 1;
    const std::string_view body = std::string_view{word}.substr(dashes);
    if (body.empty() || body[0] == '-' || body[0] == '=') {
      return invalid("bad flag syntax: " + word);
    }
    const std::size_t eq = body.find('=');
    std::string name(body.substr(0, eq));
    const bool has_value = eq != std::string_view::npos;
    std::string value = has_value ? std::string(body.substr(eq + 1)) : std::string();

    if (name == "help" || name == "h") {
      out.help = true;
      return out;
    }
    ArgSpec spec = spec_of(name);
    if (spec.kind == ArgKind::Unknown && dashes == 1 && !has_value && isVerbosityShorthand(name)) {
      value = name.substr(1);
      name = "v";
      out.values.push_back(ArgValue{std::move(name), std::move(value)});
      continue;
    }
    const std::string shown = std::string(dashes, '-') + name;
    switch (spec.kind) {
      case ArgKind::Unknown:
        return invalid("unknown flag " + shown + " (see nmi --help for the flags nmi accepts)");
      case ArgKind::Removed:
        return invalid("flag " + shown + " is not supported: " + std::string(spec.removed_note));
      case ArgKind::Bool:
        if (!has_value) {
          value = "true";
          bare_bool_before = name;
        }
        break;
      case ArgKind::Value:
        if (!has_value) {
          if (i + 1 >= args.size()) {
            return invalid("flag " + shown + " needs a value");
          }
          value = args[++i];  // like Go, even a word that starts with '-'
        }
        break;
    }
    out.values.push_back(ArgValue{std::move(name), std::move(value)});
  }
  return out;
}

}  // namespace nmi::config
