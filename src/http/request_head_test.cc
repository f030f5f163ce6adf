#include "http/request_head.h"

#include <string>

#include <gtest/gtest.h>

namespace nmi::http {
namespace {

namespace bhttp = boost::beast::http;

Inspection inspect(std::string_view bytes) {
  return inspectRequest(bytes, ServerLimits{});
}

TEST(RequestHead, AcceptsAPlainRequestAndSaysWhereItEnds) {
  const std::string one = "GET /metadata/versions HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n\r\n";
  const auto out = inspect(one + "GET /next HTTP/1.1\r\n");
  ASSERT_TRUE(out.request) << (out.refusal ? out.refusal->description : "need more");
  EXPECT_EQ(out.used, one.size());
  EXPECT_EQ(out.request->target(), "/metadata/versions");
}

TEST(RequestHead, WaitsForTheBlankLineAndForTheBody) {
  EXPECT_FALSE(inspect("GET / HTTP/1.1\r\nHost: x\r\n").request);
  EXPECT_FALSE(inspect("GET / HTTP/1.1\r\nHost: x\r\n").refusal);
  const auto partial = inspect("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345");
  EXPECT_FALSE(partial.request);
  EXPECT_FALSE(partial.refusal);
}

TEST(RequestHead, RefusesRawSpellingsOtherServersReadDifferently) {
  using namespace std::string_view_literals;  // NOLINT(google-build-using-namespace)
  for (const std::string_view bad : {
           "GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n continued\r\n\r\n"sv,
           "GET / HTTP/1.1\nHost: x\r\n\r\n"sv,
           "GET / HTTP/1.1\r\nHost: x\rX: 1\r\n\r\n"sv,
           "GET / HTTP/1.1\r\nHost: x\0\r\n\r\n"sv,
       }) {
    const auto out = inspect(bad);
    ASSERT_TRUE(out.refusal) << bad;
    EXPECT_EQ(out.refusal->status, bhttp::status::bad_request) << bad;
  }
}

// Found by the http_request_head fuzzer: with the whole head buffered, Beast still asked for more
// when the request line ended within the 8 bytes a version takes, and the server waited for the
// header timeout instead of answering.
TEST(RequestHead, RefusesAHeadBeastCannotFinishInsteadOfWaiting) {
  using namespace std::string_view_literals;  // NOLINT(google-build-using-namespace)
  for (const std::string_view bad :
       {"GET / x\r\n\r\n"sv, "GET / HTTP\r\n\r\n"sv, "OPTIONS \xd1\xdf.ost: x\r\n\r\n"sv}) {
    const auto out = inspect(bad);
    ASSERT_TRUE(out.refusal) << bad;
    EXPECT_EQ(out.refusal->status, bhttp::status::bad_request) << bad;
  }
}

// Found by the http_request_head fuzzer: a head breaking a rule (two Hosts) followed by a chunk
// over the body limit was 413 when both arrived together and 400 when the head came first.
TEST(RequestHead, TheHeadsRulesDecideBeforeTheBodyHoweverTheBytesArrive) {
  const std::string head =
      "POST / HTTP/1.1\r\nHost: a\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (const std::string& bytes : {head, head + "fffffffffffff\r\n"}) {
    const auto out = inspect(bytes);
    ASSERT_TRUE(out.refusal) << bytes;
    EXPECT_EQ(out.refusal->description, "Exactly one Host header is required") << bytes;
  }
}

// Found by the http_request_head fuzzer: a malformed request line near max_header_bytes made
// Beast look past the head's end, past its window, and the head that fits was refused as too
// large (431), or as malformed (400) when it came alone.
TEST(RequestHead, AHeadThatFitsIsNeverTooLarge) {
  ServerLimits limits;
  limits.max_header_bytes = 12;
  for (const std::string_view bytes : {"POST / 4\r\n\r\nxxxxxxxx", "POST / 4\r\n\r\n"}) {
    const auto out = inspectRequest(bytes, limits);
    ASSERT_TRUE(out.refusal) << bytes;
    EXPECT_EQ(out.refusal->status, bhttp::status::bad_request) << bytes;
  }
}

// Found by the http_request_head fuzzer: checkHead() read "chun:, chunked" as ending in chunked,
// Beast could not read the list and framed the request without a body, so its chunks would have
// been the next request.
TEST(RequestHead, RefusesTransferCodingsBeastWouldNotFrameAsChunked) {
  const auto out = inspect(
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chun:, chunked\r\n\r\n"
      "3\r\nabc\r\n0\r\n\r\n");
  ASSERT_TRUE(out.refusal);
  EXPECT_EQ(out.refusal->description, "Unsupported transfer coding");
  EXPECT_TRUE(
      inspect("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip ,chunked\r\n\r\n0\r\n\r\n")
          .request);
}

TEST(RequestHead, RefusesAmbiguousFramingAndHosts) {
  EXPECT_EQ(inspect("GET / HTTP/1.1\r\n\r\n").refusal->description,
            "Exactly one Host header is required");
  EXPECT_EQ(inspect("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").refusal->description,
            "Exactly one Host header is required");
  EXPECT_TRUE(inspect("GET / HTTP/1.0\r\n\r\n").request);
  // (Beast refuses this one itself: 400 either way.)
  EXPECT_EQ(inspect("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: "
                    "chunked\r\n\r\n0\r\n\r\n")
                .refusal->status,
            bhttp::status::bad_request);
  EXPECT_EQ(inspect("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n")
                .refusal->description,
            "Unsupported transfer coding");
  EXPECT_TRUE(
      inspect("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n")
          .request);
}

TEST(RequestHead, EnforcesTheLimits) {
  const auto head =
      inspect("GET / HTTP/1.1\r\nHost: x\r\nX: " + std::string(9000, 'a') + "\r\n\r\n");
  ASSERT_TRUE(head.refusal);
  EXPECT_EQ(head.refusal->status, bhttp::status::request_header_fields_too_large);
  const auto body = inspect("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\nabc");
  ASSERT_TRUE(body.refusal);
  EXPECT_EQ(body.refusal->status, bhttp::status::payload_too_large);
  const auto chunked =
      inspect("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
              std::string("20000\r\n") + std::string(0x20000, 'a') + "\r\n0\r\n\r\n");
  ASSERT_TRUE(chunked.refusal);
  EXPECT_EQ(chunked.refusal->status, bhttp::status::payload_too_large);
}

}  // namespace
}  // namespace nmi::http
