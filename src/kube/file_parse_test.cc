#include "kube/file_parse.h"

#include <string>

#include <gtest/gtest.h>

namespace nmi::kube {
namespace {

using nlohmann::json;

std::vector<LocatedObject> parseOk(std::string_view text) {
  auto result = parseIdentityText(text);
  EXPECT_TRUE(result.has_value()) << result.error().message;
  return result.has_value() ? std::move(result).value() : std::vector<LocatedObject>{};
}

std::string parseError(std::string_view text) {
  const auto result = parseIdentityText(text);
  EXPECT_FALSE(result.has_value()) << "parsed although it should not have";
  if (result.has_value()) {
    return {};
  }
  EXPECT_EQ(result.error().code, ErrorCode::InvalidArgument);
  return result.error().message;
}

std::vector<std::string> kinds(const std::vector<LocatedObject>& objects) {
  std::vector<std::string> out;
  out.reserve(objects.size());
  for (const auto& o : objects) {
    out.push_back(o.object.value("kind", ""));
  }
  return out;
}

// ---- JSON ------------------------------------------------------------------------------------

TEST(ParseIdentityTextTest, JsonSingleObject) {
  const auto objects = parseOk(R"({"kind":"Pod","metadata":{"name":"p"}})");
  ASSERT_EQ(objects.size(), 1U);
  EXPECT_EQ(objects[0].object["metadata"]["name"], "p");
}

TEST(ParseIdentityTextTest, JsonListAndTypedList) {
  EXPECT_EQ(kinds(parseOk(R"({"kind":"List","items":[{"kind":"Pod"},{"kind":"Secret"}]})")),
            (std::vector<std::string>{"Pod", "Secret"}));
  const auto typed = parseOk(R"({"kind":"PodList","items":[{"kind":"Pod"}]})");
  ASSERT_EQ(typed.size(), 1U);
  EXPECT_EQ(typed[0].where, "items[0]");
  EXPECT_TRUE(parseOk(R"({"kind":"List","items":null})").empty());
}

TEST(ParseIdentityTextTest, JsonArrayOfObjectsAndLists) {
  const auto objects =
      parseOk(R"([{"kind":"Pod"}, {"kind":"List","items":[{"kind":"AzureIdentity"}]}])");
  EXPECT_EQ(kinds(objects), (std::vector<std::string>{"Pod", "AzureIdentity"}));
  EXPECT_EQ(objects[1].where, "[1], items[0]");
}

TEST(ParseIdentityTextTest, JsonSyntaxErrorGivesLineWithoutQuotingContent) {
  const std::string message = parseError("{\n\"kind\": \"Secret\",\n\"data\": {\"k\": \"s3cr3t}\n");
  EXPECT_NE(message.find("line 3"), std::string::npos) << message;
  EXPECT_EQ(message.find("s3cr3t"), std::string::npos) << message;
}

TEST(ParseIdentityTextTest, JsonNestingIsBounded) {
  const std::string deep(10000, '[');
  const std::string message = parseError(deep + std::string(10000, ']'));
  EXPECT_NE(message.find("nested"), std::string::npos) << message;
  const std::string ok =
      R"({"kind":"Pod","a":)" + std::string(100, '[') + std::string(100, ']') + "}";
  EXPECT_EQ(parseOk(ok).size(), 1U);
}

TEST(ParseIdentityTextTest, NonObjectEntriesAreErrors) {
  EXPECT_NE(parseError(R"([{"kind":"Pod"}, 3])").find("[1]"), std::string::npos);
  EXPECT_NE(parseError(R"({"kind":"List","items":[{"kind":"Pod"}, "x"]})").find("items[1]"),
            std::string::npos);
  EXPECT_NE(parseError(R"({"kind":"List","items":{}})").find("items"), std::string::npos);
}

TEST(ParseIdentityTextTest, ObjectCountIsCapped) {
  std::string text = "[";
  for (std::size_t i = 0; i <= kMaxIdentityFileObjects; ++i) {
    text += (i == 0 ? "{}" : ",{}");
  }
  text += "]";
  EXPECT_NE(parseError(text).find("objects"), std::string::npos);
  text.resize(text.size() - 4);  // drop the last ",{}]"
  text += "]";
  EXPECT_EQ(parseOk(text).size(), kMaxIdentityFileObjects);
}

TEST(ParseIdentityTextTest, SizeIsCapped) {
  const std::string text(kMaxIdentityFileBytes + 1, ' ');
  EXPECT_NE(parseError(text).find("larger"), std::string::npos);
}

TEST(ParseIdentityTextTest, EmptyTextHasNoObjects) {
  EXPECT_TRUE(parseOk("").empty());
  EXPECT_TRUE(parseOk(" \n\t").empty());
  EXPECT_TRUE(parseOk("# only a comment\n---\n").empty());
}

TEST(ParseIdentityTextTest, SkipsByteOrderMark) {
  EXPECT_EQ(parseOk("\xEF\xBB\xBF{\"kind\":\"Pod\"}").size(), 1U);
}

// ---- YAML ------------------------------------------------------------------------------------

TEST(ParseIdentityTextTest, YamlDocumentsWithLocations) {
  const auto objects = parseOk(R"(# leading comment
kind: Pod
metadata:
  name: a
---
---
kind: List
items:
  - kind: AzureIdentity
  - kind: Secret
---
)");
  ASSERT_EQ(kinds(objects), (std::vector<std::string>{"Pod", "AzureIdentity", "Secret"}));
  EXPECT_EQ(objects[0].where, "document 1 (line 2)");
  EXPECT_EQ(objects[2].where, "document 3 (line 7), items[1] (line 10)");
}

TEST(ParseIdentityTextTest, YamlScalarsFollowTheCoreSchema) {
  const auto objects = parseOk(R"(kind: Test
int: 0
negative: -12
hex: 0x1F
octal: 0o17
quoted: "0"
single: '1'
float: 1.5
exp: 1e3
yes_is_text: yes
bool: true
upper: FALSE
null_word: null
tilde: ~
empty:
block: |
  line
explicit: !!str 7
version: 1.10.0
big: 18446744073709551615
)");
  ASSERT_EQ(objects.size(), 1U);
  const json& o = objects[0].object;
  EXPECT_EQ(o["int"], json(0));
  EXPECT_TRUE(o["int"].is_number_integer());
  EXPECT_EQ(o["negative"], json(-12));
  EXPECT_EQ(o["hex"], json(31));
  EXPECT_EQ(o["octal"], json(15));
  EXPECT_EQ(o["quoted"], json("0"));
  EXPECT_EQ(o["single"], json("1"));
  EXPECT_TRUE(o["float"].is_number_float());
  EXPECT_DOUBLE_EQ(o["float"].get<double>(), 1.5);
  EXPECT_DOUBLE_EQ(o["exp"].get<double>(), 1000.0);
  EXPECT_EQ(o["yes_is_text"], json("yes"));
  EXPECT_EQ(o["bool"], json(true));
  EXPECT_EQ(o["upper"], json(false));
  EXPECT_TRUE(o["null_word"].is_null());
  EXPECT_TRUE(o["tilde"].is_null());
  EXPECT_TRUE(o["empty"].is_null());
  EXPECT_EQ(o["block"], json("line\n"));
  EXPECT_EQ(o["explicit"], json("7"));
  EXPECT_EQ(o["version"], json("1.10.0"));
  EXPECT_TRUE(o["big"].is_number_unsigned());
}

TEST(ParseIdentityTextTest, YamlSyntaxErrorGivesLine) {
  const std::string message = parseError("kind: Pod\nmetadata:\n  name: [a\n  x: }\n");
  EXPECT_NE(message.find("line"), std::string::npos) << message;
}

// Found by fuzz/identity_file_fuzz: yaml-cpp 0.7's LoadAll returned the same empty document
// forever on these, allocating until the process ran out of memory.
TEST(ParseIdentityTextTest, YamlThatYamlCppWouldRepeatForeverIsASyntaxError) {
  for (const char* text :
       {",", ",{\"kind&:\"PodLims\":[{\"kind1:\"Pod\"}]}...", "kind: Pod\n---\n,\n"}) {
    const std::string message = parseError(text);
    EXPECT_NE(message.find("YAML syntax error at line"), std::string::npos) << message;
  }
  EXPECT_EQ(parseOk("---\n---\nkind: Pod\n---\n...\n---\nkind: Secret\n").size(), 2U);
}

TEST(ParseIdentityTextTest, YamlNonObjectDocumentIsAnError) {
  const std::string message = parseError("kind: Pod\n---\n- a\n- b\n");
  EXPECT_NE(message.find("document 2"), std::string::npos) << message;
}

TEST(ParseIdentityTextTest, YamlAliasBombIsRefused) {
  std::string text = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < 9; ++i) {
    text += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int j = 0; j < 10; ++j) {
      text += (j == 0 ? "*a" : ", *a") + std::to_string(i - 1);
    }
    text += "]\n";
  }
  const std::string message = parseError(text);
  EXPECT_NE(message.find("expands"), std::string::npos) << message;
}

// Found by fuzz/identity_file_fuzz: keys were not counted, so one long key repeated through an
// alias in many small maps grew quadratically (1.7 KB of text became 61 KB of keys; 16 MB could
// ask for terabytes).
TEST(ParseIdentityTextTest, YamlAliasedKeysCountTowardsTheBudget) {
  std::string text = "kind: List\nitems:\n- {&k \"" + std::string(1000, 'K') + "\": 0}\n";
  for (int i = 0; i < 60; ++i) {
    text += "- {*k : " + std::to_string(i) + "}\n";
  }
  const std::string message = parseError(text);
  EXPECT_NE(message.find("bytes of scalars"), std::string::npos) << message;
  // The same key written out in full each time is within budget.
  std::string plain = "kind: List\nitems:\n";
  for (int i = 0; i < 60; ++i) {
    plain += "- {" + std::string(1000, 'K') + ": " + std::to_string(i) + "}\n";
  }
  EXPECT_EQ(parseOk(plain).size(), 60U);
}

TEST(ParseIdentityTextTest, DenseYamlWithoutAliasesFitsTheBudget) {
  std::string text = "kind: Pod\nx: [a";
  for (int i = 0; i < 100000; ++i) {
    text += ",a";
  }
  text += "]\ny: {";
  for (int i = 0; i < 10000; ++i) {
    text += (i == 0 ? "" : ",") + std::string("k") + std::to_string(i) + ": v";
  }
  text += "}\n";
  const auto objects = parseOk(text);
  ASSERT_EQ(objects.size(), 1U);
  EXPECT_EQ(objects[0].object["x"].size(), 100001U);
  EXPECT_EQ(objects[0].object["y"].size(), 10000U);
}

TEST(ParseIdentityTextTest, YamlAliasesWithinBudgetExpand) {
  const auto objects = parseOk("kind: Pod\nbase: &labels {app: web}\ncopy: *labels\n");
  ASSERT_EQ(objects.size(), 1U);
  EXPECT_EQ(objects[0].object["copy"]["app"], "web");
}

TEST(ParseIdentityTextTest, YamlNestingIsBounded) {
  std::string text = "kind: Pod\nx: ";
  text += std::string(300, '[') + std::string(300, ']') + "\n";
  EXPECT_FALSE(parseIdentityText(text).has_value());
}

TEST(ParseIdentityTextTest, YamlNonScalarKeyIsAnError) {
  EXPECT_NE(parseError("? [a, b]\n: value\n").find("key"), std::string::npos);
}

}  // namespace
}  // namespace nmi::kube
