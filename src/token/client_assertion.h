#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include <openssl/types.h>

#include "common/clock.h"
#include "common/result.h"

namespace nmi::token {

// A service principal's certificate and RSA private key, parsed from PKCS#12. Immutable after
// creation, so one instance may sign on several threads at once.
class ClientCertificate {
 public:
  // Parses PKCS#12 bytes (`password` may be empty). Errors: InvalidArgument (not PKCS#12, wrong
  // password, no key or certificate, a key that is not RSA).
  static Result<std::shared_ptr<const ClientCertificate>> fromPkcs12(std::string_view pkcs12,
                                                                     std::string_view password);

  ClientCertificate(const ClientCertificate&) = delete;
  ClientCertificate& operator=(const ClientCertificate&) = delete;
  ~ClientCertificate();

  // The certificate, DER.
  const std::string& der() const { return der_; }
  // SHA-1 of der(), raw bytes (the JWT `x5t`).
  std::string sha1Thumbprint() const;
  // RS256: RSASSA-PKCS1-v1_5 with SHA-256 over `data`. Errors: Internal.
  Result<std::string> signRs256(std::string_view data) const;

 private:
  ClientCertificate(EVP_PKEY* key, std::string der) : key_(key), der_(std::move(der)) {}
  EVP_PKEY* key_ = nullptr;  // owned
  std::string der_;
};

using ClientCertificatePtr = std::shared_ptr<const ClientCertificate>;

// The client assertion the original sends (go-autorest adal SignJwt), except for its lifetime:
//   header {"alg":"RS256","typ":"JWT","x5t":<base64url, padded, SHA-1 of the cert DER>,
//           "x5c":[<standard base64 of the cert DER>]}
//   claims {"aud":<token URL>,"exp":now+lifetime,"iss":<client id>,"jti":<base64url, padded, of
//           20 random bytes>,"nbf":now,"sub":<client id>}
// signed RS256; segments base64url without padding. Errors: Internal (OpenSSL failure).
Result<std::string> buildClientAssertion(const ClientCertificate& certificate,
                                         std::string_view client_id, std::string_view audience,
                                         SystemTime now, std::chrono::seconds lifetime);

// Lifetime of an assertion: 10 minutes as current MSAL libraries (the original used 24 h).
inline constexpr std::chrono::seconds kAssertionLifetime{600};

}  // namespace nmi::token
