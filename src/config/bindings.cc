#include "config/bindings.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <limits>
#include <utility>

#include "config/values.h"

namespace nmi::config {
namespace {

constexpr int kNoMax = std::numeric_limits<int>::max();

std::optional<std::string> checkRange(std::int64_t value, int min, int max) {
  if (value >= min && value <= max) {
    return std::nullopt;
  }
  if (max == kNoMax) {
    return value < min ? "must be at least " + std::to_string(min) : std::string("is too large");
  }
  return "must be between " + std::to_string(min) + " and " + std::to_string(max);
}

// Parses a pflag Int and checks its range; the caller stores it.
std::optional<std::string> readInt(const std::string& text, int min, int max, int& out) {
  const std::optional<std::int64_t> value = parseGoInt(text);
  if (!value) {
    return "not an integer";
  }
  if (std::optional<std::string> why = checkRange(*value, min, max)) {
    return why;
  }
  out = static_cast<int>(*value);
  return std::nullopt;
}

std::string quotedDefault(std::string_view text) {
  return text.empty() ? std::string() : quoteValue(text);
}

std::string shortest(double value) {
  std::array<char, 32> buffer{};
  const auto [end, ec] = std::to_chars(buffer.data(), buffer.data() + buffer.size(), value);
  return ec == std::errc() ? std::string(buffer.data(), end) : std::string();
}

}  // namespace

Binding boolInto(bool& field) {
  return Binding{"", field ? "true" : "false", true,
                 [&field](const std::string& text) -> std::optional<std::string> {
                   const std::optional<bool> value = parseGoBool(text);
                   if (!value) {
                     return "not a boolean (use true or false)";
                   }
                   field = *value;
                   return std::nullopt;
                 }};
}

Binding intInto(int& field, int min, int max) {
  return Binding{"int", std::to_string(field), false, [&field, min, max](const std::string& text) {
                   return readInt(text, min, max, field);
                 }};
}

Binding levelInto(int& field) {
  return Binding{"level", std::to_string(field), false,
                 [&field](const std::string& text) -> std::optional<std::string> {
                   const std::optional<std::int64_t> value = parseDecimal(text);
                   if (!value) {
                     return "not a verbosity level (a number, 0 or more)";
                   }
                   if (*value > std::numeric_limits<std::int32_t>::max()) {
                     return "is too large";
                   }
                   field = static_cast<int>(*value);
                   return std::nullopt;
                 }};
}

// A binding of `field` (a duration) to an int in [min, max] counted in `Unit`s.
template <class Unit, class Field>
Binding countInto(const char* type, Field& field, int min, int max) {
  return Binding{type, std::to_string(std::chrono::duration_cast<Unit>(field).count()), false,
                 [&field, min, max](const std::string& text) -> std::optional<std::string> {
                   int value = 0;
                   if (std::optional<std::string> why = readInt(text, min, max, value)) {
                     return why;
                   }
                   field = Unit(value);
                   return std::nullopt;
                 }};
}

Binding secondsInto(std::chrono::seconds& field, int min, int max) {
  return countInto<std::chrono::seconds>("seconds", field, min, max);
}

Binding millisFromSecondsInto(std::chrono::milliseconds& field, int min, int max) {
  return countInto<std::chrono::seconds>("seconds", field, min, max);
}

Binding millisInto(std::chrono::milliseconds& field, int min, int max) {
  return countInto<std::chrono::milliseconds>("ms", field, min, max);
}

Binding portInto(std::uint16_t& field) {
  return Binding{"port", std::to_string(field), false,
                 [&field](const std::string& text) -> std::optional<std::string> {
                   if (std::optional<std::string> why = checkPort(text)) {
                     return why;
                   }
                   field = static_cast<std::uint16_t>(*parseDecimal(text));
                   return std::nullopt;
                 }};
}

Binding ipv4Into(std::string& field, bool allow_unspecified) {
  return Binding{
      "ipv4", quotedDefault(field), false,
      [&field, allow_unspecified](const std::string& text) -> std::optional<std::string> {
        if (!isIpv4(text)) {
          return "not an IPv4 address";
        }
        if (!allow_unspecified && text == "0.0.0.0") {
          return "must be a specific address, not 0.0.0.0";
        }
        field = text;
        return std::nullopt;
      }};
}

Binding hostPortInto(std::string& field) {
  return Binding{"host:port", quotedDefault(field), false,
                 [&field](const std::string& text) -> std::optional<std::string> {
                   const Result<HostPort> parsed = splitHostPort(text);
                   if (!parsed) {
                     return parsed.error().message;
                   }
                   field = text;
                   return std::nullopt;
                 }};
}

Binding authorityListInto(std::vector<std::string>& field) {
  return Binding{"hosts", "", false,
                 [&field](const std::string& text) -> std::optional<std::string> {
                   std::vector<std::string> entries;
                   std::size_t pos = 0;
                   while (pos <= text.size()) {
                     const std::size_t comma = std::min(text.find(',', pos), text.size());
                     std::string_view entry(text.data() + pos, comma - pos);
                     while (!entry.empty() && entry.front() == ' ') {
                       entry.remove_prefix(1);
                     }
                     while (!entry.empty() && entry.back() == ' ') {
                       entry.remove_suffix(1);
                     }
                     if (!entry.empty()) {
                       if (std::optional<std::string> why = checkHostPortEntry(entry)) {
                         return quoteValue(entry) + ": " + *why;
                       }
                       entries.emplace_back(entry);
                     }
                     pos = comma + 1;
                   }
                   field.insert(field.end(), entries.begin(), entries.end());
                   return std::nullopt;
                 }};
}

Binding stringInto(std::string& field) {
  return Binding{"string", quotedDefault(field), false, [&field](const std::string& text) {
                   field = text;
                   return std::optional<std::string>();
                 }};
}

Binding userAgentInto(std::string& field) {
  return Binding{"string", quotedDefault(field), false,
                 [&field](const std::string& text) -> std::optional<std::string> {
                   const bool has_control = std::any_of(text.begin(), text.end(), [](char c) {
                     const auto u = static_cast<unsigned char>(c);
                     return u < 0x20 || u == 0x7f;
                   });
                   if (has_control) {
                     return "must not contain control characters (it is sent as an HTTP header)";
                   }
                   field = text;
                   return std::nullopt;
                 }};
}

Binding positiveDoubleInto(double& field) {
  return Binding{"float", shortest(field), false,
                 [&field](const std::string& text) -> std::optional<std::string> {
                   const std::optional<double> value = parseGoFloat(text);
                   if (!value) {
                     return "not a number";
                   }
                   if (*value <= 0) {
                     return "must be greater than 0";
                   }
                   field = *value;
                   return std::nullopt;
                 }};
}

Binding operationModeInto(OperationMode& field) {
  return Binding{"mode", field == OperationMode::Managed ? "managed" : "standard", false,
                 [&field](const std::string& text) -> std::optional<std::string> {
                   std::string lowered = text;  // the original lower-cases the mode first
                   std::transform(lowered.begin(), lowered.end(), lowered.begin(), [](char c) {
                     return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
                   });
                   if (lowered == "standard") {
                     field = OperationMode::Standard;
                   } else if (lowered == "managed") {
                     field = OperationMode::Managed;
                   } else {
                     return "must be standard or managed";
                   }
                   return std::nullopt;
                 }};
}

Binding logFormatInto(LogFormat& field) {
  return Binding{"format", field == LogFormat::Json ? "json" : "text", false,
                 [&field](const std::string& text) -> std::optional<std::string> {
                   if (text == "text") {
                     field = LogFormat::Text;
                   } else if (text == "json") {
                     field = LogFormat::Json;
                   } else {
                     return "must be text or json";
                   }
                   return std::nullopt;
                 }};
}

Binding iptablesBackendInto(IptablesBackend& field) {
  const char* shown = "auto";
  if (field == IptablesBackend::Nft) {
    shown = "nft";
  } else if (field == IptablesBackend::Legacy) {
    shown = "legacy";
  }
  return Binding{"backend", shown, false,
                 [&field](const std::string& text) -> std::optional<std::string> {
                   if (text == "auto") {
                     field = IptablesBackend::Auto;
                   } else if (text == "nft") {
                     field = IptablesBackend::Nft;
                   } else if (text == "legacy") {
                     field = IptablesBackend::Legacy;
                   } else {
                     return "must be auto, nft or legacy";
                   }
                   return std::nullopt;
                 }};
}

Binding ignoredBool(bool default_value) {
  return Binding{"", default_value ? "true" : "false", true,
                 [](const std::string& text) -> std::optional<std::string> {
                   if (!parseGoBool(text)) {
                     return "not a boolean (use true or false)";
                   }
                   return std::nullopt;
                 }};
}

Binding ignoredValue(std::string type, std::string default_text,
                     std::function<bool(std::string_view)> valid, std::string_view why_invalid) {
  return Binding{std::move(type), std::move(default_text), false,
                 [valid = std::move(valid), why = std::string(why_invalid)](
                     const std::string& text) -> std::optional<std::string> {
                   if (!valid(text)) {
                     return why;
                   }
                   return std::nullopt;
                 }};
}

}  // namespace nmi::config
