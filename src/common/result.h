#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace nmi {

// What went wrong, by kind. The HTTP status a pod sees is derived from it in one place
// (imds/error_mapping), never from the message.
enum class ErrorCode {
  InvalidArgument,    // malformed input: bad query, bad flag, bad object
  NotFound,           // the thing asked for does not exist (yet)
  PermissionDenied,   // exists, but the caller may not have it
  Unavailable,        // a dependency is down or not ready; retrying may help
  Timeout,            // a deadline passed
  Upstream,           // an upstream answered with an HTTP error (a definite "no")
  Cancelled,          // the caller went away
  ResourceExhausted,  // a limit was reached (per-pod caps); retry later
  Internal,           // a bug or an impossible state
};

const char* errorCodeName(ErrorCode code);

struct Error {
  ErrorCode code = ErrorCode::Internal;
  std::string message;  // for logs only; never sent to a pod
};

// Result<T>: a value or an Error, shaped like std::expected (C++23).
// NOLINTBEGIN(readability-identifier-naming): std::expected's method names.
template <class T>
class [[nodiscard]] Result {
 public:
  // Implicit on purpose, like std::expected: `return value;` and `return error;` both work.
  // NOLINTNEXTLINE(google-explicit-constructor)
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}
  // NOLINTNEXTLINE(google-explicit-constructor)
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}

  bool has_value() const { return v_.index() == 0; }
  explicit operator bool() const { return has_value(); }

  T& value() & {
    assert(has_value());
    return std::get<0>(v_);
  }
  const T& value() const& {
    assert(has_value());
    return std::get<0>(v_);
  }
  T&& value() && {
    assert(has_value());
    return std::get<0>(std::move(v_));
  }
  const Error& error() const& {
    assert(!has_value());
    return std::get<1>(v_);
  }
  Error&& error() && {
    assert(!has_value());
    return std::get<1>(std::move(v_));
  }

  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  // NOLINTNEXTLINE(google-explicit-constructor): implicit, as Result<T>'s, to `return error;`
  Result(Error error) : error_(std::move(error)), ok_(false) {}

  bool has_value() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const& {
    assert(!ok_);
    return error_;
  }

 private:
  Error error_;
  bool ok_ = true;
};
// NOLINTEND(readability-identifier-naming)

inline Error makeError(ErrorCode code, std::string message) {
  return Error{code, std::move(message)};
}

}  // namespace nmi
