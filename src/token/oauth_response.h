#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "common/result.h"
#include "token/types.h"

namespace nmi::token {

// Parsing of the OAuth token responses of IMDS, Azure AD v1 and ADFS. Pure and thread-safe; the
// JSON parser never throws (malformed input is an error value).

// Largest `expires_in` / `ext_expires_in` accepted: ten years. Anything larger is hostile.
inline constexpr std::int64_t kMaxLifetimeSeconds = 10LL * 365 * 24 * 3600;
// Largest epoch second accepted (9999-12-31T23:59:59Z).
inline constexpr std::int64_t kMaxEpochSeconds = 253402300799LL;

// Parses a successful token response. Every numeric field may be a JSON number or a string of
// decimal digits; an empty string counts as absent. Rules:
//   * access_token: required, a non-empty string.
//   * expires_on: epoch seconds (number or digit string), or adal's date forms
//     "1/2/2006 15:04:05 PM +00:00" and "1/2/2006 15:04:05 +00:00"; when absent (ADFS),
//     `now` + expires_in; when neither is present, an error.
//   * not_before: optional epoch seconds (default `now`); ext_expires_in: optional seconds.
//   * token_type, resource, client_id: optional strings (token_type defaults to "Bearer").
// A present field of the wrong type or with a malformed value is an error, and so is an expiry
// not after `now`. Times past SystemTime's range (2262-04-11T23:47:16Z) are clamped to its last
// second. Errors: Unavailable, with a message that never contains the token.
Result<AccessToken> parseTokenResponse(std::string_view body, SystemTime now);

// Parses an `expires_on` string (digits, or one of adal's two date forms) to epoch seconds.
std::optional<std::int64_t> parseExpiresOnText(std::string_view text);

// "error: error_description" from an OAuth error body ({"error":..., "error_description":...}),
// reduced to the first line of the description and to printable ASCII, at most ~300 characters;
// "" when the body is not such JSON. Never includes anything else from the body.
std::string describeOAuthError(std::string_view body);

}  // namespace nmi::token
