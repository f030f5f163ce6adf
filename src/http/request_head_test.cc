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
