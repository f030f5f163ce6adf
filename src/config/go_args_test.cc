#include "config/go_args.h"

#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace nmi::config {
namespace {

using ::testing::ElementsAre;

ArgSpec fakeSpec(std::string_view name) {
  if (name == "flag" || name == "v") {
    return ArgSpec{ArgKind::Value, {}};
  }
  if (name == "on") {
    return ArgSpec{ArgKind::Bool, {}};
  }
  if (name == "gone") {
    return ArgSpec{ArgKind::Removed, "removed long ago"};
  }
  return ArgSpec{};
}

Result<GoArgs> split(const std::vector<std::string>& args) {
  return splitGoArgs(args, fakeSpec);
}

TEST(GoArgsTest, ReadsEveryValueForm) {
  const Result<GoArgs> out =
      split({"--flag=a", "--flag", "b", "-flag=c", "-flag", "d", "--flag=", "-flag", ""});
  ASSERT_TRUE(out.has_value()) << out.error().message;
  EXPECT_FALSE(out->help);
  EXPECT_THAT(out->values,
              ElementsAre(ArgValue{"flag", "a"}, ArgValue{"flag", "b"}, ArgValue{"flag", "c"},
                          ArgValue{"flag", "d"}, ArgValue{"flag", ""}, ArgValue{"flag", ""}));
}

TEST(GoArgsTest, BareBoolIsTrueAndValuesAreKeptVerbatim) {
  const Result<GoArgs> out = split({"--on", "-on", "--on=False", "-on=x"});
  ASSERT_TRUE(out.has_value());
  EXPECT_THAT(out->values, ElementsAre(ArgValue{"on", "true"}, ArgValue{"on", "true"},
                                       ArgValue{"on", "False"}, ArgValue{"on", "x"}));
}

TEST(GoArgsTest, PflagVerbosityShorthand) {
  const Result<GoArgs> out = split({"-v3", "-v", "4", "-v=5"});
  ASSERT_TRUE(out.has_value());
  EXPECT_THAT(out->values, ElementsAre(ArgValue{"v", "3"}, ArgValue{"v", "4"}, ArgValue{"v", "5"}));
  EXPECT_FALSE(split({"--v3"}).has_value());  // a long --v3 is just unknown
  EXPECT_FALSE(split({"-vx"}).has_value());
}

TEST(GoArgsTest, HelpStopsReading) {
  const Result<GoArgs> out = split({"--flag=a", "-h", "--unknown", "positional"});
  ASSERT_TRUE(out.has_value());
  EXPECT_TRUE(out->help);
  EXPECT_THAT(out->values, ElementsAre(ArgValue{"flag", "a"}));
}

TEST(GoArgsTest, ErrorsNameTheWord) {
  EXPECT_EQ(split({"--nope"}).error().message,
            "unknown flag --nope (see nmi --help for the flags nmi accepts)");
  EXPECT_EQ(split({"-nope=1"}).error().message,
            "unknown flag -nope (see nmi --help for the flags nmi accepts)");
  EXPECT_EQ(split({"--gone=1"}).error().message, "flag --gone is not supported: removed long ago");
  EXPECT_EQ(split({"-flag"}).error().message, "flag -flag needs a value");
  EXPECT_EQ(split({"x"}).error().message,
            "unexpected argument \"x\": nmi takes no positional arguments");
  EXPECT_EQ(split({"--on", "f"}).error().message,
            "unexpected argument \"f\": nmi takes no positional arguments (set a boolean flag "
            "with --on=f)");
  EXPECT_EQ(split({"--on", "word"}).error().message,
            "unexpected argument \"word\": nmi takes no positional arguments");
  EXPECT_EQ(split({"-=x"}).error().message, "bad flag syntax: -=x");
  EXPECT_EQ(split({"--", "x"}).error().message,
            "unexpected argument \"x\": nmi takes no positional arguments");
  EXPECT_EQ(split({"--gone"}).error().code, ErrorCode::InvalidArgument);
}

TEST(GoArgsTest, DoubleDashAloneEndsFlags) {
  const Result<GoArgs> out = split({"--flag=a", "--"});
  ASSERT_TRUE(out.has_value());
  EXPECT_THAT(out->values, ElementsAre(ArgValue{"flag", "a"}));
}

TEST(GoArgsTest, NothingToRead) {
  const Result<GoArgs> out = split({});
  ASSERT_TRUE(out.has_value());
  EXPECT_TRUE(out->values.empty());
  EXPECT_FALSE(out->help);
}

}  // namespace
}  // namespace nmi::config
