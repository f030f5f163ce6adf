#include "imds/proxy.h"

#include <gtest/gtest.h>

namespace nmi::imds {
namespace {

namespace bhttp = boost::beast::http;

TEST(HopByHopTest, TheFixedListInAnyCase) {
  for (const char* name : {"Connection", "keep-alive", "Proxy-Authenticate", "proxy-authorization",
                           "Proxy-Connection", "TE", "Trailer", "Transfer-Encoding", "Upgrade"}) {
    EXPECT_TRUE(isHopByHop(name)) << name;
  }
  for (const char* name : {"Metadata", "Host", "Content-Length", "Content-Type", "Teapot"}) {
    EXPECT_FALSE(isHopByHop(name)) << name;
  }
}

TEST(ListsTokenTest, CommaSeparatedItemsTrimmedAndCaseInsensitive) {
  EXPECT_TRUE(listsToken("close", "Close"));
  EXPECT_TRUE(listsToken(" keep-alive ,\tX-Secret\t", "x-secret"));
  EXPECT_FALSE(listsToken("x-secretive", "x-secret"));
  EXPECT_FALSE(listsToken("", "x"));
  EXPECT_FALSE(listsToken(",,", ""));
  EXPECT_TRUE(listsToken("GET, HEAD", "HEAD"));
}

TEST(ForwardedRequestFieldsTest, DropsHopByHopFramingHostExpectAndWhatConnectionNames) {
  http::Request request{bhttp::verb::get, "/metadata/instance", 11};
  request.set("Host", "169.254.169.254");
  request.set("Metadata", "true");
  request.set("Connection", "keep-alive, X-Private");
  request.set("X-Private", "1");
  request.set("Keep-Alive", "timeout=5");
  request.set("Expect", "100-continue");
  request.set("Content-Length", "0");
  request.set("TE", "trailers");
  request.set("User-Agent", "azsdk");
  EXPECT_EQ(forwardedRequestFields(request),
            (http::Headers{{"Metadata", "true"}, {"User-Agent", "azsdk"}}));
}

TEST(ForwardsResponseFieldTest, KeepsEndToEndFieldsAndHeadsContentLength) {
  EXPECT_TRUE(forwardsResponseField("Content-Type", "", false));
  EXPECT_TRUE(forwardsResponseField("Server", "close", false));
  EXPECT_FALSE(forwardsResponseField("Transfer-Encoding", "", false));
  EXPECT_FALSE(forwardsResponseField("Connection", "", false));
  EXPECT_FALSE(forwardsResponseField("X-Hop", "close, x-hop", false));
  EXPECT_FALSE(forwardsResponseField("Content-Length", "", false));
  EXPECT_TRUE(forwardsResponseField("Content-Length", "", true));
}

}  // namespace
}  // namespace nmi::imds
