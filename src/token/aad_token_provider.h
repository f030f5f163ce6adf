#pragma once

#include <atomic>
#include <cstddef>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "http/client.h"
#include "metrics/nmi_metrics.h"
#include "token/authority.h"
#include "token/client_assertion.h"
#include "token/retry.h"
#include "token/retry_policy.h"
#include "token/types.h"

namespace nmi::token {

// Gets service-principal tokens from Azure AD's v1 endpoint (or ADFS), as the original:
//   POST <ad_endpoint resolved with "<tenant>/oauth2/token?api-version=1.0">
//   Content-Type: application/x-www-form-urlencoded, User-Agent: <user_agent>
//   client_id, resource, grant_type=client_credentials and either client_secret or
//   client_assertion + client_assertion_type (an RS256 JWT signed with the PKCS#12 key).
// The credential comes from the CredentialSource on every fetch (so a rotated Secret is used at
// once); parsed certificates are cached by Secret and content hash. Auxiliary tenants are not
// fetched. Retries per RetryPolicy. The token URL's host must be on the allowlist: no Secret is
// read, and nothing sent, for any other. Thread-safe; callers run on strands. The provider must
// outlive its fetches.
class AadTokenProvider final : public TokenProvider {
 public:
  struct Options {
    std::string user_agent;
    RetryPolicy retry;
    // Where credentials may go (the handler refuses other hosts first; this is the last guard).
    AuthorityAllowlist allowed_authorities;
  };

  AadTokenProvider(http::HttpClient& client, CredentialSource& credentials, const Clock& clock,
                   metrics::NmiMetrics& metrics, Options options);

  // Errors: InvalidArgument (not a service principal; bad endpoint, tenant or client id; unusable
  // Secret or certificate), PermissionDenied (the endpoint's host is not allowed), Unavailable
  // (the Secret could not be read; malformed response), Upstream (Azure AD refused, e.g. 401
  // invalid_client), Timeout, Cancelled.
  Task<Result<AccessToken>> fetchToken(const TokenRequest& request,
                                       CancellationSignal* cancel) override;

  // Parsed certificates held now, and PKCS#12 parses so far (tests).
  std::size_t cachedCertificatesForTest() const;
  std::size_t certificateParsesForTest() const { return parses_.load(); }

 private:
  Task<Result<AccessToken>> fetch(const TokenRequest& request, CancellationSignal* cancel);
  Result<ClientCertificatePtr> certificate(const CredentialRef& ref, const Credential& credential);

  http::HttpClient& client_;
  CredentialSource& credentials_;
  const Clock& clock_;
  metrics::NmiMetrics& metrics_;
  const Options options_;

  struct CachedCertificate {
    std::string digest;  // SHA-256 over the certificate and password
    ClientCertificatePtr certificate;
  };
  mutable std::mutex mu_;
  std::map<std::string, CachedCertificate> certificates_;  // by "namespace/name"
  std::atomic<std::size_t> parses_{0};
};

// The token URL: RFC 3986 resolution of "<tenant>/oauth2/token?api-version=1.0" against
// `ad_endpoint` ("" = kDefaultAadEndpoint), exactly as the original, so the
// trailing slash matters ("https://h/base" drops "base"). The endpoint must be an absolute https
// URL; the tenant must be one path segment of unreserved characters (a GUID, a domain, "adfs").
// Errors: InvalidArgument. Pure.
Result<std::string> aadTokenUrl(std::string_view ad_endpoint, std::string_view tenant_id);

// The client secret in a Secret's data: key "clientSecret" if present, else the only key.
// Errors: InvalidArgument (no data, several keys without "clientSecret" (the message names them),
// an empty value). Pure.
Result<std::string> selectClientSecret(const Credential& credential);

}  // namespace nmi::token
