// libFuzzer target for the token-response parser (token/oauth_response.h). The input is an HTTP
// body from IMDS or Azure AD; `now` is 2024-01-01 and a second instant chosen from the input.
// Aborts when one of these does not hold:
//   * an accepted response has a non-empty access_token (the body's), a non-empty token_type, an
//     expiry after `now`, ext_expires_in within [0, kMaxLifetimeSeconds], and not_before `now`
//     when the body has none;
//   * the expiry is the body's expires_on when that is a number or digits, and `now` +
//     expires_in when the body has no expires_on;
//   * time shifts: parsed at a later `now`, a relative expiry (expires_in only) moves by the same
//     amount; an absolute one stays, and is refused once `now` reaches it;
//   * round trip: the token written back as IMDS writes it (every field a string) parses to the
//     same token, and so does its expiry written in either of adal's date forms (with any UTC
//     offset, 12- or 24-hour clock), as formatted here with gmtime_r; parseExpiresOnText reads
//     back the decimal expiry;
//   * a refusal is Unavailable and its message never contains the access token;
//   * describeOAuthError: at most ~400 printable ASCII characters, "" unless the body is an object
//     with a string `error`.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>
#include <time.h>  // NOLINT(modernize-deprecated-headers): gmtime_r is POSIX, not in <ctime>

#include "common/clock.h"
#include "fuzz_support.h"
#include "json_support.h"
#include "token/oauth_response.h"

namespace {

using nlohmann::json;
using nmi::fuzz::check;
using nmi::token::AccessToken;
using nmi::token::kMaxEpochSeconds;
using nmi::token::kMaxLifetimeSeconds;

constexpr std::int64_t kNow = 1704067200;  // 2024-01-01T00:00:00Z
// SystemTime counts nanoseconds in an int64: its last whole second (2262-04-11).
constexpr std::int64_t kLastRepresentableSecond = 9223372036;

// A numeric field as the header defines it: a JSON number or a string of digits; nullopt when
// absent, null, "" or not such a value.
std::optional<std::int64_t> numberIn(const json& doc, const char* name) {
  const auto it = doc.find(name);
  if (it == doc.end()) {
    return std::nullopt;
  }
  if (it->is_number_unsigned()) {
    const auto u = it->get<std::uint64_t>();
    return u <= static_cast<std::uint64_t>(INT64_MAX) ? std::optional(static_cast<std::int64_t>(u))
                                                      : std::nullopt;
  }
  if (it->is_number_integer()) {
    return it->get<std::int64_t>();
  }
  if (it->is_number_float()) {
    const double d = it->get<double>();
    return std::isfinite(d) && d >= 0 && d < 9.2e18 ? std::optional(static_cast<std::int64_t>(d))
                                                    : std::nullopt;
  }
  if (it->is_string()) {
    const auto& s = it->get_ref<const std::string&>();
    if (s.empty() || s.size() > 18 || s.find_first_not_of("0123456789") != std::string::npos) {
      return std::nullopt;
    }
    return std::stoll(s);
  }
  return std::nullopt;
}

bool present(const json& doc, const char* name) {
  const auto it = doc.find(name);
  return it != doc.end() && !it->is_null() && !(it->is_string() && it->get<std::string>().empty());
}

nmi::SystemTime at(std::int64_t seconds) {
  return nmi::fromUnixSeconds(seconds);
}

bool sameToken(const AccessToken& a, const AccessToken& b) {
  return a.access_token == b.access_token && a.token_type == b.token_type &&
         a.resource == b.resource && a.client_id == b.client_id && a.expires_on == b.expires_on &&
         a.not_before == b.not_before && a.ext_expires_in == b.ext_expires_in;
}

// The token as IMDS writes it: every field a string.
std::string imdsBody(const AccessToken& token) {
  json body = {{"access_token", token.access_token},
               {"token_type", token.token_type},
               {"expires_on", std::to_string(nmi::toUnixSeconds(token.expires_on))},
               {"not_before", std::to_string(nmi::toUnixSeconds(token.not_before))},
               {"ext_expires_in", std::to_string(token.ext_expires_in)}};
  if (!token.resource.empty()) {
    body["resource"] = token.resource;
  }
  if (!token.client_id.empty()) {
    body["client_id"] = token.client_id;
  }
  return body.dump();
}

// adal's "1/2/2006 15:04:05 PM -07:00" or "1/2/2006 15:04:05 -07:00" for `epoch`, at a UTC offset
// of offset_minutes (|offset| < 24h); nullopt when the local year is not four digits.
std::optional<std::string> adalDate(std::int64_t epoch, int offset_minutes, unsigned style) {
  const auto local = static_cast<time_t>(epoch + std::int64_t{offset_minutes} * 60);
  tm parts{};
  if (gmtime_r(&local, &parts) == nullptr || parts.tm_year + 1900 < 1000 ||
      parts.tm_year + 1900 > 9999) {
    return std::nullopt;
  }
  int hour = parts.tm_hour;
  const char* marker = "";
  if (style % 3 == 1) {  // 24-hour clock with a marker, as Go's "15:04:05 PM" prints
    marker = hour >= 12 ? " PM" : " AM";
  } else if (style % 3 == 2) {  // 12-hour clock
    marker = hour >= 12 ? " PM" : " AM";
    hour = hour % 12 == 0 ? 12 : hour % 12;
  }
  const bool pad = (style / 3) % 2 == 1;  // month, day and hour take one or two digits
  const int offset = offset_minutes < 0 ? -offset_minutes : offset_minutes;
  std::array<char, 96> text{};
  std::snprintf(
      text.data(), text.size(),
      pad ? "%02d/%02d/%04d %02d:%02d:%02d%s %c%02d:%02d" : "%d/%d/%04d %d:%02d:%02d%s %c%02d:%02d",
      parts.tm_mon + 1, parts.tm_mday, parts.tm_year + 1900, hour, parts.tm_min, parts.tm_sec,
      marker, offset_minutes < 0 ? '-' : '+', offset / 60, offset % 60);
  return std::string(text.data());
}

void checkRefusal(const nmi::Error& error, const json& doc, std::string_view body,
                  nmi::SystemTime now, std::string_view input) {
  check(error.code == nmi::ErrorCode::Unavailable, "a refused response is not Unavailable", input);
  if (!doc.is_object() || !doc.contains("access_token") || !doc["access_token"].is_string()) {
    return;
  }
  const auto& token = doc["access_token"].get_ref<const std::string&>();
  if (token.size() < 8 || error.message.find(token) == std::string::npos ||
      nmi::fuzz::openBrackets(body) > 256) {
    return;
  }
  // The message may hold the token's text by coincidence; with another token, it must not
  // change to hold that one.
  json changed = doc;
  changed["access_token"] = token + "~changed~";
  const auto again = nmi::token::parseTokenResponse(changed.dump(), now);
  check(again.has_value() || again.error().message.find("~changed~") == std::string::npos,
        "a refusal's message quotes the access token", body);
}

void checkAccepted(const AccessToken& token, const json& doc, std::int64_t now,
                   std::string_view input, nmi::fuzz::Choices& choices, bool shift) {
  check(!token.access_token.empty() && token.access_token == doc["access_token"],
        "the token is not the body's non-empty access_token", input);
  check(!token.token_type.empty(), "an empty token_type", input);
  const std::int64_t expires_on = nmi::toUnixSeconds(token.expires_on);
  check(expires_on > now, "an accepted token is already expired", input);
  check(token.ext_expires_in >= 0 && token.ext_expires_in <= kMaxLifetimeSeconds,
        "ext_expires_in out of range", input);
  if (!present(doc, "not_before")) {
    check(nmi::toUnixSeconds(token.not_before) == now, "not_before is not now when absent", input);
  }
  const bool absolute = present(doc, "expires_on");
  if (absolute) {
    const auto it = doc.find("expires_on");
    const bool date_text = it->is_string() && numberIn(doc, "expires_on") == std::nullopt;
    if (!date_text) {
      const std::optional<std::int64_t> want = numberIn(doc, "expires_on");
      check(want.has_value() && *want <= kMaxEpochSeconds &&
                expires_on == std::min(*want, kLastRepresentableSecond),
            "the expiry is not the body's expires_on", input);
    }
  } else {
    const std::optional<std::int64_t> in = numberIn(doc, "expires_in");
    check(in.has_value() && expires_on == now + *in, "the expiry is not now + expires_in", input);
  }

  const auto back = nmi::token::parseExpiresOnText(std::to_string(expires_on));
  check(back == expires_on, "parseExpiresOnText does not read back the decimal expiry", input);
  const std::string body = imdsBody(token);
  const auto again = nmi::token::parseTokenResponse(body, at(now));
  check(again.has_value() && sameToken(*again, token),
        "the token written as IMDS writes it parses to another token", input);
  constexpr std::size_t kMaxOffsetMinutes = 23 * 60 + 59;
  const int offset = static_cast<int>(choices.between(0, 2 * kMaxOffsetMinutes)) -
                     static_cast<int>(kMaxOffsetMinutes);
  if (const auto date = adalDate(expires_on, offset, static_cast<unsigned>(choices.next() % 6))) {
    json dated = json::parse(body);
    dated["expires_on"] = *date;
    const auto from_date = nmi::token::parseTokenResponse(dated.dump(), at(now));
    check(from_date.has_value() && sameToken(*from_date, token),
          "the expiry written as an adal date parses to another token", input);
    check(nmi::token::parseExpiresOnText(*date) == expires_on,
          "parseExpiresOnText reads an adal date as another instant", input);
  }

  if (shift) {
    const auto later = now + static_cast<std::int64_t>(choices.between(1, kMaxLifetimeSeconds));
    const auto shifted = nmi::token::parseTokenResponse(input, at(later));
    if (absolute) {
      check(shifted.has_value() == (expires_on > later),
            "an absolute expiry is accepted after it, or refused before it", input);
      check(!shifted || shifted->expires_on == token.expires_on,
            "an absolute expiry moved with now", input);
    } else {
      check(shifted.has_value() &&
                nmi::toUnixSeconds(shifted->expires_on) - expires_on == later - now,
            "a relative expiry did not move with now", input);
    }
  }
}

void checkDescribe(const json& doc, std::string_view input) {
  const std::string described = nmi::token::describeOAuthError(input);
  for (const char c : described) {
    check(c >= 0x20 && c < 0x7f, "describeOAuthError returned a non-printable byte", input);
  }
  check(described.size() <= 100 + 2 + 300, "describeOAuthError's text is too long", input);
  const bool applicable =
      !doc.is_discarded() && doc.is_object() && doc.contains("error") && doc["error"].is_string();
  check(applicable || described.empty(), "describeOAuthError described a non-OAuth-error body",
        input);
}

}  // namespace

// NOLINTNEXTLINE(readability-identifier-naming): the name libFuzzer calls.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input = nmi::fuzz::asText(data, size);
  nmi::fuzz::Choices choices(nmi::fuzz::hashOf(input));
  const json doc = json::parse(input, nullptr, /*allow_exceptions=*/false);

  // 2024-01-01, and an instant between 1970 and 2242.
  const std::int64_t instants[] = {kNow, static_cast<std::int64_t>(choices.between(0, 8589934592))};
  for (const std::int64_t now : instants) {
    const auto token = nmi::token::parseTokenResponse(input, at(now));
    if (token) {
      check(!doc.is_discarded() && doc.is_object(), "a response that is not an object is accepted",
            input);
      checkAccepted(*token, doc, now, input, choices, now == kNow);
    } else {
      checkRefusal(token.error(), doc, input, at(now), input);
    }
  }
  checkDescribe(doc, input);
  return 0;
}
