#pragma once

// Helpers shared by the fuzz targets: failing loudly, deterministic choices derived from the
// input, and checks on error messages. Header-only; no libFuzzer dependency, so the targets also
// build as replay binaries with any compiler.

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace nmi::fuzz {

// Reports a broken invariant with a printable excerpt of the input and aborts, which libFuzzer
// and the replay main both treat as a failure.
[[noreturn]] inline void violated(std::string_view what, std::string_view input) {
  std::string shown;
  for (const char c : input.substr(0, 400)) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f && c != '\\') {
      shown += c;
    } else {
      std::array<char, 5> hex{};
      std::snprintf(hex.data(), hex.size(), "\\x%02x", u);
      shown += hex.data();
    }
  }
  std::fprintf(stderr, "invariant violated: %.*s\ninput (%zu bytes): %s%s\n",
               static_cast<int>(what.size()), what.data(), input.size(), shown.c_str(),
               input.size() > 400 ? "..." : "");
  std::abort();
}

inline void check(bool condition, std::string_view what, std::string_view input) {
  if (!condition) {
    violated(what, input);
  }
}

inline std::string_view asText(const std::uint8_t* data, std::size_t size) {
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): bytes as chars.
  return {reinterpret_cast<const char*>(data), size};
}

// FNV-1a: a deterministic "random" choice per input (chunk sizes, limits, clocks), so that a
// crash reproduces from the input file alone.
inline std::uint64_t hashOf(std::string_view text) {
  std::uint64_t h = 14695981039346656037ULL;
  for (const char c : text) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ULL;
  }
  return h;
}

// xorshift64*: a stream of choices from one seed.
class Choices {
 public:
  explicit Choices(std::uint64_t seed) : state_(seed == 0 ? 0x9E3779B97F4A7C15ULL : seed) {}
  std::uint64_t next() {
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    return state_ * 2685821657736338717ULL;
  }
  // A value in [lo, hi].
  std::size_t between(std::size_t lo, std::size_t hi) {
    return lo + static_cast<std::size_t>(next() % (hi - lo + 1));
  }

 private:
  std::uint64_t state_;
};
// The same text with letters and digits shifted by one ("az9" -> "ba0"), other bytes kept: a
// value that must not follow its original into a message.
inline std::string shifted(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') {
      c = c == 'z' ? 'a' : static_cast<char>(c + 1);
    } else if (c >= 'A' && c <= 'Z') {
      c = c == 'Z' ? 'A' : static_cast<char>(c + 1);
    } else if (c >= '0' && c <= '9') {
      c = c == '9' ? '0' : static_cast<char>(c + 1);
    }
  }
  return out;
}

// True when `text` holds a byte below 0x20 or DEL.
inline bool hasControl(std::string_view text) {
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      return true;
    }
  }
  return false;
}

// The first window of `window` bytes of `message` that also occurs in `input`, or "" when none
// does: an error message that quotes its input.
inline std::string_view quotedWindow(std::string_view message, std::string_view input,
                                     std::size_t window) {
  if (message.size() < window || input.size() < window) {
    return {};
  }
  for (std::size_t i = 0; i + window <= message.size(); ++i) {
    const std::string_view piece = message.substr(i, window);
    if (input.find(piece) != std::string_view::npos) {
      return piece;
    }
  }
  return {};
}

}  // namespace nmi::fuzz
