#include "imds/token_request.h"

#include <string_view>
#include <utility>

#include <fmt/format.h>

#include "identity/credential_secret.h"

namespace nmi::imds {

namespace {

std::string paramValue(const CanonicalTarget& target, std::string_view name) {
  const QueryParam* p = target.find(name);
  return p == nullptr ? std::string() : p->value;
}

}  // namespace

identity::IdentityRequest identityRequest(const CanonicalTarget& target) {
  identity::IdentityRequest r;
  r.client_id = paramValue(target, "client_id");
  r.resource_id = paramValue(target, "msi_res_id");
  if (r.resource_id.empty()) {
    r.resource_id = paramValue(target, "mi_res_id");
  }
  r.object_id = paramValue(target, "object_id");
  return r;
}

Result<token::TokenRequest> tokenRequestFor(const identity::AzureIdentity& id,
                                            const std::string& resource, bool force_namespaced) {
  token::TokenRequest r;
  r.resource = resource;
  const std::optional<identity::IdentityType> type = identity::identityType(id.type);
  if (!type) {
    return makeError(ErrorCode::InvalidArgument,
                     fmt::format("unsupported identity type {}", id.type));
  }
  if (*type == identity::IdentityType::UserAssignedMsi) {
    r.kind = token::TokenRequest::Kind::ManagedIdentity;
    // The original sent only client_id (an identity with just a resourceID got the node's
    // default identity); nmi asks for exactly the identity named.
    if (!id.client_id.empty()) {
      r.selector = token::Selector::ClientId;
      r.selector_value = id.client_id;
    } else if (!id.resource_id.empty()) {
      r.selector = token::Selector::ResourceId;
      r.selector_value = id.resource_id;
    } else {
      return makeError(
          ErrorCode::InvalidArgument,
          fmt::format("identity {}/{} has neither clientID nor resourceID", id.ns, id.name));
    }
    return r;
  }
  r.kind = *type == identity::IdentityType::ServicePrincipal
               ? token::TokenRequest::Kind::ServicePrincipalSecret
               : token::TokenRequest::Kind::ServicePrincipalCertificate;
  r.client_id = id.client_id;
  r.tenant_id = id.tenant_id;
  r.ad_endpoint = id.ad_endpoint;
  if (r.client_id.empty() || r.tenant_id.empty() || id.client_password.name.empty()) {
    return makeError(
        ErrorCode::InvalidArgument,
        fmt::format("identity {}/{} lacks clientID, tenantID or clientPassword", id.ns, id.name));
  }
  auto secret = identity::credentialSecretFor(id, force_namespaced);
  if (!secret) {
    return std::move(secret).error();
  }
  r.credential = token::CredentialRef{secret->ns, secret->name};
  return r;
}

token::TokenRequest exceptionRequest(const identity::IdentityRequest& forward,
                                     const std::string& resource) {
  token::TokenRequest r;
  r.kind = token::TokenRequest::Kind::ManagedIdentity;
  r.resource = resource;
  if (!forward.client_id.empty()) {
    r.selector = token::Selector::ClientId;
    r.selector_value = forward.client_id;
  } else if (!forward.resource_id.empty()) {
    r.selector = token::Selector::ResourceId;
    r.selector_value = forward.resource_id;
  } else if (!forward.object_id.empty()) {
    r.selector = token::Selector::ObjectId;
    r.selector_value = forward.object_id;
  }
  return r;
}

std::optional<token::AuthorityCheck> refusedAadHost(const token::TokenRequest& request,
                                                    const token::AuthorityAllowlist& allowlist) {
  if (request.kind == token::TokenRequest::Kind::ManagedIdentity) {
    return std::nullopt;
  }
  const std::string_view endpoint =
      request.ad_endpoint.empty() ? token::kDefaultAadEndpoint : request.ad_endpoint;
  token::AuthorityCheck check = token::checkAuthority(endpoint, allowlist);
  if (check.allowed) {
    return std::nullopt;
  }
  return check;
}

Reply replyForTokenError(const Error& e) {
  switch (e.code) {
    case ErrorCode::Upstream:
      return Reply::TokenRefused;
    case ErrorCode::PermissionDenied:
      return Reply::AadHostRefused;
    case ErrorCode::ResourceExhausted:
      return Reply::TooManyRequests;
    default:
      return Reply::TokenUnavailable;
  }
}

}  // namespace nmi::imds
