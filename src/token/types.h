#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <variant>

#include <boost/asio/any_io_executor.hpp>

#include "common/cancellation.h"
#include "common/clock.h"
#include "common/result.h"
#include "common/task.h"

namespace nmi::token {

// How IMDS is told which managed identity to use.
enum class Selector : std::int8_t { NodeDefault, ClientId, ResourceId, ObjectId };

// A Secret holding a service principal's credential.
struct CredentialRef {
  std::string ns;
  std::string name;
  bool operator==(const CredentialRef&) const = default;
};

// What to get a token for. Two requests equal as cache keys (TokenRequestKeyEqual) share one
// token.
struct TokenRequest {
  enum class Kind : std::int8_t {
    ManagedIdentity,
    ServicePrincipalSecret,
    ServicePrincipalCertificate
  };
  Kind kind = Kind::ManagedIdentity;
  std::string resource;
  // ManagedIdentity: which identity IMDS should use (value ignored for NodeDefault).
  Selector selector = Selector::NodeDefault;
  std::string selector_value;
  // Service principals.
  std::string client_id;
  std::string tenant_id;
  std::string ad_endpoint;  // "" = https://login.microsoftonline.com/
  CredentialRef credential;
  bool operator==(const TokenRequest&) const = default;
};

// The cache key's equality: every field equal, except that the identifiers Azure compares without
// regard to case (selector_value: a client, object or resource id; client_id: a service
// principal's application id) are compared that way (common/identifier.h). So two spellings of
// one identity share one cache entry, and a spelling never matches an entry of another identity.
// The request kept with the entry is the first spelling seen; IMDS and Azure AD accept any.
struct TokenRequestKeyEqual {
  bool operator()(const TokenRequest& a, const TokenRequest& b) const;
};

// A hash consistent with TokenRequestKeyEqual.
struct TokenRequestHash {
  std::size_t operator()(const TokenRequest& r) const;
};

struct AccessToken {
  std::string access_token;  // never logged
  std::string token_type = "Bearer";
  std::string resource;
  std::string client_id;  // as IMDS reported it, or the service principal's
  SystemTime expires_on;
  SystemTime not_before;
  std::int64_t ext_expires_in = 0;  // seconds, 0 when the upstream did not say
};

// A Secret's data for a service principal (client secret, or PKCS#12 + password).
struct Credential {
  std::map<std::string, std::string> data;
};

// Reads the Secret a service principal's credential is in. Errors: NotFound, PermissionDenied,
// Unavailable.
class CredentialSource {
 public:
  virtual ~CredentialSource() = default;
  virtual Task<Result<Credential>> load(const CredentialRef& ref) = 0;
};

// Obtains tokens. Never yields an expired token. Errors: Upstream (IMDS or Azure AD answered
// with an HTTP error: a definite refusal, which the pod sees as 403), Unavailable (network,
// credential or parse failures: 503), Timeout (retry budget spent: 503), InvalidArgument
// (unusable identity, such as an unsupported type or a malformed certificate: 503),
// Cancelled (`cancel` fired).
class TokenProvider {
 public:
  virtual ~TokenProvider() = default;
  virtual Task<Result<AccessToken>> fetchToken(const TokenRequest& request,
                                               CancellationSignal* cancel) = 0;
};

using TokenProviderPtr = std::unique_ptr<TokenProvider>;

// A token cache's answer: the token (or the refusal) at once, or the wait for a fetch, which the
// caller co_awaits on its strand.
using TokenAnswer = std::variant<Result<AccessToken>, Task<Result<AccessToken>>>;

// What the IMDS handler asks of the token cache: one call per request. A token for `request`, on
// behalf of `requester` (a pod uid, or "host"): a cached one is answered at once, without a
// coroutine (a refresh inside the refresh window starts in the background on `executor`, the
// caller's strand); otherwise the answer is the wait. Errors: those of the upstream providers;
// ResourceExhausted (per-requester limits); Cancelled (`cancel`, may be null, fired). Implemented
// by CachingTokenProvider; tests use tests/fakes/fake_token_cache.h.
class TokenCache {
 public:
  virtual ~TokenCache() = default;
  virtual TokenAnswer get(const TokenRequest& request, std::string_view requester,
                          const boost::asio::any_io_executor& executor,
                          CancellationSignal* cancel) = 0;
};

}  // namespace nmi::token
