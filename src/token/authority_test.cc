#include "token/authority.h"

#include <gtest/gtest.h>

#include "token/aad_token_provider.h"

namespace nmi::token {
namespace {

TEST(AuthorityTest, TheAzureCloudsAreAllowedByDefault) {
  const AuthorityAllowlist clouds;
  for (const auto* url :
       {"https://login.microsoftonline.com/", "https://login.microsoftonline.com",
        "https://login.microsoftonline.com:443/tid/oauth2/token?api-version=1.0",
        "https://LOGIN.MicrosoftOnline.COM/", "https://login.windows.net/",
        "https://login.microsoft.com/", "https://login.microsoftonline.us/",
        "https://login-us.microsoftonline.com/", "https://login.chinacloudapi.cn/",
        "https://login.partner.microsoftonline.cn/"}) {
    EXPECT_TRUE(authorityAllowed(url, clouds)) << url;
  }
}

TEST(AuthorityTest, TheDefaultEndpointAndItsTokenUrlAreAllowed) {
  const AuthorityAllowlist clouds;
  EXPECT_TRUE(authorityAllowed(kDefaultAadEndpoint, clouds));
  const auto url = aadTokenUrl("", "72f988bf-86f1-41af-91ab-2d7cd011db47");
  ASSERT_TRUE(url.has_value());
  EXPECT_TRUE(authorityAllowed(*url, clouds));
}

TEST(AuthorityTest, EverythingElseIsRefused) {
  const AuthorityAllowlist clouds;
  for (const auto* url : {
           "https://evil.example/",
           "https://adfs.contoso.com/adfs/",
           "https://127.0.0.1:8443/",
           "https://login.microsoftonline.de/",        // Germany: closed
           "http://login.microsoftonline.com/",        // not https
           "https://login.microsoftonline.com:8443/",  // another port
           "https://login.microsoftonline.com.evil.example/",
           "https://evil.example/login.microsoftonline.com/",
           "https://login.microsoftonline.com@evil.example/",  // userinfo
           "https://login.microsoftonline.com\\@evil.example/",
           "https://login.microsoftonline.com%2eevil.example/",
           "https://login.microsoftonline.com./",  // another spelling: not listed
           "login.microsoftonline.com/",
           "",
       }) {
    const AuthorityCheck check = checkAuthority(url, clouds);
    EXPECT_FALSE(check.allowed) << url;
    EXPECT_FALSE(check.reason.empty()) << url;
  }
}

TEST(AuthorityTest, TheCheckNamesTheAuthorityTheClientWouldUse) {
  const AuthorityAllowlist clouds;
  const auto check = checkAuthority("https://Evil.Example:8443/adfs/oauth2/token", clouds);
  EXPECT_FALSE(check.allowed);
  EXPECT_EQ(check.authority, "evil.example:8443");
  EXPECT_EQ(checkAuthority("https://evil.example/", clouds).authority, "evil.example:443");
  EXPECT_EQ(checkAuthority("https://user@evil.example/", clouds).authority, "");
}

TEST(AuthorityTest, OperatorEntriesAddHosts) {
  const auto allowlist = AuthorityAllowlist::withExtraHosts(
      {"adfs.contoso.com", "127.0.0.1:8443", "Login.Example:4443", "[::1]:9443", "[fd00::1]"});
  ASSERT_TRUE(allowlist.has_value()) << allowlist.error().message;
  EXPECT_TRUE(authorityAllowed("https://adfs.contoso.com/adfs/oauth2/token", *allowlist));
  EXPECT_TRUE(authorityAllowed("https://adfs.contoso.com:443/", *allowlist));
  EXPECT_FALSE(authorityAllowed("https://adfs.contoso.com:8443/", *allowlist));
  EXPECT_TRUE(authorityAllowed("https://127.0.0.1:8443/tid/oauth2/token", *allowlist));
  EXPECT_FALSE(authorityAllowed("https://127.0.0.1/", *allowlist));
  EXPECT_TRUE(authorityAllowed("https://login.example:4443/", *allowlist));
  EXPECT_TRUE(authorityAllowed("https://[::1]:9443/", *allowlist));
  EXPECT_TRUE(authorityAllowed("https://[fd00::1]/", *allowlist));
  // The clouds stay allowed; http stays refused whatever the host.
  EXPECT_TRUE(authorityAllowed("https://login.microsoftonline.us/", *allowlist));
  EXPECT_FALSE(authorityAllowed("http://adfs.contoso.com/", *allowlist));
  EXPECT_EQ(allowlist->authorities().size(), kAzureAuthorityHosts.size() + 5);
}

TEST(AuthorityTest, MalformedOperatorEntriesAreErrors) {
  for (const auto* entry : {"", "https://adfs.contoso.com", "adfs.contoso.com/adfs",
                            "user@adfs.contoso.com", "adfs.contoso.com:", "adfs.contoso.com:0",
                            "adfs.contoso.com:65536", "[::1", "bad host", "a?b"}) {
    const auto allowlist = AuthorityAllowlist::withExtraHosts({entry});
    ASSERT_FALSE(allowlist.has_value()) << entry;
    EXPECT_EQ(allowlist.error().code, ErrorCode::InvalidArgument);
    EXPECT_NE(allowlist.error().message.find("allowed Azure AD host"), std::string::npos);
  }
}

}  // namespace
}  // namespace nmi::token
