// libFuzzer target for the identity-file reader (kube/file_parse.h): JSON or YAML text, one or
// more objects or Lists. Aborts when one of these does not hold:
//   * every object found is a JSON object with a location, nested at most kMaxNestingDepth levels,
//     and there are at most kMaxIdentityFileObjects of them;
//   * bounded expansion: all objects together hold at most text + 1024 JSON values and
//     2 x text + 1024 bytes of strings, keys included, however the YAML's aliases repeat nodes;
//   * round trip: the objects written back as one JSON List parse to the same objects;
//   * JSON and YAML agree: that same List, read through the YAML path (JSON is YAML 1.2 flow
//     syntax), gives the same objects;
//   * a refusal is InvalidArgument with a message that quotes none of the text: where a piece of
//     the message also occurs in the text, the text's letters and digits are shifted and the
//     refusal must not quote the shifted piece.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "fuzz_support.h"
#include "json_support.h"
#include "kube/file_parse.h"

namespace {

using nlohmann::json;
using nmi::fuzz::check;
using nmi::fuzz::shifted;
using nmi::kube::LocatedObject;

constexpr std::size_t kMaxRoundTripObjects = 32;
constexpr std::size_t kQuoteWindow = 8;

// JSON has no NaN or infinities: dump() writes them as null.
bool sameValue(const json& a, const json& b) {
  if (a.is_number_float() && !std::isfinite(a.get<double>())) {
    return b.is_null();
  }
  if (a.type() != b.type() && !(a.is_number() && b.is_number())) {
    return false;
  }
  if (a.is_object()) {
    if (a.size() != b.size()) {
      return false;
    }
    for (auto it = a.begin(), jt = b.begin(); it != a.end(); ++it, ++jt) {
      if (it.key() != jt.key() || !sameValue(*it, *jt)) {
        return false;
      }
    }
    return true;
  }
  if (a.is_array()) {
    if (a.size() != b.size()) {
      return false;
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (!sameValue(a[i], b[i])) {
        return false;
      }
    }
    return true;
  }
  return a == b;
}

void checkReadBack(const std::vector<json>& objects, const std::string& text, std::string_view what,
                   std::string_view input) {
  const auto again = nmi::kube::parseIdentityText(text);
  if (!again) {
    nmi::fuzz::violated(std::string(what) + " is refused: " + again.error().message, input);
  }
  check(again->size() == objects.size(), std::string(what) + " holds another number of objects",
        input);
  for (std::size_t i = 0; i < objects.size(); ++i) {
    check(sameValue(objects[i], (*again)[i].object),
          std::string(what) + " holds another object at " + std::to_string(i), input);
  }
}

// YAML text is not checked for UTF-8 (JSON text is), so a string may hold bytes JSON cannot
// carry; nmi writes such strings with error_handler_t::replace, and they have no JSON round trip.
bool writableAsJson(const json& object) {
  try {
    static_cast<void>(object.dump());
    return true;
  } catch (const json::type_error&) {
    return false;
  }
}

// YAML 1.2 limits an implicit key to 1024 characters (yaml-cpp enforces it), so an object with a
// longer key, as JSON writes it, has no YAML flow form.
bool hasLongKey(const json& object) {
  bool long_key = false;
  nmi::fuzz::forEachString(object, [&long_key](const std::string& s, bool is_key) {
    long_key = long_key || (is_key && json(s).dump().size() > 1000);
  });
  return long_key;
}

void checkAccepted(const std::vector<LocatedObject>& objects, std::string_view input) {
  check(objects.size() <= nmi::kube::kMaxIdentityFileObjects, "too many objects", input);
  nmi::fuzz::JsonShape total;
  std::vector<json> sample;
  for (const LocatedObject& located : objects) {
    check(located.object.is_object(), "an entry is not an object", input);
    check(!located.where.empty(), "an object without a location", input);
    const nmi::fuzz::JsonShape shape = nmi::fuzz::shapeOf(located.object);
    // kMaxNestingDepth containers, the innermost possibly an empty one more.
    check(shape.depth <= static_cast<std::size_t>(nmi::kube::kMaxNestingDepth) + 1,
          "an object nested deeper than kMaxNestingDepth", input);
    total.nodes += shape.nodes;
    total.string_bytes += shape.string_bytes;
    if (sample.size() < kMaxRoundTripObjects &&
        shape.depth + 2 <= static_cast<std::size_t>(nmi::kube::kMaxNestingDepth) &&
        writableAsJson(located.object)) {
      sample.push_back(located.object);
    }
  }
  check(total.nodes <= input.size() + 1024, "the objects hold more values than the text allows",
        input);
  check(total.string_bytes <= 2 * input.size() + 1024,
        "the objects hold more bytes of strings than the text allows", input);

  // A List, so that objects which are themselves Lists are not expanded again.
  checkReadBack(sample, json{{"kind", "List"}, {"items", sample}}.dump(),
                "the objects written as a JSON List", input);
  std::erase_if(sample, hasLongKey);
  checkReadBack(sample,
                "# the same List read as YAML\n" + json{{"kind", "List"}, {"items", sample}}.dump(),
                "the objects written as a JSON List and read as YAML", input);
}

void checkRefused(const nmi::Error& error, std::string_view input) {
  check(error.code == nmi::ErrorCode::InvalidArgument, "a refusal is not InvalidArgument", input);
  check(!error.message.empty(), "a refusal without a message", input);
  const std::string_view piece = nmi::fuzz::quotedWindow(error.message, input, kQuoteWindow);
  if (piece.empty() || shifted(piece) == piece) {
    return;
  }
  const std::string changed_input = shifted(input);
  const auto again = nmi::kube::parseIdentityText(changed_input);
  if (!again && again.error().message.find(shifted(piece)) != std::string::npos &&
      error.message.find(shifted(piece)) == std::string::npos) {
    nmi::fuzz::violated("a refusal quotes the text: " + error.message, input);
  }
}

}  // namespace

// NOLINTNEXTLINE(readability-identifier-naming): the name libFuzzer calls.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input = nmi::fuzz::asText(data, size);
  const auto objects = nmi::kube::parseIdentityText(input);
  if (objects) {
    checkAccepted(*objects, input);
  } else {
    checkRefused(objects.error(), input);
  }
  return 0;
}
