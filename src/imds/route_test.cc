#include "imds/route.h"

#include <algorithm>
#include <array>
#include <cstddef>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "imds/request_target.h"

namespace nmi::imds {
namespace {

// nullopt: canonicalizeTarget refuses the target.
using Outcome = std::optional<Route>;

struct RouteCase {
  std::string target;
  Outcome expected;
};

std::string describe(const Outcome& o) {
  return o ? std::string(routeName(*o)) : std::string("refused");
}

Outcome outcomeOf(std::string_view target) {
  const Result<CanonicalTarget> t = canonicalizeTarget(target);
  if (!t) {
    return std::nullopt;
  }
  return classifyRoute(*t);
}

void expectOutcomes(const std::vector<RouteCase>& cases) {
  for (const RouteCase& c : cases) {
    EXPECT_EQ(describe(outcomeOf(c.target)), describe(c.expected)) << "target: " << c.target;
  }
}

TEST(RouteTest, ClassifiesSpellingsOfTheTokenPath) {
  const Outcome refused = std::nullopt;
  const std::vector<RouteCase> cases = {
      // Folded onto the token path.
      {"/metadata/identity/oauth2/token", Route::Token},
      {"/metadata/identity/oauth2/token/", Route::Token},
      {"/METADATA/identity/oauth2/token/", Route::Token},
      {"/Metadata/identity/oauth2/token", Route::Token},
      {"/metadata/Identity/OAuth2/TOKEN", Route::Token},
      {"/metadata/IDENTITY/oauth2/token", Route::Token},
      {"/metadata//identity/oauth2/token", Route::Token},
      {"//metadata/identity/oauth2/token", Route::Token},
      {"/metadata/identity//oauth2//token//", Route::Token},
      {"/metadata/identity\\oauth2\\token", Route::Token},
      {R"(/metadata/identity\oauth2\token\)", Route::Token},
      {R"(/metadata\identity\oauth2\token/)", Route::Token},
      {"/metadata/identity/\\oauth2\\token/", Route::Token},
      {"/metadata/identity/oauth2/token/.", Route::Token},
      {"/metadata/identity/oauth2/token/./", Route::Token},
      {"/a/../metadata/identity/oauth2/token", Route::Token},
      {"/metadata/identity/oauth2/./token", Route::Token},
      {"/metadata/identity/x/../oauth2/token", Route::Token},
      {"/metadata/identity/oauth2/token/x/..", Route::Token},
      {"/%6Detadata/identity/oauth2/token", Route::Token},
      {"/%6D%65%74%61%64%61%74%61/%69%64%65%6E%74%69%74%79/%6f%61%75%74%68%32/%74%6f%6b%65%6e",
       Route::Token},
      {"/metadata%2Fidentity%2Foauth2%2Ftoken", Route::Token},
      {"/metadata%2fidentity%2foauth2%2ftoken%2f", Route::Token},
      {"/metadata%5Cidentity%5Coauth2%5Ctoken", Route::Token},
      {"/metadata%5cidentity%5coauth2%5ctoken%5C", Route::Token},
      {"/metadata/identity/oauth2/%2E/token", Route::Token},
      {"/metadata/identity/oauth2/%2e%2e/oauth2/token", Route::Token},
      {"/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fx%2F",
       Route::Token},
      {"/metadata/identity/oauth2/token?", Route::Token},
      // Refused before routing.
      {"/metadata/identity/oauth2/token?resource=x&resource=y", refused},
      {"/metadata/identity/oauth2/token%00", refused},
      {"/metadata/identity/oauth2/token%252F", refused},
      {"/metadata/identity/oauth2/token%2500", refused},
      {"/metadata/identity/oauth2/token;x=1", refused},
      {"/metadata/identity/oauth2/token%3Bx=1", refused},
      {"/metadata;/identity/oauth2/token", refused},
      {"/../metadata/identity/oauth2/token", refused},
      {"/metadata/../../metadata/identity/oauth2/token", refused},
      {"http://169.254.169.254/metadata/identity/oauth2/token", refused},
      {"metadata/identity/oauth2/token", refused},
      {R"(\metadata\identity\oauth2\token)", refused},
      {"/metadata/identity/oauth2/token#x", refused},
      {"/metadata/identity/oauth2/token%23", refused},
      {"/metadata/identity/oauth2/token%3F", refused},
      {"/metadata/identity/oauth2/token%20", refused},
      {"/metadata/identity/oauth2/token%C0%AF", refused},
      {"/metadata/identity/oauth2/token%E2%80%8B", refused},
      {"/metadata/identity/oauth2/token HTTP/1.1", refused},
      {"/metadata/identity/oauth2/token\t", refused},
      {std::string("/metadata/identity/oauth2/token\0", 32), refused},
      {"/metadata/identity/oauth2/tok%en", refused},
      {"/metadata/identity/oauth2/token%2", refused},
      {"/metadata/identity/oauth2/token%u002f", refused},
      {"/metadata/identity/oauth2/token?x=" + std::string(kMaxRequestTargetBytes, 'a'), refused},
      {"/metadata/identity/oauth2/token?x=%0A", refused},
      // Look-alikes: answered with 400, never proxied.
      {"/metadata/identity/oauth2/tokenX", Route::InvalidTokenPath},
      {"/metadata/identity/oauth2/token/extra", Route::InvalidTokenPath},
      {"/metadata/identity/oauth2x/token", Route::InvalidTokenPath},
      {"/x/metadata/identity/oauth2/token", Route::InvalidTokenPath},
      {"/metadata/identity/oauth2/token2", Route::InvalidTokenPath},
      {"/metadata/identity/oauth2/token.", Route::InvalidTokenPath},
      {"/metadata/identity/oauth2/token..", Route::InvalidTokenPath},
      {"/metadata/identity/oauth2/token%2E", Route::InvalidTokenPath},
      {"/metadata/identity/oauth2/token~", Route::InvalidTokenPath},
      {"/metadata/identity/oauth2token", Route::InvalidTokenPath},
      {"/metadata/identity/token", Route::InvalidTokenPath},
      {"/metadata/identity/getToken", Route::InvalidTokenPath},
      {"/metadata/identity/oauth2/token/../token/x", Route::InvalidTokenPath},
      {"/metadata/identityoauth2token", Route::InvalidTokenPath},
      {"/metadata/instance/oauth2/token", Route::InvalidTokenPath},
      {"/metadata/oauth2/token", Route::InvalidTokenPath},
      {"/oauth2/token", Route::InvalidTokenPath},
      {"/host/oauth2/token", Route::InvalidTokenPath},
      {"/Metadata/Identity/OAuth2/Token/Extra", Route::InvalidTokenPath},
      {"/metadata/identity/oauth2/token%2Fextra", Route::InvalidTokenPath},
      {"/metadata/identity%2Foauth2/token%5Cextra", Route::InvalidTokenPath},
      // Not a token path any more once the dots are resolved; still never proxied.
      {"/metadata/identity/oauth2/token/..", Route::BlockedIdentityPath},
      {"/metadata/identity/oauth2/token/%2e%2e", Route::BlockedIdentityPath},
      {"/metadata/identity/oauth2", Route::BlockedIdentityPath},
  };
  expectOutcomes(cases);
}

TEST(RouteTest, ClassifiesHostPaths) {
  expectOutcomes({
      {"/host/token", Route::HostToken},
      {"/host/token/", Route::HostToken},
      {"/HOST/Token", Route::HostToken},
      {"/host//token", Route::HostToken},
      {"/host\\token", Route::HostToken},
      {"/host%2Ftoken", Route::HostToken},
      {"/x/../host/token?resource=r", Route::HostToken},
      {"/host/tokenfoo", Route::HostNotFound},
      {"/host", Route::HostNotFound},
      {"/host/", Route::HostNotFound},
      {"/Host/x", Route::HostNotFound},
      {"/host/token/x", Route::HostNotFound},
      {"/host/token/..", Route::HostNotFound},
      {"/hostx/token", Route::NotFound},
  });
}

TEST(RouteTest, ClassifiesMetadataPaths) {
  expectOutcomes({
      {"/metadata/instance", Route::InstanceMetadata},
      {"/Metadata/instance/", Route::InstanceMetadata},
      {"/metadata/INSTANCE/compute?api-version=2021-02-01", Route::InstanceMetadata},
      {"/metadata\\instance\\network", Route::InstanceMetadata},
      {"/metadata/instance/network/interface/0/ipv4/ipAddress/0/privateIpAddress",
       Route::InstanceMetadata},
      {"/metadata/instance/compute/tags_list-2", Route::InstanceMetadata},
      {"/metadata/identity/info", Route::Proxy},
      {"/metadata/identity/info/", Route::Proxy},
      {"/METADATA/IDENTITY/INFO?api-version=2018-02-01", Route::Proxy},
      {"/metadata/identity/issuecredential", Route::BlockedIdentityPath},
      {"/metadata/identity/getplatformmetadata", Route::BlockedIdentityPath},
      {"/metadata/identity", Route::BlockedIdentityPath},
      {"/metadata/identity/", Route::BlockedIdentityPath},
      {"/metadata/identity/info/x", Route::BlockedIdentityPath},
      {"/metadata/Identity/issueCredential", Route::BlockedIdentityPath},
      {"/metadata/versions", Route::Proxy},
      {"/metadata/attested/document", Route::Proxy},
      {"/metadata/scheduledevents", Route::Proxy},
      {"/metadata/loadbalancer", Route::Proxy},
      {"/Metadata/LoadBalancer/", Route::Proxy},
  });
}

// Seam 7 of issue 10: forwarding is by allowlist; anything else is answered by nmi.
TEST(RouteTest, ForwardsOnlyTheDocumentedCategories) {
  expectOutcomes({
      // Spellings a Windows HTTP stack folds into an identity endpoint.
      {"/metadata/identity./issuecredential", Route::NotFound},
      {"/metadata./identity/getplatformmetadata", Route::NotFound},
      {"/metadata/instance./compute", Route::NotFound},
      {"/metadata/instance/compute.", Route::NotFound},
      {"/metadata/instance/compute~1", Route::NotFound},
      {"/metadata/instance/.%2e./identity", Route::NotFound},
      {"/metadata/instancefoo", Route::NotFound},
      {"/metadata/versions/x", Route::NotFound},
      {"/metadata/attested", Route::NotFound},
      {"/metadata/attested/document/x", Route::NotFound},
      {"/metadata/scheduledevents.", Route::NotFound},
      {"/metadata/identityx", Route::NotFound},
      {"/metadata", Route::NotFound},
      {"/metadata/", Route::NotFound},
      {"/doesnotexist", Route::NotFound},
      {"/", Route::NotFound},
      {"/token", Route::NotFound},
      {"/x/metadata/instance", Route::NotFound},
      {"/latest/meta-data/", Route::NotFound},
      {"/metadata/THIM/amd/certification", Route::NotFound},
  });
}

TEST(RouteTest, NamesTheMethodsForwarded) {
  const auto methods = [](std::string_view target) {
    const Result<CanonicalTarget> t = canonicalizeTarget(target);
    EXPECT_TRUE(t.has_value()) << target;
    return std::string(forwardMethods(*t, classifyRoute(*t)));
  };
  EXPECT_EQ(methods("/metadata/instance/compute"), "GET, HEAD");
  EXPECT_EQ(methods("/metadata/versions"), "GET, HEAD");
  EXPECT_EQ(methods("/metadata/scheduledevents?api-version=2020-07-01"), "GET, HEAD, POST");
  EXPECT_EQ(methods("/metadata/identity/oauth2/token"), "");
  EXPECT_EQ(methods("/metadata/identity/issuecredential"), "");
  EXPECT_EQ(methods("/nothing"), "");
}

TEST(RouteTest, NamesEveryRouteDistinctly) {
  const std::map<Route, std::string_view> expected = {
      {Route::Token, "token"},
      {Route::HostToken, "host_token"},
      {Route::InvalidTokenPath, "invalid_token_path"},
      {Route::HostNotFound, "host_not_found"},
      {Route::InstanceMetadata, "instance"},
      {Route::BlockedIdentityPath, "blocked_identity"},
      {Route::Proxy, "proxy"},
      {Route::NotFound, "not_found"},
  };
  for (const auto& [route, name] : expected) {
    EXPECT_EQ(routeName(route), name);
  }
}

TEST(RouteTest, RecognisesMetadataPaths) {
  const auto is_metadata = [](std::string_view target) {
    const Result<CanonicalTarget> t = canonicalizeTarget(target);
    EXPECT_TRUE(t.has_value()) << target;
    return t && isMetadataPath(*t);
  };
  EXPECT_TRUE(is_metadata("/metadata"));
  EXPECT_TRUE(is_metadata("/MetaData/instance"));
  EXPECT_TRUE(is_metadata("/%6detadata/versions"));
  EXPECT_FALSE(is_metadata("/"));
  EXPECT_FALSE(is_metadata("/host/token"));
  EXPECT_FALSE(is_metadata("/x/metadata"));
  EXPECT_FALSE(is_metadata("/metadatax"));
  // A hand-built target need not be canonical; the comparison is case-insensitive anyway.
  CanonicalTarget raw;
  raw.segments = {"METADATA"};
  EXPECT_TRUE(isMetadataPath(raw));
}

std::string lowerCase(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return out;
}

// The security invariants, stated independently of route.cc. Returns "" or what is violated.
std::string checkInvariants(const CanonicalTarget& t) {
  const Route route = classifyRoute(t);
  const Result<CanonicalTarget> again = canonicalizeTarget(t.target());
  if (!again) {
    return "target() is refused: " + again.error().message;
  }
  if (again->path != t.path || again->segments != t.segments ||
      again->trailing_slash != t.trailing_slash || again->params != t.params ||
      classifyRoute(*again) != route) {
    return "canonicalising target() again changes it";
  }
  const std::string lower = lowerCase(t.path);
  if (route == Route::Proxy || route == Route::InstanceMetadata) {
    const std::size_t oauth2 = lower.find("oauth2");
    if (oauth2 != std::string::npos && lower.find("token", oauth2 + 6) != std::string::npos) {
      return "a token-like path is forwarded";
    }
    const bool identity_path =
        lower == "/metadata/identity" || lower.starts_with("/metadata/identity/");
    if (identity_path && lower != "/metadata/identity/info") {
      return "an identity path other than info is forwarded";
    }
    // Only the documented categories, and only segments no server would fold or interpret.
    static const std::array<std::string_view, 5> kExact = {
        "/metadata/versions", "/metadata/identity/info", "/metadata/attested/document",
        "/metadata/scheduledevents", "/metadata/loadbalancer"};
    const bool exact = std::find(kExact.begin(), kExact.end(), lower) != kExact.end();
    if (!exact && lower != "/metadata/instance" && !lower.starts_with("/metadata/instance/")) {
      return "a path outside the allowlist is forwarded";
    }
    for (const std::string& segment : t.segments) {
      if (segment.find_first_not_of(
              "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") !=
          std::string::npos) {
        return "a forwarded segment holds a character other than letters, digits, - and _";
      }
    }
  }
  if (route == Route::Token && lower != "/metadata/identity/oauth2/token") {
    return "a non-token path is routed to the token handler";
  }
  std::string joined;
  for (const std::string& segment : t.segments) {
    if (segment.empty() || segment == "." || segment == ".." ||
        segment.find_first_of("/%\\;?#") != std::string::npos) {
      return "a canonical segment is not canonical";
    }
    joined += "/" + segment;
  }
  if (t.path != (joined.empty() ? "/" : joined)) {
    return "the canonical path is not its segments joined";
  }
  return "";
}

// Random request targets over the brief's alphabet (/ \ . % 2 F 5 C a m e t d i n y o u h k ? & = ;
// and the letters of the token path), assembled from mutated real paths and words so that every
// route, and many near misses of the token path, come up. Deterministic for a given seed.
class RandomTargets {
 public:
  explicit RandomTargets(unsigned seed) : rng_(seed) {}

  std::string next() {
    std::vector<std::string> words;
    if (chance(50)) {
      const std::vector<std::string_view>& path = pick(templates_);
      words.assign(path.begin(), path.end());
    } else {
      for (int n = between(1, 6); n > 0; --n) {
        words.emplace_back(pick(kWords));
      }
    }
    std::string out = chance(97) ? std::string(pick(kSeparators)) : std::string(pick(kLetters));
    for (std::size_t i = 0; i < words.size(); ++i) {
      if (i > 0) {
        out += pick(kSeparators);
      }
      out += mutate(words[i]);
    }
    if (chance(25)) {
      out += pick(kSeparators);
    }
    if (chance(30)) {
      out += '?';
      for (int n = between(1, 5); n > 0; --n) {
        out += pick(kQueryPieces);
      }
    }
    return out;
  }

 private:
  static constexpr std::array<std::string_view, 24> kLetters = {
      "/", "\\", ".", "%", "2", "F", "5", "C", "a", "m", "e", "t",
      "d", "i",  "n", "y", "o", "u", "h", "k", "?", "&", "=", ";"};
  static constexpr std::array<std::string_view, 12> kSeparators = {
      "/", "/", "/", "/", "/", "\\", "%2F", "%2f", "%5C", "//", "/./", "/x/../"};
  static constexpr std::array<std::string_view, 13> kWords = {
      "metadata", "identity", "oauth2", "token",  "host", "instance", "info",
      ".",        "..",       "%2E",    "%2e%2E", "",     "x"};
  const std::vector<std::vector<std::string_view>> templates_ = {
      {"metadata", "identity", "oauth2", "token"},
      {"metadata", "identity", "oauth2", "token"},
      {"metadata", "identity", "oauth2", "token"},
      {"host", "token"},
      {"metadata", "instance", "compute"},
      {"metadata", "identity", "info"},
      {"metadata", "identity", "issuecredential"},
      {"metadata", "versions"},
      {"metadata", "versions"},
      {"metadata", "identity", "info"},
  };
  static constexpr std::array<std::string_view, 12> kQueryPieces = {
      "resource=x", "&", "a", "=", "resource=y", "%", "%4", "+", ";", "client_id=%41", "%00", "=b"};

  bool chance(int percent) { return std::uniform_int_distribution<int>(0, 99)(rng_) < percent; }
  int between(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  template <class Container>
  const typename Container::value_type& pick(const Container& c) {
    return c[std::uniform_int_distribution<std::size_t>(0, c.size() - 1)(rng_)];
  }

  // Mostly leaves a word alone; otherwise changes case, percent-encodes a letter, adds or drops
  // a character, or replaces the word with a few random letters.
  std::string mutate(std::string word) {
    static constexpr std::string_view kHex = "0123456789ABCDEF0123456789abcdef";
    if (chance(15) && !word.empty()) {
      const std::size_t i = between(0, static_cast<int>(word.size()) - 1);
      const auto c = static_cast<unsigned char>(word[i]);
      const std::size_t hex_case = chance(50) ? 0 : 16;
      word.replace(i, 1, {'%', kHex[hex_case + (c >> 4U)], kHex[hex_case + (c & 0xfU)]});
    }
    if (chance(15)) {
      for (char& c : word) {
        if (c >= 'a' && c <= 'z' && chance(50)) {
          c = static_cast<char>(c - 'a' + 'A');
        }
      }
    }
    if (chance(10)) {
      word += pick(kLetters);
    }
    if (chance(5) && !word.empty()) {
      word.pop_back();
    }
    if (chance(5)) {
      word.clear();
      for (int n = between(1, 4); n > 0; --n) {
        word += pick(kLetters);
      }
    }
    return word;
  }

  std::mt19937 rng_;
};

TEST(RouteTest, RandomTargetsKeepTheSecurityInvariants) {
  RandomTargets targets(20220123);  // fixed seed: failures reproduce
  std::map<Route, int> seen;
  int refused = 0;
  for (int i = 0; i < 10000; ++i) {
    const std::string input = targets.next();
    const Result<CanonicalTarget> t = canonicalizeTarget(input);
    if (!t) {
      ++refused;
      continue;
    }
    ++seen[classifyRoute(*t)];
    const std::string violation = checkInvariants(*t);
    EXPECT_EQ(violation, "") << "input: " << input << " canonical: " << t->target();
  }
  // The generator must reach the interesting routes, or this test proves nothing.
  // With this seed: about 5800 refused, 460 token, 390 invalid_token_path, 2400 proxy.
  EXPECT_GT(refused, 1000);
  EXPECT_GT(seen[Route::Token], 100);
  EXPECT_GT(seen[Route::InvalidTokenPath], 100);
  EXPECT_GT(seen[Route::Proxy] + seen[Route::NotFound], 500);
  EXPECT_GT(seen[Route::Proxy], 20);
  EXPECT_GT(seen[Route::HostToken] + seen[Route::HostNotFound], 100);
  EXPECT_GT(seen[Route::InstanceMetadata] + seen[Route::BlockedIdentityPath], 100);
}

}  // namespace
}  // namespace nmi::imds
