#include "identity/credential_secret.h"

#include <gtest/gtest.h>

namespace nmi::identity {
namespace {

AzureIdentity servicePrincipal(std::string ns, std::string secret_ns, std::string secret_name) {
  AzureIdentity id;
  id.ns = std::move(ns);
  id.name = "sp";
  id.type = 1;
  id.client_password = SecretRef{std::move(secret_name), std::move(secret_ns)};
  return id;
}

TEST(CredentialSecretTest, SecretOfTheIdentitysNamespaceIsAlwaysAllowed) {
  for (const bool forced : {false, true}) {
    const auto ref = credentialSecretFor(servicePrincipal("victim", "victim", "creds"), forced);
    ASSERT_TRUE(ref.has_value()) << ref.error().message;
    EXPECT_EQ(*ref, (SecretRef{"creds", "victim"}));
  }
}

TEST(CredentialSecretTest, EmptyNamespaceMeansTheIdentitysNamespace) {
  for (const bool forced : {false, true}) {
    const auto ref = credentialSecretFor(servicePrincipal("team-a", "", "creds"), forced);
    ASSERT_TRUE(ref.has_value()) << ref.error().message;
    EXPECT_EQ(*ref, (SecretRef{"creds", "team-a"}));
  }
}

TEST(CredentialSecretTest, ForceNamespacedRefusesASecretOfAnotherNamespace) {
  const auto id = servicePrincipal("evil", "victim", "creds");
  const auto refused = credentialSecretFor(id, true);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code, ErrorCode::PermissionDenied);
  EXPECT_EQ(refused.error().message,
            "secret namespace victim is not the identity's namespace evil");
  // Namespaces are compared exactly (Kubernetes names are lower case; nothing else matches).
  EXPECT_FALSE(credentialSecretFor(servicePrincipal("evil", "Evil", "creds"), true).has_value());
}

TEST(CredentialSecretTest, WithoutTheFlagAnyNamespaceIsAccepted) {
  const auto ref = credentialSecretFor(servicePrincipal("default", "creds-ns", "creds"), false);
  ASSERT_TRUE(ref.has_value());
  EXPECT_EQ(*ref, (SecretRef{"creds", "creds-ns"}));
}

TEST(CredentialSecretTest, NoSecretNameIsNotFound) {
  for (const bool forced : {false, true}) {
    const auto ref = credentialSecretFor(servicePrincipal("default", "default", ""), forced);
    ASSERT_FALSE(ref.has_value());
    EXPECT_EQ(ref.error().code, ErrorCode::NotFound);
  }
}

}  // namespace
}  // namespace nmi::identity
