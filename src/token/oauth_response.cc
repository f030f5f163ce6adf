#include "token/oauth_response.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>

#include <nlohmann/json.hpp>

#include "common/civil_time.h"

namespace nmi::token {

namespace {

using Json = nlohmann::json;

constexpr std::size_t kMaxErrorChars = 100;
constexpr std::size_t kMaxDescriptionChars = 300;

Error malformed(std::string_view why) {
  return makeError(ErrorCode::Unavailable, "malformed token response: " + std::string(why));
}

std::optional<std::int64_t> parseDigits(std::string_view text) {
  if (text.empty() || text.size() > 19) {
    return std::nullopt;
  }
  std::int64_t value = 0;
  const auto* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc{} || ptr != end || value < 0) {
    return std::nullopt;
  }
  // from_chars accepts a leading '-' only; digits only are wanted.
  if (text.front() < '0' || text.front() > '9') {
    return std::nullopt;
  }
  return value;
}

// What a numeric field holds: absent (missing, null or ""), a non-negative integer, or invalid.
struct NumberField {
  bool present = false;
  bool valid = true;
  std::int64_t value = 0;
};

NumberField numberField(const Json& doc, const char* name, std::int64_t max) {
  NumberField f;
  const auto it = doc.find(name);
  if (it == doc.end() || it->is_null() ||
      (it->is_string() && it->get_ref<const std::string&>().empty())) {
    return f;
  }
  f.present = true;
  std::optional<std::int64_t> v;
  if (it->is_number_unsigned()) {
    const auto u = it->get<std::uint64_t>();
    if (u <= static_cast<std::uint64_t>(max)) {
      v = static_cast<std::int64_t>(u);
    }
  } else if (it->is_number_integer()) {
    v = it->get<std::int64_t>();
  } else if (it->is_number_float()) {
    // adal reads JSON numbers as float64 and truncates them.
    const double d = it->get<double>();
    if (std::isfinite(d) && d >= 0 && d <= static_cast<double>(max)) {
      v = static_cast<std::int64_t>(d);
    }
  } else if (it->is_string()) {
    v = parseDigits(it->get_ref<const std::string&>());
  }
  if (!v || *v < 0 || *v > max) {
    f.valid = false;
    return f;
  }
  f.value = *v;
  return f;
}

// Optional string field: absent -> nullopt; wrong type -> error flag.
struct StringField {
  bool valid = true;
  std::optional<std::string> value;
};

StringField stringField(const Json& doc, const char* name) {
  StringField f;
  const auto it = doc.find(name);
  if (it == doc.end() || it->is_null()) {
    return f;
  }
  if (!it->is_string()) {
    f.valid = false;
    return f;
  }
  f.value = it->get<std::string>();
  return f;
}

// Go layouts "1/2/2006 15:04:05 PM -07:00" and "1/2/2006 15:04:05 -07:00" as time.Parse reads
// them: month, day and hour take one or two digits, minutes and seconds exactly two; with PM an
// hour below 12 gets 12 added, with AM hour 12 becomes 0.
std::optional<std::int64_t> parseAdalDate(std::string_view s) {
  const auto month = takeDigitsThen(s, 1, 2, '/');
  const auto day = takeDigitsThen(s, 1, 2, '/');
  const auto year = takeDigitsThen(s, 4, 4, ' ');
  auto hour = takeDigitsThen(s, 1, 2, ':');
  const auto minute = takeDigitsThen(s, 2, 2, ':');
  const auto second = takeDigitsThen(s, 2, 2, ' ');
  if (!month || !day || !year || !hour || !minute || !second) {
    return std::nullopt;
  }
  if (s.starts_with("PM ") || s.starts_with("AM ")) {
    const bool pm = s.front() == 'P';
    // The layout's hour is "15" (0-23), so Go leaves 13-23 as they are whatever the marker says.
    if (pm && *hour < 12) {
      *hour += 12;
    } else if (!pm && *hour == 12) {
      *hour = 0;
    }
    s.remove_prefix(3);
  }
  const auto offset = takeUtcOffset(s);
  if (!offset || !s.empty()) {
    return std::nullopt;
  }
  const auto epoch = epochSecondsAt({*year, *month, *day, *hour, *minute, *second}, *offset);
  if (!epoch || *epoch < 0 || *epoch > kMaxEpochSeconds) {
    return std::nullopt;
  }
  return epoch;
}

std::string printable(std::string_view text, std::size_t max) {
  std::string out;
  for (const char c : text) {
    if (c == '\r' || c == '\n' || out.size() >= max) {
      break;
    }
    const auto u = static_cast<unsigned char>(c);
    out += (u >= 0x20 && u < 0x7F) ? c : '?';
  }
  return out;
}

}  // namespace

std::optional<std::int64_t> parseExpiresOnText(std::string_view text) {
  if (auto digits = parseDigits(text)) {
    if (*digits > kMaxEpochSeconds) {
      return std::nullopt;
    }
    return digits;
  }
  return parseAdalDate(text);
}

Result<AccessToken> parseTokenResponse(std::string_view body, SystemTime now) {
  const Json doc = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    return malformed("not JSON");
  }
  if (!doc.is_object()) {
    return malformed("not a JSON object");
  }
  AccessToken token;
  const auto access = doc.find("access_token");
  if (access == doc.end() || !access->is_string() ||
      access->get_ref<const std::string&>().empty()) {
    return malformed("access_token missing, empty or not a string");
  }
  token.access_token = access->get<std::string>();

  for (const auto& [name, target] :
       {std::pair{"token_type", &token.token_type}, std::pair{"resource", &token.resource},
        std::pair{"client_id", &token.client_id}}) {
    auto field = stringField(doc, name);
    if (!field.valid) {
      return malformed(std::string(name) + " is not a string");
    }
    if (field.value && !field.value->empty()) {
      *target = std::move(*field.value);
    }
  }

  const std::int64_t now_s = toUnixSeconds(now);
  std::optional<std::int64_t> expires_on;
  if (const auto it = doc.find("expires_on");
      it != doc.end() && it->is_string() && !it->get_ref<const std::string&>().empty()) {
    expires_on = parseExpiresOnText(it->get_ref<const std::string&>());
    if (!expires_on) {
      return malformed("expires_on is not epoch seconds or a known date form");
    }
  } else {
    const NumberField f = numberField(doc, "expires_on", kMaxEpochSeconds);
    if (!f.valid) {
      return malformed("expires_on is not a valid number");
    }
    if (f.present) {
      expires_on = f.value;
    }
  }
  if (!expires_on) {
    const NumberField in = numberField(doc, "expires_in", kMaxLifetimeSeconds);
    if (!in.valid) {
      return malformed("expires_in is not a valid number");
    }
    if (!in.present) {
      return malformed("neither expires_on nor expires_in present");
    }
    expires_on = now_s + in.value;
  } else if (const NumberField in = numberField(doc, "expires_in", kMaxLifetimeSeconds);
             !in.valid) {
    return malformed("expires_in is not a valid number");
  }
  if (*expires_on <= now_s) {
    return malformed("token already expired");
  }
  token.expires_on = clampedSystemTime(*expires_on);

  const NumberField nbf = numberField(doc, "not_before", kMaxEpochSeconds);
  if (!nbf.valid) {
    return malformed("not_before is not a valid number");
  }
  token.not_before = nbf.present ? clampedSystemTime(nbf.value) : clampedSystemTime(now_s);

  const NumberField ext = numberField(doc, "ext_expires_in", kMaxLifetimeSeconds);
  if (!ext.valid) {
    return malformed("ext_expires_in is not a valid number");
  }
  token.ext_expires_in = ext.present ? ext.value : 0;
  return token;
}

std::string describeOAuthError(std::string_view body) {
  const Json doc = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return {};
  }
  const auto error = doc.find("error");
  if (error == doc.end() || !error->is_string()) {
    return {};
  }
  std::string out = printable(error->get_ref<const std::string&>(), kMaxErrorChars);
  const auto description = doc.find("error_description");
  if (description != doc.end() && description->is_string()) {
    const std::string text =
        printable(description->get_ref<const std::string&>(), kMaxDescriptionChars);
    if (!text.empty()) {
      out += ": ";
      out += text;
    }
  }
  return out;
}

}  // namespace nmi::token
