#pragma once

// A second, deliberately plain reading of HTTP/1.x message bytes (RFC 9112) for the HTTP fuzz
// targets: where a head ends, its start line and fields, and how long the body is. It shares no
// code with Beast or with src/http, so that agreement between the two means something. It is
// only as strict as the targets need: it is asked about messages the code under test accepted.
// Header-only, standard library only.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nmi::fuzz::http {

inline char lowerAscii(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

inline bool sameLetters(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lowerAscii(a[i]) != lowerAscii(b[i])) {
      return false;
    }
  }
  return true;
}

inline std::string_view trimWhitespace(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

struct Field {
  std::string name;
  std::string value;  // surrounding whitespace removed; continuation lines joined with a space
};

struct Head {
  std::size_t size = 0;  // bytes of the head, the empty line included
  std::string start_line;
  std::vector<Field> fields;

  std::vector<std::string> values(std::string_view name) const {
    std::vector<std::string> out;
    for (const Field& f : fields) {
      if (sameLetters(f.name, name)) {
        out.push_back(f.value);
      }
    }
    return out;
  }
};

// The head at the start of `bytes`: everything up to the first CR LF CR LF, cut into CR LF lines.
// A line starting with SP or HTAB continues the previous field. nullopt when no head ends in
// `bytes` or a field line has no colon.
inline std::optional<Head> readHead(std::string_view bytes) {
  const std::size_t end = bytes.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    return std::nullopt;
  }
  Head head;
  head.size = end + 4;
  std::string_view rest = bytes.substr(0, end + 2);  // every line with its CR LF
  bool first = true;
  while (!rest.empty()) {
    const std::size_t eol = rest.find("\r\n");
    const std::string_view line = rest.substr(0, eol);
    rest.remove_prefix(eol + 2);
    if (first) {
      head.start_line = std::string(line);
      first = false;
    } else if (!line.empty() && (line.front() == ' ' || line.front() == '\t')) {
      if (head.fields.empty()) {
        return std::nullopt;
      }
      std::string& value = head.fields.back().value;
      const std::string_view more = trimWhitespace(line);
      if (!more.empty()) {
        value += value.empty() ? "" : " ";
        value += more;
      }
    } else {
      const std::size_t colon = line.find(':');
      if (colon == std::string_view::npos) {
        return std::nullopt;
      }
      head.fields.push_back(Field{std::string(line.substr(0, colon)),
                                  std::string(trimWhitespace(line.substr(colon + 1)))});
    }
  }
  return head;
}

// The elements of a comma-separated list, whitespace removed, empty elements dropped.
inline std::vector<std::string> listElements(std::string_view value) {
  std::vector<std::string> out;
  while (true) {
    const std::size_t comma = value.find(',');
    const std::string_view element = trimWhitespace(value.substr(0, comma));
    if (!element.empty()) {
      out.emplace_back(element);
    }
    if (comma == std::string_view::npos) {
      return out;
    }
    value.remove_prefix(comma + 1);
  }
}

// The elements of every field `name`, in order, as one list.
inline std::vector<std::string> listOf(const Head& head, std::string_view name) {
  std::vector<std::string> out;
  for (const std::string& value : head.values(name)) {
    for (std::string& element : listElements(value)) {
      out.push_back(std::move(element));
    }
  }
  return out;
}

inline bool listHas(const Head& head, std::string_view name, std::string_view token) {
  for (const std::string& element : listOf(head, name)) {
    if (sameLetters(element, token)) {
      return true;
    }
  }
  return false;
}

// Transfer-Encoding is present and its last coding is chunked.
inline bool chunkedLast(const Head& head) {
  const std::vector<std::string> codings = listOf(head, "transfer-encoding");
  return !codings.empty() && sameLetters(codings.back(), "chunked");
}

// The Content-Length of `head`: every element of every Content-Length field, all the same
// decimal number. nullopt when there is none or they are not all one valid number.
inline std::optional<std::uint64_t> contentLength(const Head& head) {
  std::optional<std::uint64_t> length;
  for (const std::string& element : listOf(head, "content-length")) {
    std::uint64_t v = 0;
    for (const char c : element) {
      if (c < '0' || c > '9' || v > (UINT64_MAX - 9) / 10) {
        return std::nullopt;
      }
      v = v * 10 + static_cast<std::uint64_t>(c - '0');
    }
    if (length && *length != v) {
      return std::nullopt;
    }
    length = v;
  }
  return length;
}

// A chunked body at the start of `bytes`: chunk-size (hex) [extensions] CRLF data CRLF ..., a
// zero-size chunk, trailer lines and an empty line.
struct Chunked {
  enum class State { Complete, Incomplete, Invalid };
  State state = State::Invalid;
  std::string payload;   // when Complete
  std::size_t size = 0;  // when Complete: bytes of the chunked body, trailers included
  // When Complete: the runs of bytes that are not payload (before the first chunk's data,
  // between two chunks' data, after the last), in order.
  std::vector<std::size_t> gaps;
};

inline Chunked readChunked(std::string_view bytes) {
  Chunked out;
  std::size_t pos = 0;
  std::size_t gap_start = 0;
  const auto incomplete = [&out] {
    out.state = Chunked::State::Incomplete;
    out.payload.clear();
    out.gaps.clear();
    return out;
  };
  while (true) {
    const std::size_t eol = bytes.find("\r\n", pos);
    if (eol == std::string_view::npos) {
      return incomplete();
    }
    std::uint64_t size = 0;
    std::size_t digits = 0;
    for (std::size_t i = pos; i < eol; ++i, ++digits) {
      const char c = lowerAscii(bytes[i]);
      int d = -1;
      if (c >= '0' && c <= '9') {
        d = c - '0';
      } else if (c >= 'a' && c <= 'f') {
        d = c - 'a' + 10;
      } else {
        break;
      }
      if (size > (UINT64_MAX >> 4U)) {
        return out;  // Invalid: too large
      }
      size = size * 16 + static_cast<std::uint64_t>(d);
    }
    if (digits == 0) {
      return out;
    }
    // A quoted string in the extensions must end on its line. (Beast 1.74 reads an unclosed one
    // on past the line's end and waits for more bytes, which can only end in an error: the line
    // is broken, not complete.)
    bool quoted = false;
    for (std::size_t i = pos + digits; i < eol; ++i) {
      if (quoted && bytes[i] == '\\') {
        ++i;
      } else if (bytes[i] == '"') {
        quoted = !quoted;
      }
    }
    if (quoted) {
      return out;
    }
    pos = eol + 2;
    if (size == 0) {
      break;
    }
    if (size > bytes.size() - pos || bytes.size() - pos - size < 2) {
      return incomplete();
    }
    out.gaps.push_back(pos - gap_start);
    out.payload.append(bytes.substr(pos, size));
    pos += size;
    gap_start = pos;
    if (bytes.substr(pos, 2) != "\r\n") {
      return out;
    }
    pos += 2;
  }
  // Trailer lines, then the empty line.
  while (true) {
    const std::size_t eol = bytes.find("\r\n", pos);
    if (eol == std::string_view::npos) {
      return incomplete();
    }
    const bool empty = eol == pos;
    pos = eol + 2;
    if (empty) {
      break;
    }
  }
  out.state = Chunked::State::Complete;
  out.size = pos;
  out.gaps.push_back(pos - gap_start);
  return out;
}

// "HTTP/1.0" -> 10, "HTTP/1.1" -> 11 (the first 8 bytes of `text`); 0 otherwise.
inline int versionOf(std::string_view text) {
  if (text.size() < 8 || text.substr(0, 7) != "HTTP/1.") {
    return 0;
  }
  return text[7] == '0' ? 10 : text[7] == '1' ? 11 : 0;
}

}  // namespace nmi::fuzz::http
