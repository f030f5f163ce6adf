#include "kube/file_parse.h"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <exception>
#include <limits>
#include <optional>
#include <sstream>
#include <utility>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

namespace nmi::kube {

namespace {

using nlohmann::json;

// Budget for the JSON built from a YAML file: aliases may repeat a node any number of times
// ("billion laughs"), so the expansion is bounded by the text's size. Without aliases a document
// has fewer nodes than bytes and no more scalar bytes (keys and values) than text, so these never
// trip on it.
struct YamlBudget {
  std::size_t nodes;
  std::size_t scalar_bytes;
};

YamlBudget yamlBudgetFor(std::string_view text) {
  constexpr std::size_t kSlack = 1024;
  return YamlBudget{text.size() + kSlack, 2 * text.size() + kSlack};
}

Error parseError(std::string message) {
  return makeError(ErrorCode::InvalidArgument, std::move(message));
}

std::size_t lineOf(std::string_view text, std::size_t offset) {
  offset = std::min(offset, text.size());
  return 1 + static_cast<std::size_t>(std::count(
                 text.begin(), text.begin() + static_cast<std::ptrdiff_t>(offset), '\n'));
}

// ---- JSON ----------------------------------------------------------------------------------

// A SAX pass that checks syntax and nesting depth without building anything, and records where
// the first error is. nlohmann's own messages quote the offending token, which may be part of a
// secret, so only the part before "; last read" is kept.
// NOLINTBEGIN(readability-identifier-naming): nlohmann's SAX interface.
class ValidatingSax {
 public:
  bool null() { return true; }
  bool boolean(bool /*value*/) { return true; }
  bool number_integer(json::number_integer_t /*value*/) { return true; }
  bool number_unsigned(json::number_unsigned_t /*value*/) { return true; }
  bool number_float(json::number_float_t /*value*/, const std::string& /*text*/) { return true; }
  bool string(std::string& /*value*/) { return true; }
  bool binary(json::binary_t& /*value*/) { return true; }
  bool key(std::string& /*value*/) { return true; }
  bool start_object(std::size_t /*size*/) { return enter(); }
  bool end_object() { return leave(); }
  bool start_array(std::size_t /*size*/) { return enter(); }
  bool end_array() { return leave(); }
  bool parse_error(std::size_t position, const std::string& /*last_token*/,
                   const nlohmann::detail::exception& ex) {
    position_ = position;
    std::string what = ex.what();
    if (const auto cut = what.find("; last read"); cut != std::string::npos) {
      what.resize(cut);
    }
    // "[json.exception.parse_error.101] parse error at line 4, column 0: <what>": the position
    // is reported separately.
    if (const auto start = what.find(": "); start != std::string::npos) {
      what.erase(0, start + 2);
    }
    message_ = std::move(what);
    return false;
  }

  std::size_t position() const { return position_; }
  const std::string& message() const { return message_; }
  bool tooDeep() const { return too_deep_; }

 private:
  bool enter() {
    if (++depth_ > kMaxNestingDepth) {
      too_deep_ = true;
      return false;
    }
    return true;
  }
  bool leave() {
    --depth_;
    return true;
  }

  int depth_ = 0;
  bool too_deep_ = false;
  std::size_t position_ = 0;
  std::string message_;
};
// NOLINTEND(readability-identifier-naming)

// kind "List" or any "<Kind>List" carrying items.
bool isList(const json& object) {
  if (!object.is_object()) {
    return false;
  }
  const auto kind = object.find("kind");
  if (kind == object.end() || !kind->is_string()) {
    return false;
  }
  const auto& name = kind->get_ref<const std::string&>();
  return name == "List" || (name.size() > 4 && name.ends_with("List") && object.contains("items"));
}

// Appends `value` (an object, or a List of objects) to `out`.
Result<void> collect(json value, const std::string& where,
                     const std::vector<std::string>& item_lines, std::vector<LocatedObject>& out) {
  const auto add = [&out](json object, std::string location) -> Result<void> {
    if (!object.is_object()) {
      return parseError(location + ": expected an object, got " + object.type_name());
    }
    if (out.size() >= kMaxIdentityFileObjects) {
      return parseError("more than " + std::to_string(kMaxIdentityFileObjects) + " objects");
    }
    out.push_back(LocatedObject{std::move(object), std::move(location)});
    return {};
  };
  if (!isList(value)) {
    return add(std::move(value), where);
  }
  auto items = value.find("items");
  if (items == value.end() || items->is_null()) {
    return {};
  }
  if (!items->is_array()) {
    return parseError(where + ": items: expected an array, got " + items->type_name());
  }
  for (std::size_t i = 0; i < items->size(); ++i) {
    std::string location = (where.empty() ? "" : where + ", ") + "items[" + std::to_string(i) + "]";
    if (i < item_lines.size()) {
      location += item_lines[i];
    }
    if (auto added = add(std::move((*items)[i]), std::move(location)); !added) {
      return added;
    }
  }
  return {};
}

Result<std::vector<LocatedObject>> parseJson(std::string_view text) {
  ValidatingSax sax;
  if (!json::sax_parse(text, &sax)) {
    if (sax.tooDeep()) {
      return parseError("JSON nested deeper than " + std::to_string(kMaxNestingDepth) + " levels");
    }
    // position counts the characters read, the offending one included.
    const std::size_t offset = sax.position() > 0 ? sax.position() - 1 : 0;
    return parseError("JSON syntax error at line " + std::to_string(lineOf(text, offset)) + ": " +
                      sax.message());
  }
  json document = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (document.is_discarded()) {
    return parseError("JSON syntax error");
  }
  std::vector<LocatedObject> out;
  if (document.is_array()) {
    for (std::size_t i = 0; i < document.size(); ++i) {
      if (auto added = collect(std::move(document[i]), "[" + std::to_string(i) + "]", {}, out);
          !added) {
        return added.error();
      }
    }
    return out;
  }
  const std::string where = isList(document) ? "" : "the object";
  if (auto added = collect(std::move(document), where, {}, out); !added) {
    return added.error();
  }
  return out;
}

// ---- YAML ----------------------------------------------------------------------------------

bool isDigits(std::string_view s, int base) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [base](char c) {
    if (base == 8) {
      return c >= '0' && c <= '7';
    }
    if (base == 16) {
      return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    }
    return c >= '0' && c <= '9';
  });
}

// YAML 1.2 core schema integers: [-+]?[0-9]+, 0o[0-7]+, 0x[0-9a-fA-F]+.
std::optional<json> yamlInteger(std::string_view s) {
  int base = 10;
  bool negative = false;
  std::string_view digits = s;
  if (s.starts_with("0x")) {
    base = 16;
    digits.remove_prefix(2);
  } else if (s.starts_with("0o")) {
    base = 8;
    digits.remove_prefix(2);
  } else if (!s.empty() && (s.front() == '-' || s.front() == '+')) {
    negative = s.front() == '-';
    digits.remove_prefix(1);
  }
  if (!isDigits(digits, base)) {
    return std::nullopt;
  }
  std::uint64_t magnitude = 0;
  const auto [end, ec] =
      std::from_chars(digits.data(), digits.data() + digits.size(), magnitude, base);
  if (ec != std::errc() || end != digits.data() + digits.size()) {
    return std::nullopt;  // too large: left to the float rule
  }
  if (!negative) {
    if (magnitude <= static_cast<std::uint64_t>(INT64_MAX)) {
      return json(static_cast<std::int64_t>(magnitude));
    }
    return json(magnitude);
  }
  if (magnitude <= static_cast<std::uint64_t>(INT64_MAX)) {
    return json(-static_cast<std::int64_t>(magnitude));
  }
  if (magnitude == static_cast<std::uint64_t>(INT64_MAX) + 1) {
    return json(INT64_MIN);
  }
  return std::nullopt;
}

// YAML 1.2 core schema floats: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?, .inf, .nan.
std::optional<json> yamlFloat(std::string_view s) {
  std::string_view body = s;
  bool negative = false;
  if (!body.empty() && (body.front() == '-' || body.front() == '+')) {
    negative = body.front() == '-';
    body.remove_prefix(1);
  }
  if (body == ".inf" || body == ".Inf" || body == ".INF") {
    return json(negative ? -std::numeric_limits<double>::infinity()
                         : std::numeric_limits<double>::infinity());
  }
  if (s == ".nan" || s == ".NaN" || s == ".NAN") {
    return json(std::numeric_limits<double>::quiet_NaN());
  }
  std::size_t i = 0;
  const auto digits = [&] {
    const std::size_t start = i;
    while (i < body.size() && body[i] >= '0' && body[i] <= '9') {
      ++i;
    }
    return i - start;
  };
  const std::size_t int_digits = digits();
  std::size_t frac_digits = 0;
  if (i < body.size() && body[i] == '.') {
    ++i;
    frac_digits = digits();
  }
  if (int_digits == 0 && frac_digits == 0) {
    return std::nullopt;
  }
  if (i < body.size() && (body[i] == 'e' || body[i] == 'E')) {
    ++i;
    if (i < body.size() && (body[i] == '-' || body[i] == '+')) {
      ++i;
    }
    if (digits() == 0) {
      return std::nullopt;
    }
  }
  if (i != body.size()) {
    return std::nullopt;
  }
  double value = 0;
  const auto [end, ec] = std::from_chars(body.data(), body.data() + body.size(), value);
  if (ec != std::errc() || end != body.data() + body.size()) {
    return std::nullopt;
  }
  return json(negative ? -value : value);
}

json yamlPlainScalar(const std::string& s) {
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") {
    return nullptr;
  }
  if (s == "true" || s == "True" || s == "TRUE") {
    return true;
  }
  if (s == "false" || s == "False" || s == "FALSE") {
    return false;
  }
  if (auto n = yamlInteger(s)) {
    return std::move(*n);
  }
  if (auto f = yamlFloat(s)) {
    return std::move(*f);
  }
  return s;
}

std::string lineSuffix(const YAML::Node& node) {
  const YAML::Mark mark = node.Mark();
  if (mark.is_null()) {
    return {};
  }
  return " (line " + std::to_string(mark.line + 1) + ")";
}

class YamlConverter {
 public:
  explicit YamlConverter(YamlBudget budget) : budget_(budget) {}

  Result<json> convert(const YAML::Node& node) {
    json out = visit(node, 0);
    if (error_) {
      return std::move(*error_);
    }
    return out;
  }

 private:
  json visit(const YAML::Node& node, int depth) {
    if (error_) {
      return nullptr;
    }
    if (depth > kMaxNestingDepth) {
      return fail("YAML nested deeper than " + std::to_string(kMaxNestingDepth) + " levels" +
                  lineSuffix(node));
    }
    if (++nodes_ > budget_.nodes) {
      return fail("YAML expands to more than " + std::to_string(budget_.nodes) +
                  " nodes (aliases?)");
    }
    switch (node.Type()) {
      case YAML::NodeType::Undefined:
      case YAML::NodeType::Null:
        return nullptr;
      case YAML::NodeType::Scalar: {
        const std::string& text = node.Scalar();
        bytes_ += text.size();
        if (bytes_ > budget_.scalar_bytes) {
          return fail(scalarBudgetExceeded());
        }
        const std::string& tag = node.Tag();
        if (tag == "!" || tag == "tag:yaml.org,2002:str") {
          return text;  // quoted, block or explicitly a string
        }
        return yamlPlainScalar(text);
      }
      case YAML::NodeType::Sequence: {
        json out = json::array();
        for (const auto& child : node) {
          out.push_back(visit(child, depth + 1));
          if (error_) {
            return nullptr;
          }
        }
        return out;
      }
      case YAML::NodeType::Map: {
        json out = json::object();
        for (const auto& entry : node) {
          if (!entry.first.IsScalar()) {
            return fail("YAML mapping key is not a scalar" + lineSuffix(entry.first));
          }
          // A key may be an alias too, repeated in every copy of its map.
          bytes_ += entry.first.Scalar().size();
          if (bytes_ > budget_.scalar_bytes) {
            return fail(scalarBudgetExceeded());
          }
          json value = visit(entry.second, depth + 1);
          if (error_) {
            return nullptr;
          }
          out[entry.first.Scalar()] = std::move(value);
        }
        return out;
      }
    }
    return nullptr;
  }

  std::string scalarBudgetExceeded() const {
    return "YAML expands to more than " + std::to_string(budget_.scalar_bytes) +
           " bytes of scalars (aliases?)";
  }

  json fail(std::string message) {
    if (!error_) {
      error_ = parseError(std::move(message));
    }
    return nullptr;
  }

  const YamlBudget budget_;
  std::size_t nodes_ = 0;
  std::size_t bytes_ = 0;
  std::optional<Error> error_;
};

// yaml-cpp 0.7 (Debian 12) has a parser that, on some malformed streams (one starting with a
// comma, say), reports the same empty document again and again without consuming anything; its
// LoadAll then allocates until the process runs out of memory (jbeder/yaml-cpp#1040; fixed
// upstream by PR #1319, after the 0.8.0 release). This pass walks the documents with a handler
// that builds nothing and refuses a document that starts where the previous one did. Throws what
// the parser throws.
// NOLINTBEGIN(readability-identifier-naming): yaml-cpp's EventHandler interface.
class DocumentStarts final : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark& mark) override { start = mark; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& /*mark*/, YAML::anchor_t /*anchor*/) override {}
  void OnAlias(const YAML::Mark& /*mark*/, YAML::anchor_t /*anchor*/) override {}
  void OnScalar(const YAML::Mark& /*mark*/, const std::string& /*tag*/, YAML::anchor_t /*anchor*/,
                const std::string& /*value*/) override {}
  void OnSequenceStart(const YAML::Mark& /*mark*/, const std::string& /*tag*/,
                       YAML::anchor_t /*anchor*/, YAML::EmitterStyle::value /*style*/) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& /*mark*/, const std::string& /*tag*/, YAML::anchor_t /*anchor*/,
                  YAML::EmitterStyle::value /*style*/) override {}
  void OnMapEnd() override {}

  YAML::Mark start = YAML::Mark::null_mark();
};
// NOLINTEND(readability-identifier-naming)

std::optional<Error> checkDocumentsAdvance(const std::string& text) {
  std::istringstream stream(text);
  YAML::Parser parser(stream);
  DocumentStarts starts;
  std::optional<int> previous;
  while (parser.HandleNextDocument(starts)) {
    if (previous && starts.start.pos <= *previous) {
      return parseError("YAML syntax error at line " + std::to_string(starts.start.line + 1) +
                        ", column " + std::to_string(starts.start.column + 1) +
                        ": no document can start here");
    }
    previous = starts.start.pos;
  }
  return std::nullopt;
}

Result<std::vector<LocatedObject>> parseYaml(std::string_view text) {
  std::vector<YAML::Node> documents;
  try {
    const std::string copy(text);
    if (auto stuck = checkDocumentsAdvance(copy)) {
      return std::move(*stuck);
    }
    documents = YAML::LoadAll(copy);
  } catch (const YAML::Exception& e) {
    return parseError("YAML syntax error at line " + std::to_string(e.mark.line + 1) + ", column " +
                      std::to_string(e.mark.column + 1) + ": " + e.msg);
  } catch (const std::exception& e) {
    return parseError(std::string("YAML parse failed: ") + e.what());
  }
  std::vector<LocatedObject> out;
  YamlConverter converter(yamlBudgetFor(text));  // one budget for the whole file
  try {
    for (std::size_t d = 0; d < documents.size(); ++d) {
      const YAML::Node& document = documents[d];
      if (document.IsNull() || !document.IsDefined()) {
        continue;  // empty document (comments only, trailing ---)
      }
      const std::string where = "document " + std::to_string(d + 1) + lineSuffix(document);
      auto converted = converter.convert(document);
      if (!converted) {
        return std::move(converted).error();
      }
      std::vector<std::string> item_lines;
      if (document.IsMap() && document["items"] && document["items"].IsSequence()) {
        for (const auto& item : document["items"]) {
          item_lines.push_back(lineSuffix(item));
        }
      }
      if (auto added = collect(std::move(*converted), where, item_lines, out); !added) {
        return added.error();
      }
    }
  } catch (const std::exception& e) {
    return parseError(std::string("YAML conversion failed: ") + e.what());
  }
  return out;
}

}  // namespace

Result<std::vector<LocatedObject>> parseIdentityText(std::string_view text) {
  if (text.size() > kMaxIdentityFileBytes) {
    return parseError("larger than " + std::to_string(kMaxIdentityFileBytes) + " bytes");
  }
  if (text.starts_with("\xEF\xBB\xBF")) {
    text.remove_prefix(3);  // UTF-8 byte order mark
  }
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) {
    return std::vector<LocatedObject>{};
  }
  if (text[first] == '{' || text[first] == '[') {
    return parseJson(text);
  }
  return parseYaml(text);
}

}  // namespace nmi::kube
