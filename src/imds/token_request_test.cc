#include "imds/token_request.h"

#include <gtest/gtest.h>

namespace nmi::imds {
namespace {

using token::TokenRequest;

identity::AzureIdentity managed(std::string client_id, std::string resource_id) {
  identity::AzureIdentity id;
  id.ns = "apps";
  id.name = "id-1";
  id.type = 0;
  id.client_id = std::move(client_id);
  id.resource_id = std::move(resource_id);
  return id;
}

identity::AzureIdentity servicePrincipal(int type, std::string secret_ns) {
  identity::AzureIdentity id;
  id.ns = "apps";
  id.name = "sp";
  id.type = type;
  id.client_id = "app-1";
  id.tenant_id = "tenant-1";
  id.ad_endpoint = "https://login.microsoftonline.us/";
  id.client_password = identity::SecretRef{"sp-secret", std::move(secret_ns)};
  return id;
}

CanonicalTarget target(std::string_view raw) {
  return canonicalizeTarget(raw).value();
}

TEST(IdentityRequestTest, ReadsTheThreeSelectorsAndTheOlderResourceIdName) {
  const auto all = identityRequest(target(
      "/metadata/identity/oauth2/token?resource=r&client_id=C&msi_res_id=/sub/x&object_id=O"));
  EXPECT_EQ(all.client_id, "C");
  EXPECT_EQ(all.resource_id, "/sub/x");
  EXPECT_EQ(all.object_id, "O");
  EXPECT_EQ(identityRequest(target("/metadata/identity/oauth2/token?mi_res_id=/sub/y")).resource_id,
            "/sub/y");
  // msi_res_id wins over mi_res_id.
  EXPECT_EQ(identityRequest(target("/metadata/identity/oauth2/token?mi_res_id=a&msi_res_id=b"))
                .resource_id,
            "b");
  const auto none = identityRequest(target("/metadata/identity/oauth2/token?resource=r"));
  EXPECT_TRUE(none.client_id.empty() && none.resource_id.empty() && none.object_id.empty());
}

TEST(TokenRequestForTest, AManagedIdentityIsAskedForByClientIdElseByResourceId) {
  const auto by_client =
      tokenRequestFor(managed("c-1", "/sub/r"), "https://vault.azure.net", false);
  ASSERT_TRUE(by_client);
  EXPECT_EQ(by_client->kind, TokenRequest::Kind::ManagedIdentity);
  EXPECT_EQ(by_client->selector, token::Selector::ClientId);
  EXPECT_EQ(by_client->selector_value, "c-1");
  EXPECT_EQ(by_client->resource, "https://vault.azure.net");

  const auto by_resource = tokenRequestFor(managed("", "/sub/r"), "x", false);
  ASSERT_TRUE(by_resource);
  EXPECT_EQ(by_resource->selector, token::Selector::ResourceId);
  EXPECT_EQ(by_resource->selector_value, "/sub/r");

  const auto neither = tokenRequestFor(managed("", ""), "x", false);
  ASSERT_FALSE(neither);
  EXPECT_EQ(neither.error().code, ErrorCode::InvalidArgument);
}

TEST(TokenRequestForTest, ServicePrincipalsCarryTheirCredentialSecret) {
  const auto secret = tokenRequestFor(servicePrincipal(1, ""), "x", false);
  ASSERT_TRUE(secret);
  EXPECT_EQ(secret->kind, TokenRequest::Kind::ServicePrincipalSecret);
  EXPECT_EQ(secret->client_id, "app-1");
  EXPECT_EQ(secret->tenant_id, "tenant-1");
  EXPECT_EQ(secret->ad_endpoint, "https://login.microsoftonline.us/");
  EXPECT_EQ(secret->credential, (token::CredentialRef{"apps", "sp-secret"}));  // identity's ns

  const auto certificate = tokenRequestFor(servicePrincipal(2, "vault"), "x", false);
  ASSERT_TRUE(certificate);
  EXPECT_EQ(certificate->kind, TokenRequest::Kind::ServicePrincipalCertificate);
  EXPECT_EQ(certificate->credential, (token::CredentialRef{"vault", "sp-secret"}));
}

TEST(TokenRequestForTest, RefusalsSayWhy) {
  // --forceNamespaced: a Secret in another namespace is refused.
  EXPECT_EQ(tokenRequestFor(servicePrincipal(1, "vault"), "x", true).error().code,
            ErrorCode::PermissionDenied);
  auto incomplete = servicePrincipal(1, "");
  incomplete.tenant_id.clear();
  EXPECT_EQ(tokenRequestFor(incomplete, "x", false).error().code, ErrorCode::InvalidArgument);
  for (const int type : {-1, 3, 1000}) {
    auto odd = managed("c", "");
    odd.type = type;
    const auto refused = tokenRequestFor(odd, "x", false);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().message, "unsupported identity type " + std::to_string(type));
  }
}

TEST(ExceptionRequestTest, TheNodeIdentityNarrowedByTheFirstSelectorGiven) {
  identity::IdentityRequest forward;
  EXPECT_EQ(exceptionRequest(forward, "r").selector, token::Selector::NodeDefault);
  forward.object_id = "o";
  EXPECT_EQ(exceptionRequest(forward, "r").selector, token::Selector::ObjectId);
  forward.resource_id = "/sub/r";
  EXPECT_EQ(exceptionRequest(forward, "r").selector, token::Selector::ResourceId);
  forward.client_id = "c";
  const TokenRequest r = exceptionRequest(forward, "r");
  EXPECT_EQ(r.kind, TokenRequest::Kind::ManagedIdentity);
  EXPECT_EQ(r.selector, token::Selector::ClientId);
  EXPECT_EQ(r.selector_value, "c");
  EXPECT_EQ(r.resource, "r");
}

TEST(RefusedAadHostTest, OnlyServicePrincipalsBoundForAnotherHostAreRefused) {
  const token::AuthorityAllowlist azure;
  TokenRequest request = tokenRequestFor(servicePrincipal(1, ""), "x", false).value();
  EXPECT_FALSE(refusedAadHost(request, azure));  // login.microsoftonline.us
  request.ad_endpoint.clear();                   // the default, login.microsoftonline.com
  EXPECT_FALSE(refusedAadHost(request, azure));
  request.ad_endpoint = "https://attacker.example/";
  const auto refused = refusedAadHost(request, azure);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->authority, "attacker.example:443");
  request.kind = TokenRequest::Kind::ManagedIdentity;  // never sends a credential
  EXPECT_FALSE(refusedAadHost(request, azure));
}

TEST(ReplyForTokenErrorTest, UpstreamRefusalHostGuardRateLimitElseUnavailable) {
  EXPECT_EQ(replyForTokenError(makeError(ErrorCode::Upstream, "")), Reply::TokenRefused);
  EXPECT_EQ(replyForTokenError(makeError(ErrorCode::PermissionDenied, "")), Reply::AadHostRefused);
  EXPECT_EQ(replyForTokenError(makeError(ErrorCode::ResourceExhausted, "")),
            Reply::TooManyRequests);
  for (const ErrorCode code : {ErrorCode::Timeout, ErrorCode::Unavailable, ErrorCode::Cancelled,
                               ErrorCode::InvalidArgument}) {
    EXPECT_EQ(replyForTokenError(makeError(code, "")), Reply::TokenUnavailable);
  }
}

}  // namespace
}  // namespace nmi::imds
