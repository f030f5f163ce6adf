#include "common/identifier.h"

#include <gtest/gtest.h>

namespace nmi {
namespace {

TEST(IdentifierTest, CanonicalSpellingLowerCasesAsciiLettersOnly) {
  EXPECT_EQ(canonicalIdentifier("AAAAAAAA-1111-Bbbb-1111-AAAAAAAAAAAA"),
            "aaaaaaaa-1111-bbbb-1111-aaaaaaaaaaaa");
  EXPECT_EQ(canonicalIdentifier("/subscriptions/S/resourceGroups/RG/providers/"
                                "Microsoft.ManagedIdentity/userAssignedIdentities/Id-A"),
            "/subscriptions/s/resourcegroups/rg/providers/"
            "microsoft.managedidentity/userassignedidentities/id-a");
  // Nothing else changes: no trimming, non-ASCII bytes kept as they are.
  EXPECT_EQ(canonicalIdentifier(" A\xc3\x84 "), " a\xc3\x84 ");
  EXPECT_EQ(canonicalIdentifier(""), "");
}

TEST(IdentifierTest, SameIdentifierIgnoresCaseOnly) {
  EXPECT_TRUE(sameIdentifier("aaaaaaaa-1111", "AAAAAAAA-1111"));
  EXPECT_TRUE(sameIdentifier("/Subscriptions/x", "/subscriptions/X"));
  EXPECT_TRUE(sameIdentifier("", ""));
  EXPECT_FALSE(sameIdentifier("aaaaaaaa-1111", "aaaaaaaa-1112"));
  EXPECT_FALSE(sameIdentifier("abc", "abc "));
  EXPECT_FALSE(sameIdentifier("abc", "ab"));
  // '[' (0x5B) and '{' (0x7B) differ by the case bit but are not letters.
  EXPECT_FALSE(sameIdentifier("[", "{"));
  EXPECT_FALSE(sameIdentifier("@", "`"));
}

TEST(IdentifierTest, HashAgreesWithSameIdentifier) {
  EXPECT_EQ(identifierHash("AAAAAAAA-1111"), identifierHash("aaaaaaaa-1111"));
  EXPECT_EQ(identifierHash("AbC"), identifierHash(canonicalIdentifier("AbC")));
  EXPECT_NE(identifierHash("abc"), identifierHash("abd"));
}

}  // namespace
}  // namespace nmi
