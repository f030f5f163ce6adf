#include "imds/request_target.h"

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/text.h"

namespace nmi::imds {
namespace {

// Why one canonical form, decided once: CVE-2022-23551 let `/metadata/identity\oauth2\token/`
// miss aad-pod-identity's token route and reach IMDS, which treats '\' as '/', so a pod received
// a token for the node's identities. Every spelling IMDS would fold together must be folded here
// too, and anything ambiguous (double encoding, matrix parameters, non-ASCII) is refused.

Error invalid(std::string message) {
  return makeError(ErrorCode::InvalidArgument, std::move(message));
}

bool isVisibleAscii(unsigned char c) {
  return c >= 0x21 && c <= 0x7e;
}

bool isControl(unsigned char c) {
  return c < 0x20 || c == 0x7f;
}

std::optional<unsigned> hexValue(char c) {
  if (c >= '0' && c <= '9') {
    return static_cast<unsigned>(c - '0');
  }
  if (c >= 'a' && c <= 'f') {
    return static_cast<unsigned>(c - 'a' + 10);
  }
  if (c >= 'A' && c <= 'F') {
    return static_cast<unsigned>(c - 'A' + 10);
  }
  return std::nullopt;
}

// A name for a log message: bytes outside printable ASCII (and '\') are shown as \xNN.
std::string printable(std::string_view s) {
  static constexpr std::string_view kHex = "0123456789abcdef";
  std::string out;
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c >= 0x7f || ch == '\\') {
      out += "\\x";
      out += kHex[c >> 4U];
      out += kHex[c & 0xfU];
    } else {
      out += ch;
    }
  }
  return out;
}

// Decodes %XX escapes (and '+' as a space when plus_is_space). `what` names the part for errors.
Result<std::string> percentDecode(std::string_view in, bool plus_is_space, std::string_view what) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    const char ch = in[i];
    if (ch == '+' && plus_is_space) {
      out += ' ';
    } else if (ch != '%') {
      out += ch;
    } else {
      const std::optional<unsigned> hi = i + 1 < in.size() ? hexValue(in[i + 1]) : std::nullopt;
      const std::optional<unsigned> lo = i + 2 < in.size() ? hexValue(in[i + 2]) : std::nullopt;
      if (!hi || !lo) {
        return invalid("malformed percent-escape in " + std::string(what));
      }
      out += static_cast<char>((*hi << 4U) | *lo);
      i += 2;
    }
  }
  return out;
}

// Rules 4 and 5: the decoded path, with every '\' turned into '/'.
Result<std::string> decodePath(std::string_view raw_path) {
  Result<std::string> decoded = percentDecode(raw_path, /*plus_is_space=*/false, "path");
  if (!decoded) {
    return std::move(decoded).error();
  }
  for (char& ch : *decoded) {
    const auto c = static_cast<unsigned char>(ch);
    // Raw bytes are already visible ASCII, so anything else here came from an escape. A space is
    // refused too: no IMDS path has one and the path must be forwardable without re-encoding.
    if (!isVisibleAscii(c)) {
      return invalid("path contains an encoded control, space or non-ASCII byte");
    }
    if (ch == '%') {
      return invalid("path contains an encoded '%' (double encoding)");
    }
    if (ch == '?' || ch == '#') {
      return invalid("path contains an encoded '?' or '#'");
    }
    if (ch == '\\') {
      ch = '/';
    }
  }
  return decoded;
}

struct ResolvedPath {
  std::vector<std::string> segments;
  bool trailing_slash = false;
};

// Rules 6 to 8: segments without empty and dot segments; ".." may not climb above the root.
Result<ResolvedPath> resolveSegments(std::string_view decoded) {
  ResolvedPath out;
  bool last_was_dot = false;
  std::size_t pos = 0;
  while (pos <= decoded.size()) {
    std::size_t end = decoded.find('/', pos);
    if (end == std::string_view::npos) {
      end = decoded.size();
    }
    const std::string_view segment = decoded.substr(pos, end - pos);
    pos = end + 1;
    if (segment.empty()) {
      continue;
    }
    last_was_dot = segment == "." || segment == "..";
    if (segment == "..") {
      if (out.segments.empty()) {
        return invalid("path climbs above the root with '..'");
      }
      out.segments.pop_back();
    } else if (segment != ".") {
      if (segment.find(';') != std::string_view::npos) {
        return invalid("path segment contains ';'");
      }
      out.segments.emplace_back(segment);
    }
  }
  if (!out.segments.empty() && equalsIgnoreCase(out.segments.front(), "metadata")) {
    out.segments.front() = "metadata";
  }
  out.trailing_slash = !out.segments.empty() && (decoded.ends_with('/') || last_was_dot);
  return out;
}

bool hasControl(std::string_view s) {
  for (const char ch : s) {
    if (isControl(static_cast<unsigned char>(ch))) {
      return true;
    }
  }
  return false;
}

// Rule 9: name[=value] pieces separated by '&'.
Result<std::vector<QueryParam>> parseQuery(std::string_view raw_query) {
  if (raw_query.find(';') != std::string_view::npos) {
    return invalid("query contains ';'");
  }
  std::vector<QueryParam> params;
  std::size_t pos = 0;
  while (pos <= raw_query.size()) {
    std::size_t end = raw_query.find('&', pos);
    if (end == std::string_view::npos) {
      end = raw_query.size();
    }
    const std::string_view piece = raw_query.substr(pos, end - pos);
    pos = end + 1;
    if (piece.empty()) {
      continue;
    }
    if (params.size() == kMaxQueryParams) {
      return invalid("more than " + std::to_string(kMaxQueryParams) + " query parameters");
    }
    const std::size_t eq = piece.find('=');
    Result<std::string> name =
        percentDecode(piece.substr(0, eq), /*plus_is_space=*/true, "query parameter name");
    if (!name) {
      return std::move(name).error();
    }
    Result<std::string> value =
        percentDecode(eq == std::string_view::npos ? std::string_view() : piece.substr(eq + 1),
                      /*plus_is_space=*/true, "query parameter value");
    if (!value) {
      return std::move(value).error();
    }
    if (name->empty()) {
      return invalid("query parameter with an empty name");
    }
    if (hasControl(*name) || hasControl(*value)) {
      return invalid("query parameter '" + printable(*name) + "' contains a control byte");
    }
    for (const QueryParam& p : params) {
      if (p.name == *name) {
        return invalid("duplicate query parameter '" + printable(*name) + "'");
      }
    }
    params.push_back(QueryParam{std::move(name).value(), std::move(value).value()});
  }
  return params;
}

}  // namespace

const QueryParam* CanonicalTarget::find(std::string_view name) const {
  for (const QueryParam& p : params) {
    if (p.name == name) {
      return &p;
    }
  }
  return nullptr;
}

std::string CanonicalTarget::target() const {
  std::string out = path;
  if (trailing_slash) {
    out += '/';
  }
  if (!raw_query.empty()) {
    out += '?';
    out += raw_query;
  }
  return out;
}

Result<CanonicalTarget> canonicalizeTarget(std::string_view request_target) {
  if (request_target.empty() || request_target.front() != '/') {
    return invalid("request target is not in origin-form (must start with '/')");
  }
  if (request_target.size() > kMaxRequestTargetBytes) {
    return invalid("request target is longer than " + std::to_string(kMaxRequestTargetBytes) +
                   " bytes");
  }
  for (std::size_t i = 0; i < request_target.size(); ++i) {
    if (!isVisibleAscii(static_cast<unsigned char>(request_target[i]))) {
      return invalid("request target has a byte outside 0x21-0x7E at offset " + std::to_string(i));
    }
  }
  if (request_target.find('#') != std::string_view::npos) {
    return invalid("request target contains '#'");
  }

  const std::size_t question = request_target.find('?');
  const std::string_view raw_path = request_target.substr(0, question);
  const std::string_view raw_query =
      question == std::string_view::npos ? std::string_view() : request_target.substr(question + 1);

  Result<std::string> decoded = decodePath(raw_path);
  if (!decoded) {
    return std::move(decoded).error();
  }
  Result<ResolvedPath> resolved = resolveSegments(*decoded);
  if (!resolved) {
    return std::move(resolved).error();
  }
  Result<std::vector<QueryParam>> params = parseQuery(raw_query);
  if (!params) {
    return std::move(params).error();
  }

  CanonicalTarget out;
  out.segments = std::move(resolved->segments);
  out.trailing_slash = resolved->trailing_slash;
  out.path = "/";
  for (std::size_t i = 0; i < out.segments.size(); ++i) {
    if (i > 0) {
      out.path += '/';
    }
    out.path += out.segments[i];
  }
  out.raw_query = std::string(raw_query);
  out.params = std::move(params).value();
  return out;
}

}  // namespace nmi::imds
