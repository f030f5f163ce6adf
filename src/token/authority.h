#pragma once

#include <array>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace nmi::token {

// The Azure AD endpoint of a service principal whose AzureIdentity has no adEndpoint (the
// original's default too: it did not derive one from the cloud).
inline constexpr std::string_view kDefaultAadEndpoint = "https://login.microsoftonline.com/";

// Hosts of the Azure clouds' Azure AD (Microsoft Entra ID) authorities, on port 443: nmi sends
// service-principal credentials to these, and to the hosts the operator adds, and nowhere else.
// Public cloud (login.microsoftonline.com and its aliases login.windows.net and
// login.microsoft.com), US Government (login.microsoftonline.us, older alias
// login-us.microsoftonline.com) and China (login.chinacloudapi.cn,
// login.partner.microsoftonline.cn). Germany's login.microsoftonline.de is not listed: that cloud
// closed in October 2021.
inline constexpr std::array<std::string_view, 7> kAzureAuthorityHosts = {
    "login.microsoftonline.com",
    "login.windows.net",
    "login.microsoft.com",
    "login.microsoftonline.us",
    "login-us.microsoftonline.com",
    "login.chinacloudapi.cn",
    "login.partner.microsoftonline.cn",
};

// Where service-principal credentials may be sent: a set of "host:port" authorities, host in
// lower case and IPv6 literals in brackets, exactly as http::Url::authority() spells the
// authority the HTTP client connects to. Immutable once built; safe to share between threads.
class AuthorityAllowlist {
 public:
  // The Azure clouds (kAzureAuthorityHosts, port 443) only.
  AuthorityAllowlist();

  // The Azure clouds plus `extra` entries: "host" (port 443), "host:port", "[v6]" or "[v6]:port"
  // (--aad-allowed-hosts). Errors: InvalidArgument naming the entry.
  static Result<AuthorityAllowlist> withExtraHosts(const std::vector<std::string>& extra);

  bool contains(std::string_view authority) const { return authorities_.contains(authority); }
  const std::set<std::string, std::less<>>& authorities() const { return authorities_; }

 private:
  std::set<std::string, std::less<>> authorities_;
};

// The verdict on an Azure AD URL (an adEndpoint or a token URL).
struct AuthorityCheck {
  bool allowed = false;
  // The authority as the HTTP client would connect to it ("host:port"), for the log; empty
  // when the URL does not parse.
  std::string authority;
  std::string reason;  // why not, for the log; empty when allowed
};

// Whether credentials may be sent to `url`: an https URL (as http::parseUrl reads it: no
// userinfo, no fragment) whose host:port is on the allowlist. Pure.
AuthorityCheck checkAuthority(std::string_view url, const AuthorityAllowlist& allowlist);

// checkAuthority(url, allowlist).allowed. Pure.
bool authorityAllowed(std::string_view url, const AuthorityAllowlist& allowlist);

}  // namespace nmi::token
