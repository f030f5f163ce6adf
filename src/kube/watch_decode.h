#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/result.h"

namespace nmi::kube {

// ---- Newline-delimited JSON framing of a watch stream ------------------------------------------

// Splits a byte stream into lines ("\n"-terminated; a trailing "\r" is dropped; empty lines are
// skipped). Bytes may arrive in chunks of any size. A line longer than max_line bytes is an error
// (ResourceExhausted) and the splitter stays failed. Pure; not thread-safe.
class LineSplitter {
 public:
  explicit LineSplitter(std::size_t max_line) : max_line_(max_line) {}

  // Calls on_line for each line completed by `chunk`; stops early, returning false, when
  // on_line returns false.
  Result<bool> feed(std::string_view chunk, const std::function<bool(std::string_view)>& on_line);
  // The bytes of an unfinished line (the stream ended without a newline).
  std::string_view pending() const { return pending_; }

 private:
  std::size_t max_line_;
  std::string pending_;
  bool failed_ = false;
};

// ---- Watch events ------------------------------------------------------------------------------

enum class EventType : std::uint8_t { Added, Modified, Deleted, Bookmark, Error };

const char* eventTypeName(EventType type);

// NOLINTNEXTLINE(bugprone-exception-escape): nlohmann::json's destructor, as everywhere
struct WatchEvent {
  EventType type = EventType::Added;
  nlohmann::json object;  // an object (checked)
};

// Decodes one watch line: {"type": <ADDED|MODIFIED|DELETED|BOOKMARK|ERROR>, "object": {...}}.
// Errors (InvalidArgument): not JSON, not an object, a missing or unknown type, a missing or
// non-object `object`. Messages never quote the line.
Result<WatchEvent> decodeWatchEvent(std::string_view line);

// metadata.resourceVersion of an object, or "" when absent or not a string.
std::string resourceVersionOf(const nlohmann::json& object);

// ---- API Status objects ------------------------------------------------------------------------

// A meta/v1 Status (an ERROR event's object, or the body of an error answer).
struct ApiStatus {
  int code = 0;         // status.code (0 when absent)
  std::string reason;   // status.reason ("Expired", "Forbidden", ...)
  std::string message;  // status.message, control characters replaced, at most 512 bytes
};

ApiStatus decodeStatus(const nlohmann::json& object);
// The Status in an error answer's body; empty fields when the body is not one.
ApiStatus decodeStatusBody(std::string_view body);

// ---- Errors of API requests --------------------------------------------------------------------

// A failed API request: the Error (its code says what to do: PermissionDenied, NotFound,
// Unavailable, ResourceExhausted, Timeout, Cancelled, InvalidArgument) plus what a retry loop
// needs.
struct ApiError {
  Error error;
  unsigned http_status = 0;  // 0: no HTTP answer (transport failure)
  bool gone = false;  // 410 Gone (HTTP or ERROR event): the resource version is too old; relist
  std::optional<std::chrono::seconds> retry_after;  // from a 429 answer
};

// Maps an HTTP status of the API server to an error (nullopt for 2xx). `what` prefixes the
// message ("list pods"); the Status message from the body is appended. 401/403 →
// PermissionDenied, 404 → NotFound, 410 → Unavailable with gone, 429 → ResourceExhausted with
// retry_after, 5xx and anything else → Unavailable. Pure.
std::optional<ApiError> classifyStatus(unsigned status, std::string_view body,
                                       std::optional<std::chrono::seconds> retry_after,
                                       std::string_view what);

// Retry-After in delta-seconds; nullopt for anything else (HTTP dates are not used by the API
// server). Values are capped at one hour.
std::optional<std::chrono::seconds> parseRetryAfter(std::string_view value);

// ---- Lists -------------------------------------------------------------------------------------

struct ListMeta {
  std::string resource_version;  // metadata.resourceVersion
  std::string continue_token;    // metadata.continue
  std::size_t items = 0;         // entries of `items` seen (decodable or not)
};

// Parses a List body ({"metadata": {...}, "items": [...]}) item by item: each entry of `items` is
// passed to on_item as soon as it is parsed and then discarded, so memory holds one item at a
// time, never the whole list. Errors (InvalidArgument): not JSON, not an object, items not an
// array, an item that is not an object, nesting deeper than 64.
Result<ListMeta> decodeList(std::string_view body,
                            const std::function<void(const nlohmann::json& item)>& on_item);

}  // namespace nmi::kube
