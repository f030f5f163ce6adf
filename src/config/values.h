#pragma once

// Value parsers with Go's spellings (strconv.ParseBool, strconv.ParseInt with base 0) and the
// address checks the flags need. Pure functions; internal to config/.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace nmi::config {

// strconv.ParseBool: 1 t T TRUE true True / 0 f F FALSE false False, nothing else.
std::optional<bool> parseGoBool(std::string_view text);

// strconv.ParseInt(text, 0, 64): optional sign, 0x/0o/0b or leading-0 octal prefixes, and
// underscores between digits. nullopt when malformed or out of the int64 range.
std::optional<std::int64_t> parseGoInt(std::string_view text);

// Digits only (no sign, no prefix), as klog's levels and Go's port numbers are read.
std::optional<std::int64_t> parseDecimal(std::string_view text);

// strconv.ParseFloat(text, 64) for ordinary decimal spellings (optional sign, fraction,
// exponent); nullopt for anything else, including inf and nan.
std::optional<double> parseGoFloat(std::string_view text);

// A TCP port, 1-65535, in decimal. Returns why not when invalid.
std::optional<std::string> checkPort(std::string_view text);

// Dotted-quad IPv4 without leading zeros (net.ParseIP's IPv4 form).
bool isIpv4(std::string_view text);

// A DNS name (letters, digits, '-', '.'; labels of 1-63 characters not starting or ending with
// '-'), or a dotted-quad IPv4 address.
bool isHostName(std::string_view text);

// An authority without scheme or path: "host" or "host:port" (host as isHostName allows), or
// "[v6]" / "[v6]:port". Returns why not when invalid.
std::optional<std::string> checkHostPortEntry(std::string_view text);

// klog's --stderrthreshold: a severity name (INFO, WARNING, ERROR, FATAL, any case) or a number.
bool isKlogSeverity(std::string_view text);

// klog's --vmodule: comma-separated pattern=N (empty entries allowed).
bool isKlogModuleSpec(std::string_view text);

// klog's --log_backtrace_at: empty, or file:N.
bool isKlogTraceLocation(std::string_view text);

// "<v>" for error messages: the value quoted, with control characters escaped.
std::string quoteValue(std::string_view text);

}  // namespace nmi::config
