#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace nmi {

enum class Base64Alphabet { Standard, Url };

// RFC 4648 base64. Encoding pads with '=' unless `pad` is false.
std::string base64Encode(std::string_view bytes, Base64Alphabet alphabet = Base64Alphabet::Standard,
                         bool pad = true);

// Decodes either alphabet ('+/' or '-_'), padded or not. Whitespace is not accepted (callers
// strip it where a format allows it). Returns nullopt on any invalid character or length.
std::optional<std::string> base64Decode(std::string_view text);

}  // namespace nmi
