#include "imds/request_target.h"

#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

namespace nmi::imds {
namespace {

// Canonicalises a target that must be accepted.
CanonicalTarget accept(std::string_view target) {
  Result<CanonicalTarget> r = canonicalizeTarget(target);
  EXPECT_TRUE(r.has_value()) << target << ": " << (r ? "" : r.error().message);
  return r ? std::move(r).value() : CanonicalTarget{};
}

// The error message for a target that must be refused, or "" if it was accepted.
std::string refuse(std::string_view target) {
  const Result<CanonicalTarget> r = canonicalizeTarget(target);
  EXPECT_FALSE(r.has_value()) << target << " was accepted as " << (r ? r->target() : "");
  if (r) {
    return "";
  }
  EXPECT_EQ(r.error().code, ErrorCode::InvalidArgument);
  EXPECT_FALSE(r.error().message.empty());
  return r.error().message;
}

struct PathCase {
  std::string_view input;
  std::string_view path;
  bool trailing_slash = false;
  std::vector<std::string> segments;
};

TEST(RequestTargetTest, CanonicalisesPaths) {
  const std::vector<PathCase> cases = {
      {"/", "/", false, {}},
      {"//", "/", false, {}},
      {"/.", "/", false, {}},
      {"/a/..", "/", false, {}},
      {"/a/../", "/", false, {}},
      {"/a", "/a", false, {"a"}},
      {"/a/", "/a", true, {"a"}},
      {"/a//b", "/a/b", false, {"a", "b"}},
      {"///a///b///", "/a/b", true, {"a", "b"}},
      {"/a/./b", "/a/b", false, {"a", "b"}},
      {"/a/b/.", "/a/b", true, {"a", "b"}},
      {"/a/b/..", "/a", true, {"a"}},
      {"/a/b/../c", "/a/c", false, {"a", "c"}},
      {"/a/%2E/b", "/a/b", false, {"a", "b"}},
      {"/a/%2e%2E/b", "/b", false, {"b"}},
      {"/a/.%2e", "/", false, {}},
      {"/a\\b", "/a/b", false, {"a", "b"}},
      {"/a\\", "/a", true, {"a"}},
      {"/a%2Fb", "/a/b", false, {"a", "b"}},
      {"/a%2fb%2F", "/a/b", true, {"a", "b"}},
      {"/a%5Cb%5c", "/a/b", true, {"a", "b"}},
      {"/%61%62", "/ab", false, {"ab"}},
      {"/a+b", "/a+b", false, {"a+b"}},
      {"/...", "/...", false, {"..."}},
      {"/.a/a.", "/.a/a.", false, {".a", "a."}},
      {"/a%2B", "/a+", false, {"a+"}},
      {"/~user/(x)!*'$,:@=", "/~user/(x)!*'$,:@=", false, {"~user", "(x)!*'$,:@="}},
  };
  for (const PathCase& c : cases) {
    SCOPED_TRACE(c.input);
    const CanonicalTarget t = accept(c.input);
    EXPECT_EQ(t.path, c.path);
    EXPECT_EQ(t.trailing_slash, c.trailing_slash);
    EXPECT_EQ(t.segments, c.segments);
    EXPECT_EQ(t.raw_query, "");
    EXPECT_TRUE(t.params.empty());
  }
}

TEST(RequestTargetTest, LowerCasesOnlyAFirstMetadataSegment) {
  EXPECT_EQ(accept("/METADATA/Instance/Compute").path, "/metadata/Instance/Compute");
  EXPECT_EQ(accept("/MeTaDaTa").path, "/metadata");
  EXPECT_EQ(accept("/%4D%45TADATA/x").path, "/metadata/x");
  EXPECT_EQ(accept("/x/../Metadata/y").path, "/metadata/y");
  EXPECT_EQ(accept("/x/Metadata").path, "/x/Metadata");
  EXPECT_EQ(accept("/Metadatax").path, "/Metadatax");
}

TEST(RequestTargetTest, RefusesTargetsNotInOriginForm) {
  for (const std::string_view target :
       {"", "*", "metadata/identity/oauth2/token", "http://169.254.169.254/metadata/instance",
        "HTTP://169.254.169.254/", "169.254.169.254:80", "\\metadata\\instance", "?a=b",
        "%2Fmetadata"}) {
    SCOPED_TRACE(target);
    EXPECT_NE(refuse(target).find("origin-form"), std::string::npos);
  }
}

TEST(RequestTargetTest, RefusesOverlongTargets) {
  std::string longest = "/" + std::string(kMaxRequestTargetBytes - 1, 'a');
  EXPECT_EQ(accept(longest).path.size(), kMaxRequestTargetBytes);
  longest += 'a';
  EXPECT_NE(refuse(longest).find("longer than 8192"), std::string::npos);
  // Overlong before canonicalisation counts, even if the canonical form would be short.
  std::string dots;
  while (dots.size() <= kMaxRequestTargetBytes) {
    dots += "/.";
  }
  refuse(dots + "/metadata/instance");
}

TEST(RequestTargetTest, RefusesRawBytesOutsideVisibleAscii) {
  for (const char c : {'\0', '\t', '\n', '\r', ' ', '\x1f', '\x7f', '\x80', '\xc3', '\xff'}) {
    std::string path = "/metadata/";
    path += c;
    SCOPED_TRACE(static_cast<int>(static_cast<unsigned char>(c)));
    refuse(path);
    refuse("/a?b=" + std::string(1, c));
  }
}

TEST(RequestTargetTest, RefusesFragments) {
  refuse("/metadata/instance#x");
  refuse("/metadata/instance?a=b#x");
  refuse("/#");
  refuse("/a?#");
}

TEST(RequestTargetTest, RefusesMalformedPathEscapes) {
  for (const std::string_view target : {"/%", "/%4", "/a%", "/a%4", "/%zz", "/%4g", "/%g4", "/%%",
                                        "/%%41", "/% 41", "/%-1", "/%+1"}) {
    SCOPED_TRACE(target);
    refuse(target);
  }
  EXPECT_NE(refuse("/%zz").find("malformed percent-escape in path"), std::string::npos);
}

TEST(RequestTargetTest, RefusesForbiddenDecodedPathBytes) {
  for (const std::string_view target :
       {"/a%00", "/a%01", "/a%0a", "/a%0D", "/a%1F", "/a%7F", "/a%80", "/a%C3%A9", "/a%FF",
        "/a%20b", "/a%25", "/a%252F", "/a%3F", "/a%3fb=c", "/a%23"}) {
    SCOPED_TRACE(target);
    refuse(target);
  }
  EXPECT_NE(refuse("/a%252F").find("double encoding"), std::string::npos);
}

TEST(RequestTargetTest, RefusesDotDotAboveTheRoot) {
  for (const std::string_view target : {"/..", "/../", "/../a", "/a/../..", "/a/../../b",
                                        "/%2E%2E/a", "/.%2e", "/a/b/../../../c", "/a\\..\\.."}) {
    SCOPED_TRACE(target);
    EXPECT_NE(refuse(target).find("above the root"), std::string::npos);
  }
}

TEST(RequestTargetTest, RefusesMatrixParameters) {
  for (const std::string_view target :
       {"/a;b", "/a;", "/;", "/a;b/c", "/a/b;x=1/../c", "/a%3Bb", "/a%3b"}) {
    SCOPED_TRACE(target);
    EXPECT_NE(refuse(target).find("';'"), std::string::npos);
  }
}

TEST(RequestTargetTest, KeepsTheRawQueryAndDecodesParameters) {
  const CanonicalTarget t = accept(
      "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fvault."
      "azure.net&client_id=a+b%2Bc&flag&empty=&eq=a=b");
  EXPECT_EQ(t.raw_query,
            "api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net&client_id=a+b%2Bc&flag&"
            "empty=&eq=a=b");
  const std::vector<QueryParam> expected = {{"api-version", "2018-02-01"},
                                            {"resource", "https://vault.azure.net"},
                                            {"client_id", "a b+c"},
                                            {"flag", ""},
                                            {"empty", ""},
                                            {"eq", "a=b"}};
  EXPECT_EQ(t.params, expected);
}

TEST(RequestTargetTest, SkipsEmptyQueryPieces) {
  const CanonicalTarget t = accept("/a?&&x=1&&y=2&");
  EXPECT_EQ(t.raw_query, "&&x=1&&y=2&");
  EXPECT_EQ(t.params, (std::vector<QueryParam>{{"x", "1"}, {"y", "2"}}));
  EXPECT_TRUE(accept("/a?").params.empty());
  EXPECT_EQ(accept("/a?").raw_query, "");
  EXPECT_TRUE(accept("/a?&").params.empty());
}

TEST(RequestTargetTest, DecodesPlusAndEscapesInNamesAndValues) {
  const CanonicalTarget t = accept("/a?a+b=c+d&%41%2b=%2B%20&%c3%a9=%E2%82%AC");
  EXPECT_EQ(t.params,
            (std::vector<QueryParam>{{"a b", "c d"}, {"A+", "+ "}, {"\xc3\xa9", "\xe2\x82\xac"}}));
}

TEST(RequestTargetTest, LeavesPathCharactersInTheQueryAlone) {
  const CanonicalTarget t = accept("/a?x=/../b\\c?d%25");
  EXPECT_EQ(t.path, "/a");
  EXPECT_EQ(t.params, (std::vector<QueryParam>{{"x", "/../b\\c?d%"}}));
}

TEST(RequestTargetTest, RefusesSemicolonsInTheQuery) {
  for (const std::string_view target : {"/a?x=1;y=2", "/a?;", "/a?x;", "/a?x=%3B&;"}) {
    SCOPED_TRACE(target);
    EXPECT_NE(refuse(target).find("';'"), std::string::npos);
  }
  // An encoded ';' is data, not a separator.
  EXPECT_EQ(accept("/a?x=%3B").params.front().value, ";");
}

TEST(RequestTargetTest, RefusesMalformedQueryEscapes) {
  for (const std::string_view target :
       {"/a?x=%", "/a?x=%4", "/a?x=%zz", "/a?%=1", "/a?%4=1", "/a?x%g0=1", "/a?x=1&y=%%"}) {
    SCOPED_TRACE(target);
    EXPECT_NE(refuse(target).find("malformed percent-escape in query"), std::string::npos);
  }
}

TEST(RequestTargetTest, RefusesEmptyParameterNames) {
  for (const std::string_view target : {"/a?=", "/a?=x", "/a?x=1&=2", "/a?==", "/a?x=1&="}) {
    SCOPED_TRACE(target);
    EXPECT_NE(refuse(target).find("empty name"), std::string::npos);
  }
  EXPECT_EQ(accept("/a?+=1").params.front().name, " ");
}

TEST(RequestTargetTest, RefusesDecodedControlBytesInTheQuery) {
  for (const std::string_view target :
       {"/a?x=%00", "/a?x=a%0Ab", "/a?x=%0d", "/a?x=%1f", "/a?x=%7F", "/a?%00=1", "/a?x%09=1"}) {
    SCOPED_TRACE(target);
    EXPECT_NE(refuse(target).find("control byte"), std::string::npos);
  }
  EXPECT_EQ(accept("/a?x=%80%FF").params.front().value, "\x80\xff");
}

TEST(RequestTargetTest, RefusesDuplicateParameterNames) {
  EXPECT_EQ(refuse("/metadata/identity/oauth2/token?resource=a&resource=b"),
            "duplicate query parameter 'resource'");
  EXPECT_EQ(refuse("/a?resource=a&%72esource=b"), "duplicate query parameter 'resource'");
  EXPECT_EQ(refuse("/a?client_id&client_id="), "duplicate query parameter 'client_id'");
  EXPECT_EQ(refuse("/a?a+b=1&a%20b=2"), "duplicate query parameter 'a b'");
  EXPECT_EQ(refuse("/a?%C3%A9=1&%c3%a9=2"), "duplicate query parameter '\\xc3\\xa9'");
  // Names are case-sensitive, so these are two parameters.
  EXPECT_EQ(accept("/a?resource=a&Resource=b").params.size(), 2U);
}

std::string queryWithParams(std::size_t n) {
  std::string query;
  for (std::size_t i = 0; i < n; ++i) {
    query += "&&p" + std::to_string(i) + "=" + std::to_string(i);
  }
  return query;
}

TEST(RequestTargetTest, CapsTheNumberOfParameters) {
  const CanonicalTarget t = accept("/a?" + queryWithParams(kMaxQueryParams));
  ASSERT_EQ(t.params.size(), kMaxQueryParams);
  EXPECT_EQ(t.params.back().name, "p63");
  EXPECT_NE(refuse("/a?" + queryWithParams(kMaxQueryParams + 1)).find("more than 64"),
            std::string::npos);
}

TEST(RequestTargetTest, FindsParametersByExactName) {
  const CanonicalTarget t = accept("/a?resource=r&Client_Id=c&x");
  ASSERT_NE(t.find("resource"), nullptr);
  EXPECT_EQ(t.find("resource")->value, "r");
  ASSERT_NE(t.find("x"), nullptr);
  EXPECT_EQ(t.find("x")->value, "");
  EXPECT_EQ(t.find("client_id"), nullptr);
  EXPECT_EQ(t.find("Resource"), nullptr);
  EXPECT_EQ(t.find(""), nullptr);
  EXPECT_EQ(t.find("resourc"), nullptr);
}

struct TargetCase {
  std::string_view input;
  std::string_view target;
};

TEST(RequestTargetTest, TargetRoundTrips) {
  const std::vector<TargetCase> cases = {
      {"/", "/"},
      {"/?", "/"},
      {"/?a=1", "/?a=1"},
      {"//?a=1", "/?a=1"},
      {"/metadata/instance/", "/metadata/instance/"},
      {"/METADATA/instance?api-version=2021-02-01&format=text",
       "/metadata/instance?api-version=2021-02-01&format=text"},
      {"/metadata//instance//compute/.?x", "/metadata/instance/compute/?x"},
      {"/metadata\\versions", "/metadata/versions"},
      {"/a/b/..?q=%2F+x&&", "/a/?q=%2F+x&&"},
      {"/%6Detadata/%69nstance", "/metadata/instance"},
      {"/a%2F%2Fb%5C", "/a/b/"},
      {"//evil.example/metadata/instance", "/evil.example/metadata/instance"},
      {"/a?x=/../b", "/a?x=/../b"},
  };
  for (const TargetCase& c : cases) {
    SCOPED_TRACE(c.input);
    const CanonicalTarget first = accept(c.input);
    EXPECT_EQ(first.target(), c.target);
    const CanonicalTarget second = accept(first.target());
    EXPECT_EQ(second.path, first.path);
    EXPECT_EQ(second.trailing_slash, first.trailing_slash);
    EXPECT_EQ(second.segments, first.segments);
    EXPECT_EQ(second.raw_query, first.raw_query);
    EXPECT_EQ(second.params, first.params);
    EXPECT_EQ(second.target(), first.target());
  }
}

}  // namespace
}  // namespace nmi::imds
