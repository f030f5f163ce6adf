#include "token/authority.h"

#include "http/url.h"

namespace nmi::token {

namespace {

// "host[:port]" or "[v6][:port]" → "host:port" as http::Url::authority() writes it.
Result<std::string> normalizeEntry(std::string_view entry) {
  const auto bad = [entry](std::string_view why) {
    return makeError(ErrorCode::InvalidArgument,
                     "allowed Azure AD host \"" + std::string(entry) + "\": " + std::string(why));
  };
  if (entry.empty()) {
    return bad("empty");
  }
  if (entry.find_first_of("/?#@") != std::string_view::npos) {
    return bad("expected host or host:port, without scheme, path or user");
  }
  auto url = http::parseUrl("https://" + std::string(entry));
  if (!url) {
    return bad(url.error().message);
  }
  return url->authority();
}

}  // namespace

AuthorityAllowlist::AuthorityAllowlist() {
  for (const std::string_view host : kAzureAuthorityHosts) {
    authorities_.insert(std::string(host) + ":443");
  }
}

Result<AuthorityAllowlist> AuthorityAllowlist::withExtraHosts(
    const std::vector<std::string>& extra) {
  AuthorityAllowlist allowlist;
  for (const std::string& entry : extra) {
    auto authority = normalizeEntry(entry);
    if (!authority) {
      return std::move(authority).error();
    }
    allowlist.authorities_.insert(std::move(authority).value());
  }
  return allowlist;
}

AuthorityCheck checkAuthority(std::string_view url, const AuthorityAllowlist& allowlist) {
  AuthorityCheck check;
  auto parsed = http::parseUrl(url);
  if (!parsed) {
    check.reason = "not a usable URL (" + parsed.error().message + ")";
    return check;
  }
  check.authority = parsed->authority();
  if (parsed->scheme != "https") {
    check.reason = "not https";
    return check;
  }
  if (!allowlist.contains(check.authority)) {
    check.reason = "host not in the Azure clouds' authorities or --aad-allowed-hosts";
    return check;
  }
  check.allowed = true;
  return check;
}

bool authorityAllowed(std::string_view url, const AuthorityAllowlist& allowlist) {
  return checkAuthority(url, allowlist).allowed;
}

}  // namespace nmi::token
