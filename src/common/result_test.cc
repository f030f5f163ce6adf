#include "common/result.h"

#include <memory>
#include <string>

#include <gtest/gtest.h>

namespace nmi {
namespace {

Result<int> half(int v) {
  if (v % 2 != 0) {
    return makeError(ErrorCode::InvalidArgument, "odd");
  }
  return v / 2;
}

TEST(ResultTest, HoldsValueOrError) {
  const Result<int> ok = half(4);
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(*ok, 2);
  const Result<int> bad = half(3);
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code, ErrorCode::InvalidArgument);
  EXPECT_EQ(bad.error().message, "odd");
}

TEST(ResultTest, MovesOutMoveOnlyValues) {
  Result<std::unique_ptr<std::string>> r = std::make_unique<std::string>("x");
  const std::unique_ptr<std::string> p = std::move(r).value();
  EXPECT_EQ(*p, "x");
}

TEST(ResultTest, VoidResult) {
  const Result<void> ok;
  EXPECT_TRUE(ok.has_value());
  const Result<void> bad = makeError(ErrorCode::Timeout, "late");
  EXPECT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code, ErrorCode::Timeout);
}

TEST(ResultTest, NamesEveryErrorCode) {
  EXPECT_STREQ(errorCodeName(ErrorCode::PermissionDenied), "PermissionDenied");
  EXPECT_STREQ(errorCodeName(ErrorCode::Cancelled), "Cancelled");
}

}  // namespace
}  // namespace nmi
