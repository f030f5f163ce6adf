#include "kube/watch_decode.h"

#include <algorithm>
#include <utility>

namespace nmi::kube {

using nlohmann::json;

namespace {

constexpr std::size_t kMaxStatusMessage = 512;
constexpr int kMaxListDepth = 64;
constexpr std::int64_t kMaxRetryAfterSeconds = 3600;

std::string printable(std::string_view text, std::size_t max) {
  std::string out;
  for (const char c : text.substr(0, max)) {
    const auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7f) ? ' ' : c;
  }
  if (text.size() > max) {
    out += "...";
  }
  return out;
}

const std::string* stringField(const json& object, const char* key) {
  if (!object.is_object()) {
    return nullptr;
  }
  const auto it = object.find(key);
  if (it == object.end() || !it->is_string()) {
    return nullptr;
  }
  return &it->get_ref<const std::string&>();
}

}  // namespace

Result<bool> LineSplitter::feed(std::string_view chunk,
                                const std::function<bool(std::string_view)>& on_line) {
  if (failed_) {
    return makeError(ErrorCode::ResourceExhausted, "watch stream: an earlier line was too long");
  }
  while (!chunk.empty()) {
    const std::size_t newline = chunk.find('\n');
    const std::string_view part = chunk.substr(0, newline);
    if (pending_.size() + part.size() > max_line_) {
      failed_ = true;
      pending_.clear();
      return makeError(ErrorCode::ResourceExhausted,
                       "watch event longer than " + std::to_string(max_line_) + " bytes");
    }
    if (newline == std::string_view::npos) {
      pending_.append(part);
      return true;
    }
    chunk.remove_prefix(newline + 1);
    std::string_view line = part;
    if (!pending_.empty()) {
      pending_.append(part);
      line = pending_;
    }
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    bool go_on = true;
    if (!line.empty()) {
      go_on = on_line(line);
    }
    pending_.clear();
    if (!go_on) {
      return false;
    }
  }
  return true;
}

const char* eventTypeName(EventType type) {
  switch (type) {
    case EventType::Added:
      return "ADDED";
    case EventType::Modified:
      return "MODIFIED";
    case EventType::Deleted:
      return "DELETED";
    case EventType::Bookmark:
      return "BOOKMARK";
    case EventType::Error:
      return "ERROR";
  }
  return "?";
}

Result<WatchEvent> decodeWatchEvent(std::string_view line) {
  json parsed = json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    return makeError(ErrorCode::InvalidArgument, "watch event: not valid JSON");
  }
  if (!parsed.is_object()) {
    return makeError(ErrorCode::InvalidArgument,
                     std::string("watch event: expected an object, got ") + parsed.type_name());
  }
  const std::string* type = stringField(parsed, "type");
  if (type == nullptr) {
    return makeError(ErrorCode::InvalidArgument, "watch event: type: expected a string");
  }
  WatchEvent event;
  if (*type == "ADDED") {
    event.type = EventType::Added;
  } else if (*type == "MODIFIED") {
    event.type = EventType::Modified;
  } else if (*type == "DELETED") {
    event.type = EventType::Deleted;
  } else if (*type == "BOOKMARK") {
    event.type = EventType::Bookmark;
  } else if (*type == "ERROR") {
    event.type = EventType::Error;
  } else {
    return makeError(ErrorCode::InvalidArgument,
                     "watch event: unknown type \"" + printable(*type, 32) + "\"");
  }
  const auto object = parsed.find("object");
  if (object == parsed.end() || !object->is_object()) {
    return makeError(ErrorCode::InvalidArgument, "watch event: object: expected an object");
  }
  event.object = std::move(*object);
  return event;
}

std::string resourceVersionOf(const json& object) {
  if (!object.is_object()) {
    return {};
  }
  const auto metadata = object.find("metadata");
  if (metadata == object.end()) {
    return {};
  }
  const std::string* rv = stringField(*metadata, "resourceVersion");
  return rv == nullptr ? std::string{} : *rv;
}

ApiStatus decodeStatus(const json& object) {
  ApiStatus status;
  if (!object.is_object()) {
    return status;
  }
  if (const auto code = object.find("code"); code != object.end() && code->is_number_integer()) {
    const auto value = code->get<std::int64_t>();
    if (value >= 0 && value < 1000) {
      status.code = static_cast<int>(value);
    }
  }
  if (const std::string* reason = stringField(object, "reason")) {
    status.reason = printable(*reason, 64);
  }
  if (const std::string* message = stringField(object, "message")) {
    status.message = printable(*message, kMaxStatusMessage);
  }
  return status;
}

ApiStatus decodeStatusBody(std::string_view body) {
  const json parsed = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    return {};
  }
  return decodeStatus(parsed);
}

std::optional<std::chrono::seconds> parseRetryAfter(std::string_view value) {
  while (!value.empty() && value.front() == ' ') {
    value.remove_prefix(1);
  }
  while (!value.empty() && value.back() == ' ') {
    value.remove_suffix(1);
  }
  if (value.empty()) {
    return std::nullopt;
  }
  // Digits only (no sign: "-0" is not delta-seconds), saturating at the cap so that a value too
  // large for an integer is still "wait the longest".
  std::int64_t seconds = 0;
  for (const char c : value) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
    seconds = std::min(seconds * 10 + (c - '0'), kMaxRetryAfterSeconds);
  }
  return std::chrono::seconds(seconds);
}

std::optional<ApiError> classifyStatus(unsigned status, std::string_view body,
                                       std::optional<std::chrono::seconds> retry_after,
                                       std::string_view what) {
  if (status >= 200 && status < 300) {
    return std::nullopt;
  }
  ApiError out;
  out.http_status = status;
  const ApiStatus parsed = decodeStatusBody(body);
  std::string message = std::string(what) + ": HTTP " + std::to_string(status);
  if (!parsed.reason.empty()) {
    message += " " + parsed.reason;
  }
  if (!parsed.message.empty()) {
    message += ": " + parsed.message;
  }
  ErrorCode code = ErrorCode::Unavailable;
  switch (status) {
    case 401:
    case 403:
      code = ErrorCode::PermissionDenied;
      break;
    case 404:
      code = ErrorCode::NotFound;
      break;
    case 410:
      out.gone = true;
      break;
    case 429:
      code = ErrorCode::ResourceExhausted;
      out.retry_after = retry_after;
      break;
    default:
      // A 503's Retry-After is not honoured: kube-apiserver answers 503 with Retry-After: 5 while
      // it installs its paths after a restart, and nmi should be back sooner than that.
      break;
  }
  out.error = makeError(code, std::move(message));
  return out;
}

Result<ListMeta> decodeList(std::string_view body,
                            const std::function<void(const json& item)>& on_item) {
  ListMeta meta;
  std::string key;  // the last key at depth 1
  bool in_items = false;
  std::optional<std::string> error;
  const auto fail = [&error](std::string why) {
    if (!error) {
      error = std::move(why);
    }
  };
  const json::parser_callback_t callback = [&](int depth, json::parse_event_t event,
                                               json& parsed) -> bool {
    if (error) {
      return false;
    }
    using Event = json::parse_event_t;
    if ((event == Event::object_start || event == Event::array_start) && depth > kMaxListDepth) {
      fail("nested deeper than " + std::to_string(kMaxListDepth));
      return false;
    }
    if (depth == 0 && (event == Event::array_start || event == Event::value)) {
      fail("expected an object");
      return false;
    }
    if (depth == 1 && event == Event::key) {
      key = parsed.is_string() ? parsed.get<std::string>() : std::string{};
      return true;
    }
    if (depth == 1 && key == "items") {
      if (event == Event::array_start) {
        in_items = true;
      } else if (event == Event::array_end) {
        in_items = false;
        return false;  // the items were handed out one by one
      } else if (event == Event::object_start || (event == Event::value && !parsed.is_null())) {
        fail("items: expected an array");
        return false;
      }
      return true;
    }
    if (in_items && depth == 2) {
      if (event == Event::value) {
        fail("items[" + std::to_string(meta.items) + "]: expected an object");
        return false;
      }
      if (event == Event::array_start) {
        fail("items[" + std::to_string(meta.items) + "]: expected an object");
        return false;
      }
      if (event == Event::object_end) {
        on_item(parsed);
        ++meta.items;
        return false;  // discard: memory holds one item at a time
      }
    }
    return true;
  };
  const json parsed = json::parse(body.begin(), body.end(), callback, /*allow_exceptions=*/false);
  if (error) {
    return makeError(ErrorCode::InvalidArgument, "list: " + *error);
  }
  if (parsed.is_discarded() || !parsed.is_object()) {
    return makeError(ErrorCode::InvalidArgument, "list: not a valid JSON object");
  }
  if (const auto metadata = parsed.find("metadata"); metadata != parsed.end()) {
    if (const std::string* rv = stringField(*metadata, "resourceVersion")) {
      meta.resource_version = *rv;
    }
    if (const std::string* token = stringField(*metadata, "continue")) {
      meta.continue_token = *token;
    }
  }
  return meta;
}

}  // namespace nmi::kube
