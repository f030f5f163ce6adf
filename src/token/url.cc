#include "token/url.h"

#include <algorithm>
#include <cctype>

namespace nmi::token {

namespace {

bool isUnreserved(unsigned char c) {
  return std::isalnum(c) != 0 || c == '-' || c == '_' || c == '.' || c == '~';
}

bool hasControlOrSpace(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u <= 0x20 || u == 0x7F;
  });
}

// RFC 3986 section 5.2.4.
std::string removeDotSegments(std::string_view input) {
  std::string output;
  while (!input.empty()) {
    if (input.starts_with("../")) {
      input.remove_prefix(3);
    } else if (input.starts_with("./") || input.starts_with("/./")) {
      input.remove_prefix(2);
    } else if (input == "/.") {
      input = "/";
    } else if (input.starts_with("/../") || input == "/..") {
      input = input.size() == 3 ? std::string_view{"/"} : input.substr(3);
      const auto slash = output.rfind('/');
      output.erase(slash == std::string::npos ? 0 : slash);
    } else if (input == "." || input == "..") {
      input = {};
    } else {
      const std::size_t start = input.front() == '/' ? 1 : 0;
      const std::size_t next = input.find('/', start);
      const std::size_t len = next == std::string_view::npos ? input.size() : next;
      output.append(input.substr(0, len));
      input.remove_prefix(len);
    }
  }
  return output;
}

std::string mergePaths(const UrlParts& base, std::string_view ref_path) {
  if (base.has_authority && base.path.empty()) {
    return "/" + std::string(ref_path);
  }
  const auto slash = base.path.rfind('/');
  if (slash == std::string::npos) {
    return std::string(ref_path);
  }
  return base.path.substr(0, slash + 1) + std::string(ref_path);
}

std::string joinUrl(const UrlParts& p) {
  std::string out;
  if (!p.scheme.empty()) {
    out += p.scheme;
    out += ':';
  }
  if (p.has_authority) {
    out += "//";
    out += p.authority;
  }
  out += p.path;
  if (p.has_query) {
    out += '?';
    out += p.query;
  }
  if (p.has_fragment) {
    out += '#';
    out += p.fragment;
  }
  return out;
}

}  // namespace

std::string queryEscape(std::string_view text) {
  static constexpr std::string_view kHex = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (isUnreserved(u)) {
      out += c;
    } else if (c == ' ') {
      out += '+';
    } else {
      out += '%';
      out += kHex[u >> 4U];
      out += kHex[u & 0x0FU];
    }
  }
  return out;
}

std::string encodeQuery(std::vector<std::pair<std::string, std::string>> params) {
  std::stable_sort(params.begin(), params.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::string out;
  for (const auto& [name, value] : params) {
    if (!out.empty()) {
      out += '&';
    }
    out += queryEscape(name);
    out += '=';
    out += queryEscape(value);
  }
  return out;
}

UrlParts splitUrl(std::string_view url) {
  UrlParts parts;
  // scheme: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":" before any of "/?#".
  const std::size_t colon = url.find_first_of(":/?#");
  if (colon != std::string_view::npos && colon > 0 && url[colon] == ':' &&
      std::isalpha(static_cast<unsigned char>(url.front())) != 0) {
    std::string scheme(url.substr(0, colon));
    const bool valid = std::all_of(scheme.begin(), scheme.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '+' || c == '-' || c == '.';
    });
    if (valid) {
      std::transform(scheme.begin(), scheme.end(), scheme.begin(), [](char c) {
        return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      });
      parts.scheme = std::move(scheme);
      url.remove_prefix(colon + 1);
    }
  }
  if (const auto hash = url.find('#'); hash != std::string_view::npos) {
    parts.has_fragment = true;
    parts.fragment = std::string(url.substr(hash + 1));
    url = url.substr(0, hash);
  }
  if (const auto q = url.find('?'); q != std::string_view::npos) {
    parts.has_query = true;
    parts.query = std::string(url.substr(q + 1));
    url = url.substr(0, q);
  }
  if (url.starts_with("//")) {
    url.remove_prefix(2);
    const auto slash = url.find('/');
    parts.has_authority = true;
    parts.authority = std::string(url.substr(0, slash));
    url = slash == std::string_view::npos ? std::string_view{} : url.substr(slash);
  }
  parts.path = std::string(url);
  return parts;
}

Result<std::string> resolveReference(std::string_view base, std::string_view reference) {
  if (hasControlOrSpace(base) || hasControlOrSpace(reference)) {
    return makeError(ErrorCode::InvalidArgument, "url contains a space or control character");
  }
  const UrlParts b = splitUrl(base);
  if (b.scheme.empty()) {
    return makeError(ErrorCode::InvalidArgument, "base url has no scheme");
  }
  const UrlParts r = splitUrl(reference);
  UrlParts t;
  if (!r.scheme.empty()) {
    t = r;
    t.path = removeDotSegments(r.path);
  } else {
    if (r.has_authority) {
      t.has_authority = true;
      t.authority = r.authority;
      t.path = removeDotSegments(r.path);
      t.has_query = r.has_query;
      t.query = r.query;
    } else {
      if (r.path.empty()) {
        t.path = b.path;
        t.has_query = r.has_query || b.has_query;
        t.query = r.has_query ? r.query : b.query;
      } else {
        t.path = removeDotSegments(r.path.front() == '/' ? r.path : mergePaths(b, r.path));
        t.has_query = r.has_query;
        t.query = r.query;
      }
      t.has_authority = b.has_authority;
      t.authority = b.authority;
    }
    t.scheme = b.scheme;
  }
  t.has_fragment = r.has_fragment;
  t.fragment = r.fragment;
  return joinUrl(t);
}

}  // namespace nmi::token
