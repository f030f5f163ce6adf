#include "token/client_assertion.h"

#include <array>

#include <nlohmann/json.hpp>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pkcs12.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "common/base64.h"

namespace nmi::token {

namespace {

struct Pkcs12Deleter {
  void operator()(PKCS12* p) const { PKCS12_free(p); }
};
struct X509Deleter {
  void operator()(X509* p) const { X509_free(p); }
};
struct PkeyDeleter {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct StackDeleter {
  void operator()(STACK_OF(X509) * p) const { sk_X509_pop_free(p, X509_free); }
};
struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};

using Pkcs12Ptr = std::unique_ptr<PKCS12, Pkcs12Deleter>;
using X509Ptr = std::unique_ptr<X509, X509Deleter>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;
using StackPtr = std::unique_ptr<STACK_OF(X509), StackDeleter>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxDeleter>;

constexpr std::size_t kJtiBytes = 20;

// The last OpenSSL error of this thread as text; clears the queue.
std::string opensslError() {
  const unsigned long code = ERR_get_error();  // NOLINT(google-runtime-int): OpenSSL's type
  ERR_clear_error();
  if (code == 0) {
    return "unknown error";
  }
  std::array<char, 256> buf{};
  ERR_error_string_n(code, buf.data(), buf.size());
  return buf.data();
}

// OpenSSL 3 keeps the algorithms older PKCS#12 files use (RC2-40, and in some builds DES) in the
// "legacy" provider, which is not loaded by default; `openssl pkcs12 -export` before 3.0 and
// many Windows exports produce such files. Loading it into the default library context replaces
// the implicit default provider, so "default" is loaded explicitly as well. Loaded once, on the
// first PKCS#12 file that needs it, and kept for the process; unloaded at exit (this static is
// destroyed before OpenSSL's own atexit cleanup, which was registered earlier) so that cleanup
// frees them.
class LegacyProviders {
 public:
  LegacyProviders()
      : default_(OSSL_PROVIDER_load(nullptr, "default")),
        legacy_(OSSL_PROVIDER_load(nullptr, "legacy")) {
    ERR_clear_error();
  }
  LegacyProviders(const LegacyProviders&) = delete;
  LegacyProviders& operator=(const LegacyProviders&) = delete;
  ~LegacyProviders() {
    if (legacy_ != nullptr) {
      OSSL_PROVIDER_unload(legacy_);
    }
    if (default_ != nullptr) {
      OSSL_PROVIDER_unload(default_);
    }
  }
  bool loaded() const { return default_ != nullptr && legacy_ != nullptr; }

 private:
  OSSL_PROVIDER* default_;
  OSSL_PROVIDER* legacy_;
};

bool loadLegacyProvider() {
  static const LegacyProviders providers;
  return providers.loaded();
}

// PKCS12_parse with OpenSSL's own rule for an empty password (tries "" and NULL).
bool parsePkcs12(PKCS12* p12, const std::string& password, PkeyPtr& key, X509Ptr& cert,
                 StackPtr& chain) {
  EVP_PKEY* k = nullptr;
  X509* c = nullptr;
  STACK_OF(X509)* ca = nullptr;
  const int ok = PKCS12_parse(p12, password.c_str(), &k, &c, &ca);
  key.reset(k);
  cert.reset(c);
  chain.reset(ca);
  return ok == 1;
}

bool macVerifies(PKCS12* p12, const std::string& password) {
  if (PKCS12_mac_present(p12) != 1) {
    return true;
  }
  if (PKCS12_verify_mac(p12, password.c_str(), static_cast<int>(password.size())) == 1) {
    return true;
  }
  return password.empty() && PKCS12_verify_mac(p12, nullptr, 0) == 1;
}

}  // namespace

Result<ClientCertificatePtr> ClientCertificate::fromPkcs12(std::string_view pkcs12,
                                                           std::string_view password) {
  ERR_clear_error();
  const auto* data = reinterpret_cast<const unsigned char*>(pkcs12.data());  // NOLINT
  const Pkcs12Ptr p12(
      d2i_PKCS12(nullptr, &data, static_cast<long>(pkcs12.size())));  // NOLINT(google-runtime-int)
  if (!p12) {
    ERR_clear_error();
    return makeError(ErrorCode::InvalidArgument, "certificate is not PKCS#12 (DER)");
  }
  const std::string pass(password);
  if (!macVerifies(p12.get(), pass)) {
    ERR_clear_error();
    return makeError(ErrorCode::InvalidArgument,
                     "PKCS#12 integrity check failed (wrong password or corrupt file)");
  }
  PkeyPtr key;
  X509Ptr cert;
  StackPtr chain;
  if (!parsePkcs12(p12.get(), pass, key, cert, chain)) {
    const std::string first_error = opensslError();
    // Most likely a legacy cipher (RC2-40-CBC): retry once with the legacy provider.
    if (!loadLegacyProvider() || !parsePkcs12(p12.get(), pass, key, cert, chain)) {
      const std::string second = opensslError();
      return makeError(ErrorCode::InvalidArgument,
                       "cannot decrypt PKCS#12: " + first_error +
                           (second == "unknown error" ? std::string{} : "; " + second));
    }
  }
  if (!key) {
    return makeError(ErrorCode::InvalidArgument, "PKCS#12 holds no private key");
  }
  if (!cert) {
    return makeError(ErrorCode::InvalidArgument, "PKCS#12 holds no certificate for its key");
  }
  if (EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_RSA) {
    return makeError(ErrorCode::InvalidArgument, std::string("PKCS#12 key is not RSA (") +
                                                     OBJ_nid2sn(EVP_PKEY_get_base_id(key.get())) +
                                                     "); RS256 needs RSA");
  }
  const int der_len = i2d_X509(cert.get(), nullptr);
  if (der_len <= 0) {
    return makeError(ErrorCode::InvalidArgument, "cannot encode certificate: " + opensslError());
  }
  std::string der(static_cast<std::size_t>(der_len), '\0');
  auto* out = reinterpret_cast<unsigned char*>(der.data());  // NOLINT
  if (i2d_X509(cert.get(), &out) != der_len) {
    return makeError(ErrorCode::Internal, "cannot encode certificate: " + opensslError());
  }
  return ClientCertificatePtr(new ClientCertificate(key.release(), std::move(der)));
}

ClientCertificate::~ClientCertificate() {
  EVP_PKEY_free(key_);
}

std::string ClientCertificate::sha1Thumbprint() const {
  std::array<unsigned char, SHA_DIGEST_LENGTH> digest{};
  SHA1(reinterpret_cast<const unsigned char*>(der_.data()), der_.size(), digest.data());  // NOLINT
  return {reinterpret_cast<const char*>(digest.data()), digest.size()};                   // NOLINT
}

Result<std::string> ClientCertificate::signRs256(std::string_view data) const {
  const MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key_) != 1) {
    return makeError(ErrorCode::Internal, "EVP_DigestSignInit: " + opensslError());
  }
  const auto* in = reinterpret_cast<const unsigned char*>(data.data());  // NOLINT
  std::size_t len = 0;
  if (EVP_DigestSign(ctx.get(), nullptr, &len, in, data.size()) != 1) {
    return makeError(ErrorCode::Internal, "EVP_DigestSign: " + opensslError());
  }
  std::string signature(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()), &len,
                     in,  // NOLINT
                     data.size()) != 1) {
    return makeError(ErrorCode::Internal, "EVP_DigestSign: " + opensslError());
  }
  signature.resize(len);
  return signature;
}

Result<std::string> buildClientAssertion(const ClientCertificate& certificate,
                                         std::string_view client_id, std::string_view audience,
                                         SystemTime now, std::chrono::seconds lifetime) {
  std::array<unsigned char, kJtiBytes> jti{};
  if (RAND_bytes(jti.data(), static_cast<int>(jti.size())) != 1) {
    return makeError(ErrorCode::Internal, "RAND_bytes: " + opensslError());
  }
  nlohmann::ordered_json header;
  header["alg"] = "RS256";
  header["typ"] = "JWT";
  header["x5t"] = base64Encode(certificate.sha1Thumbprint(), Base64Alphabet::Url, true);
  header["x5c"] = nlohmann::ordered_json::array({base64Encode(certificate.der())});

  const std::int64_t nbf = toUnixSeconds(now);
  nlohmann::ordered_json claims;
  claims["aud"] = std::string(audience);
  claims["exp"] = nbf + lifetime.count();
  claims["iss"] = std::string(client_id);
  claims["jti"] = base64Encode(
      std::string_view(reinterpret_cast<const char*>(jti.data()), jti.size()),  // NOLINT
      Base64Alphabet::Url, true);
  claims["nbf"] = nbf;
  claims["sub"] = std::string(client_id);

  // dump() with error_handler_t::replace never throws on invalid UTF-8 in a client id.
  const auto dump = [](const nlohmann::ordered_json& j) {
    return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  };
  std::string signing_input = base64Encode(dump(header), Base64Alphabet::Url, false) + "." +
                              base64Encode(dump(claims), Base64Alphabet::Url, false);
  auto signature = certificate.signRs256(signing_input);
  if (!signature) {
    return std::move(signature).error();
  }
  signing_input += '.';
  signing_input += base64Encode(*signature, Base64Alphabet::Url, false);
  return signing_input;
}

}  // namespace nmi::token
