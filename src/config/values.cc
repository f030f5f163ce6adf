#include "config/values.h"

#include <array>
#include <charconv>
#include <cmath>
#include <limits>
#include <system_error>

#include "common/text.h"

namespace nmi::config {
namespace {

bool isDigit(char c) {
  return c >= '0' && c <= '9';
}

bool isAlnum(char c) {
  return isDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// The value of c as a digit in any base up to 16, or 99 when c is not a digit.
int digitValue(char c) {
  if (isDigit(c)) {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return 99;
}

// Unsigned magnitude of a Go integer literal without its sign; nullopt when malformed or above
// 2^64-1.
std::optional<std::uint64_t> parseGoMagnitude(std::string_view text) {
  int base = 10;
  std::size_t pos = 0;
  bool after_prefix = false;  // an underscore may follow a base prefix
  if (text.size() >= 2 && text[0] == '0') {
    const char p = asciiLower(text[1]);
    if (p == 'x' || p == 'o' || p == 'b') {
      base = p == 'x' ? 16 : (p == 'o' ? 8 : 2);
      pos = 2;
      after_prefix = true;
    } else {
      base = 8;  // "0" is both the prefix and a digit
      pos = 1;
      after_prefix = true;
    }
  }
  std::uint64_t value = 0;
  bool saw_digit = pos == 1;  // the leading 0 of an octal literal counts
  bool last_was_digit = pos == 1;
  for (; pos < text.size(); ++pos) {
    const char c = text[pos];
    if (c == '_') {
      const bool ok_before = last_was_digit || (after_prefix && !saw_digit);
      if (!ok_before || pos + 1 >= text.size() || text[pos + 1] == '_') {
        return std::nullopt;
      }
      last_was_digit = false;
      continue;
    }
    const int d = digitValue(c);
    if (d >= base) {
      return std::nullopt;
    }
    const auto ud = static_cast<std::uint64_t>(d);
    const auto ubase = static_cast<std::uint64_t>(base);
    if (value > (std::numeric_limits<std::uint64_t>::max() - ud) / ubase) {
      return std::nullopt;
    }
    value = value * ubase + ud;
    saw_digit = true;
    last_was_digit = true;
  }
  if (!saw_digit) {
    return std::nullopt;
  }
  return value;
}

}  // namespace

std::optional<bool> parseGoBool(std::string_view text) {
  static constexpr std::array<std::string_view, 6> kTrue = {"1", "t", "T", "TRUE", "true", "True"};
  static constexpr std::array<std::string_view, 6> kFalse = {"0",     "f",     "F",
                                                             "FALSE", "false", "False"};
  for (const std::string_view t : kTrue) {
    if (text == t) {
      return true;
    }
  }
  for (const std::string_view f : kFalse) {
    if (text == f) {
      return false;
    }
  }
  return std::nullopt;
}

std::optional<std::int64_t> parseGoInt(std::string_view text) {
  bool negative = false;
  if (!text.empty() && (text[0] == '+' || text[0] == '-')) {
    negative = text[0] == '-';
    text.remove_prefix(1);
  }
  const std::optional<std::uint64_t> magnitude = parseGoMagnitude(text);
  if (!magnitude) {
    return std::nullopt;
  }
  constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  if (negative) {
    if (*magnitude > kMax + 1) {
      return std::nullopt;
    }
    if (*magnitude == kMax + 1) {
      return std::numeric_limits<std::int64_t>::min();
    }
    return -static_cast<std::int64_t>(*magnitude);
  }
  if (*magnitude > kMax) {
    return std::nullopt;
  }
  return static_cast<std::int64_t>(*magnitude);
}

std::optional<std::int64_t> parseDecimal(std::string_view text) {
  if (text.empty()) {
    return std::nullopt;
  }
  std::int64_t value = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end || !isDigit(text[0])) {
    return std::nullopt;
  }
  return value;
}

std::optional<double> parseGoFloat(std::string_view text) {
  if (!text.empty() && text[0] == '+') {
    text.remove_prefix(1);  // from_chars takes '-' but not '+'
  }
  if (text.empty() || !(isDigit(text[0]) || text[0] == '.' || text[0] == '-')) {
    return std::nullopt;
  }
  double value = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value, std::chars_format::general);
  if (ec != std::errc() || ptr != end || !std::isfinite(value)) {
    return std::nullopt;
  }
  return value;
}

std::optional<std::string> checkPort(std::string_view text) {
  const std::optional<std::int64_t> port = parseDecimal(text);
  if (!port) {
    return "not a port number";
  }
  if (*port < 1 || *port > 65535) {
    return "must be between 1 and 65535";
  }
  return std::nullopt;
}

bool isIpv4(std::string_view text) {
  int octets = 0;
  std::size_t pos = 0;
  for (;;) {
    const std::size_t dot = text.find('.', pos);
    const std::size_t end = dot == std::string_view::npos ? text.size() : dot;
    const std::string_view part = text.substr(pos, end - pos);
    if (part.empty() || part.size() > 3 || (part.size() > 1 && part[0] == '0')) {
      return false;
    }
    const std::optional<std::int64_t> value = parseDecimal(part);
    if (!value || *value > 255 || ++octets > 4) {
      return false;
    }
    if (dot == std::string_view::npos) {
      return octets == 4;
    }
    pos = dot + 1;
  }
}

bool isHostName(std::string_view text) {
  if (text.empty() || text.size() > 253) {
    return false;
  }
  if (isIpv4(text)) {
    return true;
  }
  std::size_t pos = 0;
  while (pos <= text.size()) {
    const std::size_t dot = text.find('.', pos);
    const std::size_t end = dot == std::string_view::npos ? text.size() : dot;
    const std::string_view label = text.substr(pos, end - pos);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (const char c : label) {
      if (!isAlnum(c) && c != '-') {
        return false;
      }
    }
    if (dot == std::string_view::npos) {
      return true;
    }
    pos = dot + 1;
  }
  return false;
}

std::optional<std::string> checkHostPortEntry(std::string_view text) {
  if (text.find_first_of("/?#@") != std::string_view::npos) {
    return "expected host, host:port or [v6-address]:port, without scheme, path or user";
  }
  std::string_view host = text;
  std::string_view port;
  bool has_port = false;
  if (text.starts_with('[')) {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos || close < 3) {
      return "expected [v6-address] or [v6-address]:port";
    }
    host = text.substr(1, close - 1);
    const std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        return "expected [v6-address] or [v6-address]:port";
      }
      has_port = true;
      port = rest.substr(1);
    }
    for (const char c : host) {
      if (digitValue(c) > 15 && c != ':' && c != '.') {
        return "not an IPv6 address in brackets";
      }
    }
  } else {
    const std::size_t colon = text.find(':');
    if (colon != std::string_view::npos) {
      host = text.substr(0, colon);
      port = text.substr(colon + 1);
      has_port = true;
      if (port.find(':') != std::string_view::npos) {
        return "an IPv6 host must be written in brackets: [v6-address]:port";
      }
    }
    if (!isHostName(host)) {
      return host.empty() ? "the host is missing" : "not a host name or IPv4 address";
    }
  }
  if (has_port) {
    if (std::optional<std::string> why = checkPort(port)) {
      return "port " + *why;
    }
  }
  return std::nullopt;
}

bool isKlogSeverity(std::string_view text) {
  for (const std::string_view name : {"INFO", "WARNING", "ERROR", "FATAL"}) {
    if (equalsIgnoreCase(text, name)) {
      return true;
    }
  }
  std::string_view digits = text;
  if (!digits.empty() && (digits[0] == '+' || digits[0] == '-')) {
    digits.remove_prefix(1);
  }
  const std::optional<std::int64_t> value = parseDecimal(digits);
  return value && *value <= std::numeric_limits<std::int32_t>::max();
}

bool isKlogModuleSpec(std::string_view text) {
  std::size_t pos = 0;
  while (pos <= text.size()) {
    const std::size_t comma = text.find(',', pos);
    const std::size_t end = comma == std::string_view::npos ? text.size() : comma;
    const std::string_view item = text.substr(pos, end - pos);
    if (!item.empty()) {
      const std::size_t eq = item.find('=');
      if (eq == 0 || eq == std::string_view::npos ||
          item.find('=', eq + 1) != std::string_view::npos || !parseDecimal(item.substr(eq + 1))) {
        return false;
      }
    }
    if (comma == std::string_view::npos) {
      break;
    }
    pos = comma + 1;
  }
  return true;
}

bool isKlogTraceLocation(std::string_view text) {
  if (text.empty()) {
    return true;
  }
  const std::size_t colon = text.rfind(':');
  return colon != std::string_view::npos && colon > 0 && parseDecimal(text.substr(colon + 1));
}

std::string quoteValue(std::string_view text) {
  static constexpr std::string_view kHex = "0123456789abcdef";
  std::string out = "\"";
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u == 0x7f) {
      out += "\\x";
      out += kHex[u >> 4U];
      out += kHex[u & 0xfU];
    } else {
      out += c;
    }
  }
  out += '"';
  return out;
}

}  // namespace nmi::config
