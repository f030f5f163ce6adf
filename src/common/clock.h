#pragma once

#include <chrono>
#include <cstdint>

namespace nmi {

using SystemTime = std::chrono::system_clock::time_point;
using MonotonicTime = std::chrono::steady_clock::time_point;

// Time source. Injected everywhere time matters so tests control it (FakeClock).
// Implementations are thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual SystemTime systemNow() const = 0;
  virtual MonotonicTime monotonicNow() const = 0;
};

class SystemClock final : public Clock {
 public:
  SystemTime systemNow() const override { return std::chrono::system_clock::now(); }
  MonotonicTime monotonicNow() const override { return std::chrono::steady_clock::now(); }
};

inline std::int64_t toUnixSeconds(SystemTime t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

inline SystemTime fromUnixSeconds(std::int64_t s) {
  return SystemTime{std::chrono::seconds{s}};
}

}  // namespace nmi
