// libFuzzer target for the decoding of the API server's answers (kube/watch_decode.h). The input
// is read as a watch stream, as each of its lines, and as a List body and a Status body. Aborts
// when one of these does not hold:
//   * LineSplitter: feeding the bytes in any chunking yields the lines, failure and pending tail
//     of a plain split of the whole text (\n-terminated, one trailing \r dropped, empty lines
//     skipped, a line over max_line fails), and it stays failed; a handler that stops at line k
//     has seen exactly the first k lines;
//   * decodeWatchEvent: an accepted line re-encoded as {"type":..,"object":..} decodes to the same
//     event, its object is an object; a refusal is InvalidArgument with a short message free of
//     control characters;
//   * decodeStatus: code in [0, 999], reason and message bounded and free of control characters;
//   * parseRetryAfter agrees with a plain reading of delta-seconds (digits between spaces, capped
//     at an hour);
//   * classifyStatus: nothing for 2xx; otherwise the status kept, `gone` exactly for 410, a
//     Retry-After only for 429, a bounded message starting with what was asked;
//   * decodeList agrees with an independent SAX pass over the same text: accepted exactly when the
//     text is an object whose `items` are arrays (or null) of objects and not nested too deep;
//     the items handed out are the DOM's items, in order, and the count and metadata match.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "fuzz_support.h"
#include "json_support.h"
#include "kube/watch_decode.h"

namespace {

using nlohmann::json;
using nmi::fuzz::check;

constexpr std::size_t kMaxLinesChecked = 64;
constexpr std::size_t kMaxNestingForRecursion = 256;

// ---- LineSplitter --------------------------------------------------------------------------

struct Split {
  std::vector<std::string> lines;
  bool failed = false;
  std::string pending;
};

// The lines of `text` read as a whole, without LineSplitter.
Split plainSplit(std::string_view text, std::size_t max_line) {
  Split out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    const std::size_t newline = text.find('\n', pos);
    const std::string_view raw = text.substr(pos, newline - pos);
    if (raw.size() > max_line) {
      out.failed = true;
      return out;
    }
    if (newline == std::string_view::npos) {
      out.pending = std::string(raw);
      return out;
    }
    std::string_view line = raw;
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    if (!line.empty()) {
      out.lines.emplace_back(line);
    }
    pos = newline + 1;
  }
  return out;
}

void checkSplitter(std::string_view input, nmi::fuzz::Choices& choices,
                   std::vector<std::string>& lines_out) {
  const std::size_t max_line =
      choices.next() % 4 == 0 ? choices.between(1, 64) : std::max<std::size_t>(input.size(), 1);
  const Split expected = plainSplit(input, max_line);

  nmi::kube::LineSplitter splitter(max_line);
  Split got;
  std::string_view rest = input;
  while (!rest.empty() && !got.failed) {
    const std::size_t n = choices.next() % 8 == 0 ? rest.size() : choices.between(1, 48);
    const std::string_view chunk = rest.substr(0, n);
    rest.remove_prefix(chunk.size());
    const auto fed = splitter.feed(chunk, [&got](std::string_view line) {
      got.lines.emplace_back(line);
      return true;
    });
    if (!fed) {
      check(fed.error().code == nmi::ErrorCode::ResourceExhausted,
            "LineSplitter failed with another code than ResourceExhausted", input);
      got.failed = true;
    } else {
      check(*fed, "LineSplitter stopped although the handler never asked", input);
    }
  }
  check(got.lines == expected.lines, "LineSplitter's lines differ from a plain split", input);
  check(got.failed == expected.failed, "LineSplitter fails where a plain split does not, or not",
        input);
  if (got.failed) {
    check(!splitter.feed("\n", [](std::string_view) { return true; }),
          "LineSplitter recovered after a failure", input);
  } else {
    check(splitter.pending() == expected.pending, "LineSplitter's pending tail differs", input);
  }

  // Stop at line k: exactly the first k lines are seen and feed says false.
  if (!expected.lines.empty()) {
    const std::size_t k = choices.between(1, expected.lines.size());
    nmi::kube::LineSplitter stopping(max_line);
    std::vector<std::string> seen;
    bool stopped = false;
    rest = input;
    while (!rest.empty() && !stopped) {
      const std::size_t n = choices.between(1, 64);
      const std::string_view chunk = rest.substr(0, n);
      rest.remove_prefix(chunk.size());
      const auto fed = stopping.feed(chunk, [&](std::string_view line) {
        seen.emplace_back(line);
        return seen.size() < k;
      });
      check(fed.has_value(), "LineSplitter failed before the line a handler stopped at", input);
      stopped = !*fed;
    }
    check(
        stopped && seen.size() == k && std::equal(seen.begin(), seen.end(), expected.lines.begin()),
        "a handler stopping at line k did not see exactly the first k lines", input);
  }
  lines_out = expected.lines;
}

// ---- Events and Status --------------------------------------------------------------------

void checkStatus(const nmi::kube::ApiStatus& status, std::string_view input) {
  check(status.code >= 0 && status.code <= 999, "Status code outside [0, 999]", input);
  check(status.reason.size() <= 64 + 3 && !nmi::fuzz::hasControl(status.reason),
        "Status reason too long or with control characters", input);
  check(status.message.size() <= 512 + 3 && !nmi::fuzz::hasControl(status.message),
        "Status message too long or with control characters", input);
}

void checkEvent(std::string_view line, std::string_view input) {
  const auto event = nmi::kube::decodeWatchEvent(line);
  if (!event) {
    check(event.error().code == nmi::ErrorCode::InvalidArgument,
          "a refused watch event is not InvalidArgument", input);
    check(!event.error().message.empty() && event.error().message.size() <= 100 &&
              !nmi::fuzz::hasControl(event.error().message),
          "a watch event error message is empty, long or has control characters", input);
    return;
  }
  check(event->object.is_object(), "an accepted watch event's object is not an object", input);
  const std::string name = nmi::kube::eventTypeName(event->type);
  check(name == "ADDED" || name == "MODIFIED" || name == "DELETED" || name == "BOOKMARK" ||
            name == "ERROR",
        "an accepted watch event has an unnamed type", input);
  if (nmi::fuzz::openBrackets(line) <= kMaxNestingForRecursion) {
    const std::string again = json{{"type", name}, {"object", event->object}}.dump();
    const auto redecoded = nmi::kube::decodeWatchEvent(again);
    check(redecoded && redecoded->type == event->type && redecoded->object == event->object,
          "a re-encoded watch event does not decode to itself", input);
  }
  const std::string rv = nmi::kube::resourceVersionOf(event->object);
  if (!rv.empty()) {
    const json* metadata =
        event->object.contains("metadata") ? &event->object["metadata"] : nullptr;
    check(metadata != nullptr && metadata->is_object() && metadata->contains("resourceVersion") &&
              (*metadata)["resourceVersion"] == rv,
          "resourceVersionOf returned something else than metadata.resourceVersion", input);
  }
  if (event->type == nmi::kube::EventType::Error) {
    checkStatus(nmi::kube::decodeStatus(event->object), input);
  }
}

// Delta-seconds read plainly: digits between spaces, saturating at an hour.
std::optional<std::chrono::seconds> plainRetryAfter(std::string_view value) {
  while (!value.empty() && value.front() == ' ') {
    value.remove_prefix(1);
  }
  while (!value.empty() && value.back() == ' ') {
    value.remove_suffix(1);
  }
  if (value.empty()) {
    return std::nullopt;
  }
  std::int64_t seconds = 0;
  for (const char c : value) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
    seconds = std::min<std::int64_t>(seconds * 10 + (c - '0'), 3600);
  }
  return std::chrono::seconds(seconds);
}

void checkRetryAfter(std::string_view value, std::string_view input) {
  const auto got = nmi::kube::parseRetryAfter(value);
  check(got == plainRetryAfter(value), "parseRetryAfter disagrees with delta-seconds", input);
}

void checkClassify(std::string_view input, nmi::fuzz::Choices& choices) {
  const auto status = static_cast<unsigned>(choices.between(100, 599));
  std::optional<std::chrono::seconds> retry_after;
  if (choices.next() % 2 == 0) {
    retry_after = std::chrono::seconds(choices.between(0, 3600));
  }
  const auto error = nmi::kube::classifyStatus(status, input, retry_after, "list pods");
  if (status >= 200 && status < 300) {
    check(!error.has_value(), "a 2xx answer is classified as an error", input);
    return;
  }
  check(error.has_value(), "a non-2xx answer is not an error", input);
  check(error->http_status == status, "classifyStatus lost the status", input);
  check(error->gone == (status == 410), "gone is set for another status than 410", input);
  check(!error->retry_after || (status == 429 && error->retry_after == retry_after),
        "a Retry-After outside a 429, or changed", input);
  const std::string prefix = "list pods: HTTP " + std::to_string(status);
  check(error->error.message.starts_with(prefix) && error->error.message.size() <= 700,
        "classifyStatus's message does not start with what was asked, or is unbounded", input);
}

// ---- Lists --------------------------------------------------------------------------------

// What a List body should decode to, from nlohmann's SAX interface (no DOM, no callback parser).
// NOLINTBEGIN(readability-identifier-naming): nlohmann's SAX interface.
class ListShape {
 public:
  bool null() { return value(true); }
  bool boolean(bool /*v*/) { return value(false); }
  bool number_integer(json::number_integer_t /*v*/) { return value(false); }
  bool number_unsigned(json::number_unsigned_t /*v*/) { return value(false); }
  bool number_float(json::number_float_t /*v*/, const std::string& /*s*/) { return value(false); }
  bool string(std::string& /*v*/) { return value(false); }
  bool binary(json::binary_t& /*v*/) { return value(false); }
  bool key(std::string& k) {
    if (stack_.size() == 1) {
      key_ = k;
    }
    return true;
  }
  bool start_object(std::size_t /*n*/) { return open('o'); }
  bool end_object() { return close(); }
  bool start_array(std::size_t /*n*/) { return open('a'); }
  bool end_array() { return close(); }
  bool parse_error(std::size_t /*p*/, const std::string& /*t*/,
                   const nlohmann::detail::exception& /*e*/) {
    return false;
  }

  bool top_is_object = false;
  bool items_ok = true;
  std::size_t items = 0;
  std::size_t items_keys = 0;  // how many "items" keys the top-level object has
  std::size_t max_depth = 0;   // of containers, the top-level one at depth 0

 private:
  bool inItems() const { return stack_.size() == 2 && in_items_; }
  bool value(bool is_null) {
    if (stack_.empty()) {
      return true;  // a scalar document: top_is_object stays false
    }
    if (stack_.size() == 1 && key_ == "items") {
      ++items_keys;
      items_ok = items_ok && is_null;
    } else if (inItems()) {
      items_ok = false;
    }
    return true;
  }
  bool open(char kind) {
    if (stack_.empty()) {
      top_is_object = kind == 'o';
    } else {
      max_depth = std::max(max_depth, stack_.size());
      if (stack_.size() == 1 && key_ == "items") {
        ++items_keys;
        in_items_ = kind == 'a';
        items_ok = items_ok && kind == 'a';
      } else if (inItems()) {
        if (kind == 'o') {
          ++items;
        } else {
          items_ok = false;
        }
      }
    }
    stack_.push_back(kind);
    return true;
  }
  bool close() {
    stack_.pop_back();
    if (stack_.size() == 1) {
      in_items_ = false;
    }
    return true;
  }

  std::vector<char> stack_;
  std::string key_;
  bool in_items_ = false;
};
// NOLINTEND(readability-identifier-naming)

std::string stringAt(const json& doc, const char* object, const char* key) {
  if (!doc.is_object() || !doc.contains(object) || !doc[object].is_object() ||
      !doc[object].contains(key) || !doc[object][key].is_string()) {
    return {};
  }
  return doc[object][key].get<std::string>();
}

void checkList(std::string_view input) {
  std::vector<json> streamed;
  const auto meta = nmi::kube::decodeList(input, [&](const json& item) {
    if (streamed.size() < 1024) {
      streamed.push_back(item);
    }
  });
  ListShape shape;
  const bool syntax_ok = json::sax_parse(input, &shape);
  const bool well_formed = syntax_ok && shape.top_is_object && shape.items_ok;
  // "nesting deeper than 64": the exact boundary is the decoder's business; far from it, the
  // answer is not.
  if (meta) {
    check(well_formed && shape.max_depth <= 66,
          "decodeList accepted a body that is not an object with arrays of objects as items, or "
          "too deeply nested",
          input);
    check(meta->items == shape.items, "decodeList handed out another number of items", input);
    const json dom = json::parse(input, nullptr, /*allow_exceptions=*/false);
    check(!dom.is_discarded() && dom.is_object(), "decodeList accepted what json::parse refuses",
          input);
    if (shape.items_keys == 1 && dom.contains("items") && dom["items"].is_array() &&
        meta->items <= streamed.size()) {
      check(dom["items"].size() == streamed.size() &&
                std::equal(streamed.begin(), streamed.end(), dom["items"].begin()),
            "decodeList's items differ from the document's", input);
    }
    check(meta->resource_version == stringAt(dom, "metadata", "resourceVersion") &&
              meta->continue_token == stringAt(dom, "metadata", "continue"),
          "decodeList's metadata differs from the document's", input);
  } else {
    check(meta.error().code == nmi::ErrorCode::InvalidArgument,
          "a refused list is not InvalidArgument", input);
    check(!(well_formed && shape.max_depth <= 63),
          "decodeList refused an object with arrays of objects as items", input);
  }
}

}  // namespace

// NOLINTNEXTLINE(readability-identifier-naming): the name libFuzzer calls.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input = nmi::fuzz::asText(data, size);
  nmi::fuzz::Choices choices(nmi::fuzz::hashOf(input));

  std::vector<std::string> lines;
  checkSplitter(input, choices, lines);
  for (std::size_t i = 0; i < lines.size() && i < kMaxLinesChecked; ++i) {
    checkEvent(lines[i], input);
    checkRetryAfter(lines[i], input);
  }
  checkRetryAfter(input, input);
  checkStatus(nmi::kube::decodeStatusBody(input), input);
  checkClassify(input, choices);
  checkList(input);
  return 0;
}
