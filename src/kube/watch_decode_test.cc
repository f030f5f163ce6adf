#include "kube/watch_decode.h"

#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace nmi::kube {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<std::string> feedAll(LineSplitter& splitter, const std::vector<std::string>& chunks) {
  std::vector<std::string> lines;
  for (const auto& chunk : chunks) {
    auto fed = splitter.feed(chunk, [&](std::string_view line) {
      lines.emplace_back(line);
      return true;
    });
    EXPECT_TRUE(fed.has_value());
  }
  return lines;
}

TEST(LineSplitterTest, JoinsLinesAcrossChunks) {
  LineSplitter splitter(100);
  EXPECT_THAT(feedAll(splitter, {"{\"a\"", ":1}\n{\"b\":2}\n{\"c\"", ":3", "}\n"}),
              ElementsAre("{\"a\":1}", "{\"b\":2}", "{\"c\":3}"));
  EXPECT_TRUE(splitter.pending().empty());
}

TEST(LineSplitterTest, OneByteAtATime) {
  LineSplitter splitter(100);
  const std::string text = "ab\ncd\n";
  std::vector<std::string> chunks;
  for (const char c : text) {
    chunks.emplace_back(1, c);
  }
  EXPECT_THAT(feedAll(splitter, chunks), ElementsAre("ab", "cd"));
}

TEST(LineSplitterTest, DropsCarriageReturnsAndEmptyLines) {
  LineSplitter splitter(100);
  EXPECT_THAT(feedAll(splitter, {"x\r\n\n\r\ny\n"}), ElementsAre("x", "y"));
}

TEST(LineSplitterTest, KeepsAnUnfinishedLinePending) {
  LineSplitter splitter(100);
  EXPECT_THAT(feedAll(splitter, {"done\npart"}), ElementsAre("done"));
  EXPECT_EQ(splitter.pending(), "part");
}

TEST(LineSplitterTest, AnOversizedLineIsAnErrorAndTheSplitterStaysFailed) {
  LineSplitter splitter(8);
  auto ok = splitter.feed("12345678\n", [](std::string_view) { return true; });
  ASSERT_TRUE(ok.has_value());  // exactly the limit is fine
  auto fed = splitter.feed("1234", [](std::string_view) { return true; });
  ASSERT_TRUE(fed.has_value());
  fed = splitter.feed("56789", [](std::string_view) { return true; });  // 9 bytes, no newline yet
  ASSERT_FALSE(fed.has_value());
  EXPECT_EQ(fed.error().code, ErrorCode::ResourceExhausted);
  EXPECT_THAT(fed.error().message, HasSubstr("longer than 8 bytes"));
  EXPECT_FALSE(splitter.feed("\n", [](std::string_view) { return true; }).has_value());
}

TEST(LineSplitterTest, StopsWhenTheHandlerSaysSo) {
  LineSplitter splitter(100);
  int seen = 0;
  auto fed = splitter.feed("a\nb\nc\n", [&](std::string_view) { return ++seen < 2; });
  ASSERT_TRUE(fed.has_value());
  EXPECT_FALSE(*fed);
  EXPECT_EQ(seen, 2);
}

TEST(WatchEventTest, DecodesEveryType) {
  const std::vector<std::pair<std::string, EventType>> types = {{"ADDED", EventType::Added},
                                                                {"MODIFIED", EventType::Modified},
                                                                {"DELETED", EventType::Deleted},
                                                                {"BOOKMARK", EventType::Bookmark},
                                                                {"ERROR", EventType::Error}};
  for (const auto& [name, type] : types) {
    auto event = decodeWatchEvent(json{{"type", name}, {"object", {{"a", 1}}}}.dump());
    ASSERT_TRUE(event.has_value()) << name;
    EXPECT_EQ(event->type, type);
    EXPECT_EQ(event->object["a"], 1);
    EXPECT_STREQ(eventTypeName(type), name.c_str());
  }
}

TEST(WatchEventTest, RefusesHostileLines) {
  const std::vector<std::string> bad = {
      "not json",
      "[1,2]",
      "\"ADDED\"",
      R"({"object":{}})",
      R"({"type":1,"object":{}})",
      R"({"type":"added","object":{}})",
      R"({"type":"SYNC","object":{}})",
      R"({"type":"ADDED"})",
      R"({"type":"ADDED","object":null})",
      R"({"type":"ADDED","object":"pod"})",
      R"({"type":"ADDED","object":[]})",
      R"({"type":"ADDED","object":{})",  // truncated
  };
  for (const auto& line : bad) {
    auto event = decodeWatchEvent(line);
    ASSERT_FALSE(event.has_value()) << line;
    EXPECT_EQ(event.error().code, ErrorCode::InvalidArgument) << line;
    EXPECT_THAT(event.error().message, HasSubstr("watch event")) << line;
  }
}

TEST(WatchEventTest, UnknownTypesAreNamedButShortened) {
  auto event =
      decodeWatchEvent(json{{"type", std::string(100, 'X')}, {"object", json::object()}}.dump());
  ASSERT_FALSE(event.has_value());
  EXPECT_LT(event.error().message.size(), 80U);
}

TEST(WatchEventTest, ResourceVersionOf) {
  EXPECT_EQ(resourceVersionOf(json{{"metadata", {{"resourceVersion", "42"}}}}), "42");
  EXPECT_EQ(resourceVersionOf(json{{"metadata", {{"resourceVersion", 42}}}}), "");
  EXPECT_EQ(resourceVersionOf(json{{"metadata", "x"}}), "");
  EXPECT_EQ(resourceVersionOf(json::array()), "");
}

TEST(ApiStatusTest, DecodesAStatusAndSanitisesTheMessage) {
  const ApiStatus status = decodeStatus(
      json{{"code", 410}, {"reason", "Expired"}, {"message", "too old\nresource version"}});
  EXPECT_EQ(status.code, 410);
  EXPECT_EQ(status.reason, "Expired");
  EXPECT_EQ(status.message, "too old resource version");
  EXPECT_EQ(decodeStatus(json{{"code", "410"}}).code, 0);
  EXPECT_EQ(decodeStatus(json{{"code", 99999}}).code, 0);
  EXPECT_EQ(decodeStatusBody("garbage").message, "");
  const ApiStatus long_message = decodeStatus(json{{"message", std::string(2000, 'm')}});
  EXPECT_LE(long_message.message.size(), 520U);
}

TEST(ClassifyStatusTest, MapsStatusCodes) {
  EXPECT_FALSE(classifyStatus(200, "", std::nullopt, "list pods").has_value());
  EXPECT_FALSE(classifyStatus(204, "", std::nullopt, "list pods").has_value());

  const std::string forbidden =
      json{{"kind", "Status"},
           {"code", 403},
           {"reason", "Forbidden"},
           {"message", "pods is forbidden: User \"system:serviceaccount:x:y\" cannot list"}}
          .dump();
  auto e403 = classifyStatus(403, forbidden, std::nullopt, "list pods");
  ASSERT_TRUE(e403.has_value());
  EXPECT_EQ(e403->error.code, ErrorCode::PermissionDenied);
  EXPECT_EQ(e403->error.message,
            "list pods: HTTP 403 Forbidden: pods is forbidden: User "
            "\"system:serviceaccount:x:y\" cannot list");
  EXPECT_EQ(e403->http_status, 403U);
  EXPECT_FALSE(e403->gone);

  EXPECT_EQ(classifyStatus(401, "", std::nullopt, "x")->error.code, ErrorCode::PermissionDenied);
  EXPECT_EQ(classifyStatus(404, "", std::nullopt, "x")->error.code, ErrorCode::NotFound);
  auto gone = classifyStatus(410, "", std::nullopt, "x");
  EXPECT_TRUE(gone->gone);
  EXPECT_EQ(gone->error.code, ErrorCode::Unavailable);
  auto throttled = classifyStatus(429, "", std::chrono::seconds(7), "x");
  EXPECT_EQ(throttled->error.code, ErrorCode::ResourceExhausted);
  EXPECT_EQ(throttled->retry_after, std::chrono::seconds(7));
  EXPECT_EQ(classifyStatus(500, "", std::nullopt, "x")->error.code, ErrorCode::Unavailable);
  EXPECT_FALSE(classifyStatus(503, "", std::chrono::seconds(5), "x")->retry_after.has_value());
  EXPECT_EQ(classifyStatus(302, "", std::nullopt, "x")->error.code, ErrorCode::Unavailable);
}

TEST(RetryAfterTest, ParsesDeltaSecondsOnly) {
  EXPECT_EQ(parseRetryAfter("5"), std::chrono::seconds(5));
  EXPECT_EQ(parseRetryAfter(" 0 "), std::chrono::seconds(0));
  EXPECT_EQ(parseRetryAfter("999999"), std::chrono::seconds(3600));
  EXPECT_FALSE(parseRetryAfter("").has_value());
  EXPECT_FALSE(parseRetryAfter("-1").has_value());
  EXPECT_FALSE(parseRetryAfter("1.5").has_value());
  EXPECT_FALSE(parseRetryAfter("Wed, 21 Oct 2015 07:28:00 GMT").has_value());
}

// Found by fuzz/watch_decode_fuzz: a value too large for an integer was refused instead of
// capped, and "-0" was read as delta-seconds.
TEST(RetryAfterTest, CapsValuesTooLargeForAnIntegerAndRefusesSigns) {
  EXPECT_EQ(parseRetryAfter("  99999999999999999999999  "), std::chrono::seconds(3600));
  EXPECT_EQ(parseRetryAfter("3601"), std::chrono::seconds(3600));
  EXPECT_EQ(parseRetryAfter("0003600"), std::chrono::seconds(3600));
  EXPECT_FALSE(parseRetryAfter("-0").has_value());
  EXPECT_FALSE(parseRetryAfter("+5").has_value());
  EXPECT_FALSE(parseRetryAfter(" ").has_value());
}

TEST(DecodeListTest, HandsOutItemsOneByOne) {
  const json body = {{"kind", "PodList"},
                     {"metadata", {{"resourceVersion", "77"}, {"continue", "tok="}}},
                     {"items", {{{"metadata", {{"name", "a"}}}}, {{"metadata", {{"name", "b"}}}}}}};
  std::vector<std::string> names;
  auto meta = decodeList(body.dump(), [&](const json& item) {
    names.push_back(item["metadata"]["name"].get<std::string>());
  });
  ASSERT_TRUE(meta.has_value()) << meta.error().message;
  EXPECT_EQ(meta->resource_version, "77");
  EXPECT_EQ(meta->continue_token, "tok=");
  EXPECT_EQ(meta->items, 2U);
  EXPECT_THAT(names, ElementsAre("a", "b"));
}

TEST(DecodeListTest, MetadataAfterItemsAndEmptyOrNullItems) {
  auto meta =
      decodeList(R"({"items":[{"x":{"y":[1,{"z":2}]}}],"metadata":{"resourceVersion":"9"}})",
                 [](const json& item) { EXPECT_EQ(item["x"]["y"][1]["z"], 2); });
  ASSERT_TRUE(meta.has_value());
  EXPECT_EQ(meta->resource_version, "9");
  EXPECT_EQ(meta->items, 1U);
  int calls = 0;
  EXPECT_TRUE(decodeList(R"({"items":null,"metadata":{}})", [&](const json&) { ++calls; }));
  EXPECT_TRUE(decodeList(R"({"items":[]})", [&](const json&) { ++calls; }));
  EXPECT_EQ(calls, 0);
}

TEST(DecodeListTest, RefusesMalformedLists) {
  const std::vector<std::string> bad = {
      "",
      "nope",
      "[]",
      "3",
      R"({"items":{}})",
      R"({"items":"x"})",
      R"({"items":[1]})",
      R"({"items":[{"a":1},[2]]})",
      R"({"items":[{"a":1}])",
      R"({"items":[)" + std::string(200, '[') + std::string(200, ']') + "]}",
  };
  for (const auto& body : bad) {
    auto meta = decodeList(body, [](const json&) {});
    EXPECT_FALSE(meta.has_value()) << body;
  }
}

}  // namespace
}  // namespace nmi::kube
