#include "token/client_assertion.h"

#include <array>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "common/base64.h"

namespace nmi::token {
namespace {

using namespace std::chrono_literals;

std::string readTestFile(const std::string& name) {
  std::ifstream in(std::string(NMI_TOKEN_TESTDATA) + "/" + name, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

// The test certificate, read independently of the code under test (PEM, not PKCS#12).
std::unique_ptr<X509, X509Free> loadPemCertificate() {
  const std::string pem = readTestFile("rsa_cert.pem");
  const std::unique_ptr<BIO, BioFree> bio(
      BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return std::unique_ptr<X509, X509Free>(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

std::string derOf(X509* cert) {
  const int len = i2d_X509(cert, nullptr);
  std::string der(static_cast<std::size_t>(len), '\0');
  auto* out = reinterpret_cast<unsigned char*>(der.data());
  i2d_X509(cert, &out);
  return der;
}

bool verifyRs256(X509* cert, const std::string& signed_part, const std::string& signature) {
  const std::unique_ptr<EVP_PKEY, PkeyFree> key(X509_get_pubkey(cert));
  const std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  if (!key || !ctx ||
      EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.get()) != 1) {
    return false;
  }
  return EVP_DigestVerify(
             ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
             reinterpret_cast<const unsigned char*>(signed_part.data()), signed_part.size()) == 1;
}

// The parts of a JWT, decoded (JSON parsed by the caller).
struct DecodedJwt {
  std::string raw_header;
  std::string raw_claims;
  std::string signed_part;
  std::string signature;
};

nlohmann::json parseJson(const std::string& text) {
  return nlohmann::json::parse(text, nullptr, false);
}

DecodedJwt decodeJwt(const std::string& jwt) {
  DecodedJwt out;
  const auto first = jwt.find('.');
  const auto second = jwt.find('.', first + 1);
  EXPECT_NE(second, std::string::npos);
  EXPECT_EQ(jwt.find('.', second + 1), std::string::npos);
  EXPECT_EQ(jwt.find('='), std::string::npos) << "JWT segments are unpadded";
  EXPECT_EQ(jwt.find_first_of("+/"), std::string::npos) << "JWT segments are base64url";
  out.raw_header = base64Decode(jwt.substr(0, first)).value_or("");
  out.raw_claims = base64Decode(jwt.substr(first + 1, second - first - 1)).value_or("");
  out.signed_part = jwt.substr(0, second);
  out.signature = base64Decode(jwt.substr(second + 1)).value_or("");
  return out;
}

TEST(ClientCertificateTest, ParsesAModernPkcs12) {
  const auto cert = ClientCertificate::fromPkcs12(readTestFile("rsa.pfx"), "test-password");
  ASSERT_TRUE(cert.has_value()) << cert.error().message;
  const auto pem = loadPemCertificate();
  ASSERT_TRUE(pem);
  EXPECT_EQ((*cert)->der(), derOf(pem.get()));
}

TEST(ClientCertificateTest, ParsesALegacyRc2Pkcs12ThroughTheLegacyProvider) {
  const auto cert = ClientCertificate::fromPkcs12(readTestFile("rsa_legacy.pfx"), "test-password");
  ASSERT_TRUE(cert.has_value()) << cert.error().message;
  const auto pem = loadPemCertificate();
  EXPECT_EQ((*cert)->der(), derOf(pem.get()));
}

TEST(ClientCertificateTest, ParsesAPkcs12WithoutPassword) {
  const auto cert = ClientCertificate::fromPkcs12(readTestFile("rsa_nopass.pfx"), "");
  ASSERT_TRUE(cert.has_value()) << cert.error().message;
}

TEST(ClientCertificateTest, RejectsAWrongPassword) {
  const auto cert = ClientCertificate::fromPkcs12(readTestFile("rsa.pfx"), "wrong");
  ASSERT_FALSE(cert.has_value());
  EXPECT_EQ(cert.error().code, ErrorCode::InvalidArgument);
  EXPECT_NE(cert.error().message.find("wrong password"), std::string::npos);
}

TEST(ClientCertificateTest, RejectsAnEcKeyInsteadOfCrashing) {
  const auto cert = ClientCertificate::fromPkcs12(readTestFile("ec.pfx"), "test-password");
  ASSERT_FALSE(cert.has_value());
  EXPECT_EQ(cert.error().code, ErrorCode::InvalidArgument);
  EXPECT_NE(cert.error().message.find("not RSA"), std::string::npos);
}

TEST(ClientCertificateTest, RejectsGarbage) {
  for (const std::string& bytes :
       {std::string{}, std::string("not a pfx"), readTestFile("rsa_cert.pem"),
        readTestFile("rsa.pfx").substr(0, 700)}) {
    const auto cert = ClientCertificate::fromPkcs12(bytes, "test-password");
    ASSERT_FALSE(cert.has_value());
    EXPECT_EQ(cert.error().code, ErrorCode::InvalidArgument);
  }
}

TEST(ClientAssertionTest, BuildsTheOriginalsRs256AssertionAndItVerifies) {
  const auto cert = ClientCertificate::fromPkcs12(readTestFile("rsa.pfx"), "test-password");
  ASSERT_TRUE(cert.has_value()) << cert.error().message;
  const std::string aud = "https://login.microsoftonline.com/tenant/oauth2/token?api-version=1.0";
  const SystemTime now = fromUnixSeconds(1704067200);
  const auto jwt = buildClientAssertion(**cert, "client-id", aud, now, kAssertionLifetime);
  ASSERT_TRUE(jwt.has_value()) << jwt.error().message;
  const DecodedJwt decoded = decodeJwt(*jwt);
  const nlohmann::json header = parseJson(decoded.raw_header);
  const nlohmann::json claims = parseJson(decoded.raw_claims);

  const auto pem = loadPemCertificate();
  const std::string der = derOf(pem.get());
  std::array<unsigned char, SHA_DIGEST_LENGTH> sha1{};
  SHA1(reinterpret_cast<const unsigned char*>(der.data()), der.size(), sha1.data());
  const std::string thumb(reinterpret_cast<const char*>(sha1.data()), sha1.size());

  ASSERT_TRUE(header.is_object()) << decoded.raw_header;
  EXPECT_EQ(header.at("alg"), "RS256");
  EXPECT_EQ(header.at("typ"), "JWT");
  // base64url WITH padding (go-autorest uses base64.URLEncoding); 20 bytes -> one '='.
  EXPECT_EQ(header.at("x5t"), base64Encode(thumb, Base64Alphabet::Url, true));
  EXPECT_EQ(header.at("x5t").get<std::string>().back(), '=');
  EXPECT_EQ(header.at("x5c"), nlohmann::json::array({base64Encode(der)}));
  EXPECT_EQ(decoded.raw_header.find(R"({"alg":"RS256","typ":"JWT","x5t":)"), 0U);

  EXPECT_EQ(claims.at("aud"), aud);
  EXPECT_EQ(claims.at("iss"), "client-id");
  EXPECT_EQ(claims.at("sub"), "client-id");
  EXPECT_EQ(claims.at("nbf"), 1704067200);
  EXPECT_EQ(claims.at("exp"), 1704067200 + 600);
  const std::string jti = claims.at("jti").get<std::string>();
  EXPECT_EQ(jti.size(), 28U);
  EXPECT_EQ(base64Decode(jti).value_or("").size(), 20U);
  EXPECT_EQ(claims.size(), 6U);

  EXPECT_EQ(decoded.signature.size(), 256U);  // RSA-2048
  EXPECT_TRUE(verifyRs256(pem.get(), decoded.signed_part, decoded.signature));
  std::string tampered = decoded.signed_part;
  tampered.back() = tampered.back() == 'A' ? 'B' : 'A';
  EXPECT_FALSE(verifyRs256(pem.get(), tampered, decoded.signature));
}

TEST(ClientAssertionTest, EveryAssertionHasAFreshJti) {
  const auto cert = ClientCertificate::fromPkcs12(readTestFile("rsa.pfx"), "test-password");
  ASSERT_TRUE(cert.has_value());
  const SystemTime now = fromUnixSeconds(1704067200);
  const auto a = buildClientAssertion(**cert, "c", "aud", now, kAssertionLifetime);
  const auto b = buildClientAssertion(**cert, "c", "aud", now, kAssertionLifetime);
  ASSERT_TRUE(a && b);
  EXPECT_NE(parseJson(decodeJwt(*a).raw_claims).at("jti"),
            parseJson(decodeJwt(*b).raw_claims).at("jti"));
}

}  // namespace
}  // namespace nmi::token
