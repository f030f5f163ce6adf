#include "token/url.h"

#include <utility>
#include <vector>

#include <gtest/gtest.h>

namespace nmi::token {
namespace {

TEST(QueryEscapeTest, KeepsUnreservedAndEscapesTheRestLikeGo) {
  EXPECT_EQ(queryEscape("AZaz09-_.~"), "AZaz09-_.~");
  EXPECT_EQ(queryEscape("https://vault.azure.net"), "https%3A%2F%2Fvault.azure.net");
  EXPECT_EQ(queryEscape("a b+c&d=e/f?g#h%"), "a+b%2Bc%26d%3De%2Ff%3Fg%23h%25");
  EXPECT_EQ(queryEscape(std::string("\x00\xff", 2)), "%00%FF");
  EXPECT_EQ(queryEscape(""), "");
}

TEST(EncodeQueryTest, SortsByNameAndKeepsOrderOfEqualNames) {
  EXPECT_EQ(encodeQuery({{"resource", "r"}, {"client_id", "c"}, {"api-version", "2018-02-01"}}),
            "api-version=2018-02-01&client_id=c&resource=r");
  EXPECT_EQ(encodeQuery({{"b", "2"}, {"a", "x"}, {"b", "1"}}), "a=x&b=2&b=1");
  EXPECT_EQ(encodeQuery({}), "");
}

// RFC 3986 section 5.4.1 "Normal Examples" and 5.4.2 "Abnormal Examples".
TEST(ResolveReferenceTest, MatchesRfc3986Examples) {
  const std::string base = "http://a/b/c/d;p?q";
  const std::vector<std::pair<const char*, const char*>> cases = {
      {"g:h", "g:h"},
      {"g", "http://a/b/c/g"},
      {"./g", "http://a/b/c/g"},
      {"g/", "http://a/b/c/g/"},
      {"/g", "http://a/g"},
      {"//g", "http://g"},
      {"?y", "http://a/b/c/d;p?y"},
      {"g?y", "http://a/b/c/g?y"},
      {"#s", "http://a/b/c/d;p?q#s"},
      {"g#s", "http://a/b/c/g#s"},
      {"g?y#s", "http://a/b/c/g?y#s"},
      {";x", "http://a/b/c/;x"},
      {"g;x", "http://a/b/c/g;x"},
      {"", "http://a/b/c/d;p?q"},
      {".", "http://a/b/c/"},
      {"./", "http://a/b/c/"},
      {"..", "http://a/b/"},
      {"../", "http://a/b/"},
      {"../g", "http://a/b/g"},
      {"../..", "http://a/"},
      {"../../", "http://a/"},
      {"../../g", "http://a/g"},
      {"../../../g", "http://a/g"},
      {"../../../../g", "http://a/g"},
      {"/./g", "http://a/g"},
      {"/../g", "http://a/g"},
      {"g.", "http://a/b/c/g."},
      {".g", "http://a/b/c/.g"},
      {"g..", "http://a/b/c/g.."},
      {"..g", "http://a/b/c/..g"},
      {"./../g", "http://a/b/g"},
      {"./g/.", "http://a/b/c/g/"},
      {"g/./h", "http://a/b/c/g/h"},
      {"g/../h", "http://a/b/c/h"},
      {"g;x=1/./y", "http://a/b/c/g;x=1/y"},
      {"g;x=1/../y", "http://a/b/c/y"},
  };
  for (const auto& [ref, want] : cases) {
    const auto got = resolveReference(base, ref);
    ASSERT_TRUE(got.has_value()) << ref;
    EXPECT_EQ(*got, want) << "reference " << ref;
  }
}

TEST(ResolveReferenceTest, TrailingSlashOfTheBaseDecidesWhetherItsLastSegmentStays) {
  EXPECT_EQ(
      *resolveReference("https://login.microsoftonline.com/", "t/oauth2/token?api-version=1.0"),
      "https://login.microsoftonline.com/t/oauth2/token?api-version=1.0");
  EXPECT_EQ(*resolveReference("https://h/base", "t/oauth2/token"), "https://h/t/oauth2/token");
  EXPECT_EQ(*resolveReference("https://h/base/", "t/oauth2/token"),
            "https://h/base/t/oauth2/token");
  EXPECT_EQ(*resolveReference("https://h", "t/oauth2/token"), "https://h/t/oauth2/token");
  EXPECT_EQ(*resolveReference("HTTPS://h/", "t"), "https://h/t");
}

TEST(ResolveReferenceTest, RejectsRelativeBasesAndControlCharacters) {
  EXPECT_FALSE(resolveReference("login.microsoftonline.com/", "t").has_value());
  EXPECT_FALSE(resolveReference("/relative/", "t").has_value());
  EXPECT_FALSE(resolveReference("https://h/ x", "t").has_value());
  EXPECT_FALSE(resolveReference("https://h/", "t\r\nX-Injected: 1").has_value());
}

TEST(SplitUrlTest, SplitsAllParts) {
  const UrlParts p = splitUrl("HTTPS://user@host:443/a/b?x=1#frag");
  EXPECT_EQ(p.scheme, "https");
  EXPECT_TRUE(p.has_authority);
  EXPECT_EQ(p.authority, "user@host:443");
  EXPECT_EQ(p.path, "/a/b");
  EXPECT_TRUE(p.has_query);
  EXPECT_EQ(p.query, "x=1");
  EXPECT_TRUE(p.has_fragment);
  EXPECT_EQ(p.fragment, "frag");
  EXPECT_TRUE(splitUrl("a/b:c").scheme.empty());
}

}  // namespace
}  // namespace nmi::token
