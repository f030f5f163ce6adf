#include "config/values.h"

#include <limits>

#include <gtest/gtest.h>

#include "config/config.h"

namespace nmi::config {
namespace {

TEST(ValuesTest, ParseGoBoolTakesExactlyGoSpellings) {
  for (const char* t : {"1", "t", "T", "TRUE", "true", "True"}) {
    EXPECT_EQ(parseGoBool(t), std::optional<bool>(true)) << t;
  }
  for (const char* f : {"0", "f", "F", "FALSE", "false", "False"}) {
    EXPECT_EQ(parseGoBool(f), std::optional<bool>(false)) << f;
  }
  for (const char* bad : {"", "yes", "no", "on", "tRUE", "fAlse", " true", "2"}) {
    EXPECT_FALSE(parseGoBool(bad).has_value()) << bad;
  }
}

TEST(ValuesTest, ParseGoIntFollowsBaseZero) {
  EXPECT_EQ(parseGoInt("42"), 42);
  EXPECT_EQ(parseGoInt("+42"), 42);
  EXPECT_EQ(parseGoInt("-42"), -42);
  EXPECT_EQ(parseGoInt("0"), 0);
  EXPECT_EQ(parseGoInt("0x1F"), 31);
  EXPECT_EQ(parseGoInt("0X1f"), 31);
  EXPECT_EQ(parseGoInt("0o17"), 15);
  EXPECT_EQ(parseGoInt("017"), 15);
  EXPECT_EQ(parseGoInt("0b101"), 5);
  EXPECT_EQ(parseGoInt("1_000"), 1000);
  EXPECT_EQ(parseGoInt("0x_1F"), 31);
  EXPECT_EQ(parseGoInt("0_7"), 7);
  EXPECT_EQ(parseGoInt("9223372036854775807"), std::numeric_limits<std::int64_t>::max());
  EXPECT_EQ(parseGoInt("-9223372036854775808"), std::numeric_limits<std::int64_t>::min());
  for (const char* bad : {"", "+", "-", "0x", "08", "0b2", "1_", "_1", "1__0", "1.5", "1e3", " 1",
                          "1 ", "9223372036854775808", "99999999999999999999", "abc"}) {
    EXPECT_FALSE(parseGoInt(bad).has_value()) << bad;
  }
}

TEST(ValuesTest, ParseDecimalTakesDigitsOnly) {
  EXPECT_EQ(parseDecimal("080"), 80);
  EXPECT_EQ(parseDecimal("0"), 0);
  for (const char* bad : {"", "-1", "+1", "0x10", "1_0", "1a"}) {
    EXPECT_FALSE(parseDecimal(bad).has_value()) << bad;
  }
}

TEST(ValuesTest, ParseGoFloatTakesDecimalSpellings) {
  EXPECT_EQ(parseGoFloat("2.5"), 2.5);
  EXPECT_EQ(parseGoFloat("+2.5"), 2.5);
  EXPECT_EQ(parseGoFloat("-1"), -1.0);
  EXPECT_EQ(parseGoFloat(".5"), 0.5);
  EXPECT_EQ(parseGoFloat("1e2"), 100.0);
  for (const char* bad : {"", "inf", "-inf", "nan", "1e999", "1.5x", "x", "++1"}) {
    EXPECT_FALSE(parseGoFloat(bad).has_value()) << bad;
  }
}

TEST(ValuesTest, CheckPort) {
  EXPECT_FALSE(checkPort("1").has_value());
  EXPECT_FALSE(checkPort("65535").has_value());
  EXPECT_EQ(checkPort("0"), "must be between 1 and 65535");
  EXPECT_EQ(checkPort("65536"), "must be between 1 and 65535");
  EXPECT_EQ(checkPort("http"), "not a port number");
}

TEST(ValuesTest, IsIpv4) {
  for (const char* ok : {"0.0.0.0", "127.0.0.1", "169.254.169.254", "255.255.255.255"}) {
    EXPECT_TRUE(isIpv4(ok)) << ok;
  }
  for (const char* bad : {"", "1.2.3", "1.2.3.4.5", "1.2.3.4.", ".1.2.3", "256.0.0.1", "01.2.3.4",
                          "1..2.3", "a.b.c.d", "1.2.3.4 ", "::1", "1.2.3.0004"}) {
    EXPECT_FALSE(isIpv4(bad)) << bad;
  }
}

TEST(ValuesTest, IsHostName) {
  for (const char* ok : {"localhost", "imds-emulator.test", "a", "10.0.0.1", "x1.y2"}) {
    EXPECT_TRUE(isHostName(ok)) << ok;
  }
  for (const char* bad : {"", "-a", "a-", "a..b", "a.", "a b", "a_b", "é"}) {
    EXPECT_FALSE(isHostName(bad)) << bad;
  }
}

TEST(ValuesTest, KlogValues) {
  EXPECT_TRUE(isKlogSeverity("warning"));
  EXPECT_TRUE(isKlogSeverity("FATAL"));
  EXPECT_TRUE(isKlogSeverity("2"));
  EXPECT_FALSE(isKlogSeverity("LOUD"));
  EXPECT_FALSE(isKlogSeverity(""));
  EXPECT_TRUE(isKlogModuleSpec(""));
  EXPECT_TRUE(isKlogModuleSpec("server=4,main*=2,"));
  EXPECT_FALSE(isKlogModuleSpec("server"));
  EXPECT_FALSE(isKlogModuleSpec("=3"));
  EXPECT_FALSE(isKlogModuleSpec("a=b"));
  EXPECT_FALSE(isKlogModuleSpec("a=1=2"));
  EXPECT_TRUE(isKlogTraceLocation(""));
  EXPECT_TRUE(isKlogTraceLocation("main.go:10"));
  EXPECT_FALSE(isKlogTraceLocation("main.go"));
  EXPECT_FALSE(isKlogTraceLocation(":10"));
  EXPECT_FALSE(isKlogTraceLocation("main.go:x"));
}

TEST(ValuesTest, QuoteValueEscapesControlCharacters) {
  EXPECT_EQ(quoteValue("plain"), "\"plain\"");
  EXPECT_EQ(quoteValue(""), "\"\"");
  EXPECT_EQ(quoteValue("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(quoteValue("x\ny\x7f"), "\"x\\x0ay\\x7f\"");
}

TEST(SplitHostPortTest, SplitsHostAndPort) {
  Result<HostPort> hp = splitHostPort("169.254.169.254:80");
  ASSERT_TRUE(hp.has_value());
  EXPECT_EQ(hp->host, "169.254.169.254");
  EXPECT_EQ(hp->port, 80);
  hp = splitHostPort("[fd00::1]:8080");
  ASSERT_TRUE(hp.has_value());
  EXPECT_EQ(hp->host, "fd00::1");
  EXPECT_EQ(hp->port, 8080);
  for (const char* bad : {"", "host", "host:", ":80", "host:99999", "[]:80", "[zz]:80", "::1:80",
                          "[::1:80", "a b:80"}) {
    const Result<HostPort> r = splitHostPort(bad);
    ASSERT_FALSE(r.has_value()) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::InvalidArgument) << bad;
  }
}

}  // namespace
}  // namespace nmi::config
