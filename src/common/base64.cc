#include "common/base64.h"

#include <array>
#include <cstdint>

namespace nmi {

namespace {

constexpr std::string_view kStandard =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr std::string_view kUrl =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

constexpr int kInvalid = -1;

constexpr std::array<int, 256> makeDecodeTable() {
  std::array<int, 256> table{};
  for (int& v : table) {
    v = kInvalid;
  }
  for (std::size_t i = 0; i < kStandard.size(); ++i) {
    table[static_cast<unsigned char>(kStandard[i])] = static_cast<int>(i);
    table[static_cast<unsigned char>(kUrl[i])] = static_cast<int>(i);
  }
  return table;
}

constexpr std::array<int, 256> kDecode = makeDecodeTable();

}  // namespace

std::string base64Encode(std::string_view bytes, Base64Alphabet alphabet, bool pad) {
  const std::string_view chars = alphabet == Base64Alphabet::Standard ? kStandard : kUrl;
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const std::uint32_t v =
        (static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i])) << 16U) |
        (static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8U) |
        static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i + 2]));
    out += chars[(v >> 18U) & 63U];
    out += chars[(v >> 12U) & 63U];
    out += chars[(v >> 6U) & 63U];
    out += chars[v & 63U];
  }
  const std::size_t rest = bytes.size() - i;
  if (rest > 0) {
    std::uint32_t v = static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i])) << 16U;
    if (rest == 2) {
      v |= static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8U;
    }
    out += chars[(v >> 18U) & 63U];
    out += chars[(v >> 12U) & 63U];
    if (rest == 2) {
      out += chars[(v >> 6U) & 63U];
    }
    if (pad) {
      out.append(rest == 1 ? 2 : 1, '=');
    }
  }
  return out;
}

std::optional<std::string> base64Decode(std::string_view text) {
  while (!text.empty() && text.back() == '=') {
    text.remove_suffix(1);
  }
  if (text.size() % 4 == 1) {
    return std::nullopt;
  }
  std::string out;
  out.reserve(text.size() * 3 / 4);
  std::uint32_t acc = 0;
  int bits = 0;
  for (const char c : text) {
    const int v = kDecode[static_cast<unsigned char>(c)];
    if (v == kInvalid) {
      return std::nullopt;
    }
    acc = (acc << 6U) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> static_cast<unsigned>(bits)) & 0xFFU);
    }
  }
  return out;
}

}  // namespace nmi
