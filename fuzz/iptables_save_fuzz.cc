// libFuzzer target for the iptables-save reader (iptables/save_parser.h). The input is read as
// iptables-save output and each of its lines as a rule. Aborts when one of these does not hold:
//   * tokenize: the words' raw spellings occur in the line in order, without overlap; each one
//     alone tokenizes to exactly that word; an unquoted word is its raw text without blanks, a
//     quoted one is its raw text between quotes with \" and \\ undone; re-joining the raw
//     spellings with single spaces tokenizes to the same words; only a line with a quote fails;
//   * parseSave round trip: an accepted ruleset, rendered by this file as iptables-save output,
//     parses to an equal ruleset, and rendering that again gives the same text;
//   * parseSave agrees with itself on text that differs only in what the format ignores: CRLF line
//     ends, comment and blank lines between lines, a [packets:bytes] counter in front of rules;
//   * accepted output is bounded by the input: tables, chains and rules each at most the number of
//     lines; a rule's spec is its words' raw spellings joined by single spaces;
//   * a refusal is InvalidArgument.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_support.h"
#include "iptables/save_parser.h"

namespace {

using nmi::fuzz::check;
using nmi::iptables::SavedChain;
using nmi::iptables::SavedRule;
using nmi::iptables::SavedRuleset;
using nmi::iptables::SavedTable;
using nmi::iptables::Token;

bool isBlank(char c) {
  return c == ' ' || c == '\t' || c == '\r';
}

bool sameToken(const Token& a, const Token& b) {
  return a.text == b.text && a.raw == b.raw && a.quoted == b.quoted;
}

bool sameTokens(const std::vector<Token>& a, const std::vector<Token>& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), sameToken);
}

bool sameRuleset(const SavedRuleset& a, const SavedRuleset& b) {
  const auto same_rule = [](const SavedRule& x, const SavedRule& y) {
    return x.chain == y.chain && x.spec == y.spec && sameTokens(x.tokens, y.tokens);
  };
  const auto same_chain = [&](const SavedChain& x, const SavedChain& y) {
    return x.name == y.name && x.policy == y.policy && x.rules.size() == y.rules.size() &&
           std::equal(x.rules.begin(), x.rules.end(), y.rules.begin(), same_rule);
  };
  const auto same_table = [&](const SavedTable& x, const SavedTable& y) {
    return x.name == y.name && x.chains.size() == y.chains.size() &&
           std::equal(x.chains.begin(), x.chains.end(), y.chains.begin(), same_chain);
  };
  return a.tables.size() == b.tables.size() &&
         std::equal(a.tables.begin(), a.tables.end(), b.tables.begin(), same_table);
}

std::vector<std::string_view> linesOf(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    const std::size_t eol = text.find('\n');
    lines.push_back(text.substr(0, eol));
    text = eol == std::string_view::npos ? std::string_view() : text.substr(eol + 1);
  }
  return lines;
}

// ---- tokenize -------------------------------------------------------------------------------

// The documented unquoting: \" and \\ stand for " and \, every other byte for itself.
std::string unquote(std::string_view inner) {
  std::string out;
  for (std::size_t i = 0; i < inner.size(); ++i) {
    if (inner[i] == '\\' && i + 1 < inner.size() && (inner[i + 1] == '"' || inner[i + 1] == '\\')) {
      ++i;
    }
    out += inner[i];
  }
  return out;
}

void checkTokenize(std::string_view line, std::string_view input) {
  const auto tokens = nmi::iptables::tokenize(line);
  if (!tokens) {
    check(tokens.error().code == nmi::ErrorCode::InvalidArgument,
          "a tokenize error is not InvalidArgument", input);
    check(line.find('"') != std::string_view::npos, "tokenize failed on a line without a quote",
          input);
    return;
  }
  std::size_t pos = 0;
  std::string joined;
  for (const Token& token : *tokens) {
    check(!token.raw.empty(), "a word with an empty raw spelling", input);
    const std::size_t at = line.find(token.raw, pos);
    check(at != std::string_view::npos, "a word's raw spelling is not in the line, in order",
          input);
    for (std::size_t i = pos; i < at; ++i) {
      check(isBlank(line[i]), "something else than blanks between two words", input);
    }
    pos = at + token.raw.size();
    if (token.quoted) {
      check(token.raw.size() >= 2 && token.raw.front() == '"' && token.raw.back() == '"' &&
                token.text == unquote(token.raw.substr(1, token.raw.size() - 2)),
            "a quoted word is not its raw text unquoted", input);
    } else {
      check(token.text == token.raw && token.raw.front() != '"' &&
                std::none_of(token.raw.begin(), token.raw.end(), isBlank),
            "an unquoted word is not its raw text, or holds a blank", input);
    }
    const auto alone = nmi::iptables::tokenize(token.raw);
    check(alone && alone->size() == 1 && sameToken(alone->front(), token),
          "a word's raw spelling does not tokenize to that word alone", input);
    if (!joined.empty()) {
      joined += ' ';
    }
    joined += token.raw;
  }
  for (std::size_t i = pos; i < line.size(); ++i) {
    check(isBlank(line[i]), "something else than blanks after the last word", input);
  }
  const auto again = nmi::iptables::tokenize(joined);
  check(again && sameTokens(*again, *tokens),
        "the words joined by single spaces tokenize differently", input);
}

// ---- parseSave ------------------------------------------------------------------------------

// A word as iptables-save would print it: quoted when it is empty, starts with a quote or holds a
// blank.
std::string word(const std::string& text) {
  if (!text.empty() && text.front() != '"' && std::none_of(text.begin(), text.end(), isBlank)) {
    return text;
  }
  std::string out = "\"";
  for (const char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
    }
    out += c;
  }
  out += '"';
  return out;
}

std::string render(const SavedRuleset& ruleset) {
  std::string out = "# rendered by iptables_save_fuzz\n";
  for (const SavedTable& table : ruleset.tables) {
    out += "*" + table.name + "\n";
    for (const SavedChain& chain : table.chains) {
      out += ":" + word(chain.name) + " " + word(chain.policy) + " [0:0]\n";
    }
    for (const SavedChain& chain : table.chains) {
      for (const SavedRule& rule : chain.rules) {
        out += "-A " + word(rule.chain);
        if (!rule.spec.empty()) {
          out += " " + rule.spec;
        }
        out += "\n";
      }
    }
    out += "COMMIT\n";
  }
  return out;
}

void checkBounds(const SavedRuleset& ruleset, std::size_t lines, std::string_view input) {
  check(ruleset.tables.size() <= lines, "more tables than lines", input);
  std::size_t chains = 0;
  std::size_t rules = 0;
  for (const SavedTable& table : ruleset.tables) {
    chains += table.chains.size();
    for (const SavedChain& chain : table.chains) {
      rules += chain.rules.size();
      for (const SavedRule& rule : chain.rules) {
        check(rule.chain == chain.name, "a rule filed under another chain", input);
        std::string joined;
        for (const Token& token : rule.tokens) {
          joined += (joined.empty() ? "" : " ") + token.raw;
        }
        check(rule.spec == joined, "a rule's spec is not its words joined by spaces", input);
      }
      check(table.find(chain.name) != nullptr, "SavedTable::find misses a chain", input);
    }
    check(ruleset.find(table.name) != nullptr, "SavedRuleset::find misses a table", input);
  }
  check(chains <= lines && rules <= lines, "more chains or rules than lines", input);
}

// The same text as seen through what iptables-save's format ignores.
std::string withIgnorables(std::string_view text) {
  std::string out;
  for (const std::string_view line : linesOf(text)) {
    out += "# a comment\n\n";
    if (line.starts_with("-")) {
      out += "[12:3456] ";
    }
    out += line;
    out += "\r\n";
  }
  return out;
}

void checkParse(std::string_view input) {
  const std::vector<std::string_view> lines = linesOf(input);
  const auto parsed = nmi::iptables::parseSave(input);
  const auto variant = nmi::iptables::parseSave(withIgnorables(input));
  check(parsed.has_value() == variant.has_value(),
        "CRLF, comments, blank lines or counters change whether the text is accepted", input);
  if (!parsed) {
    check(parsed.error().code == nmi::ErrorCode::InvalidArgument,
          "a parseSave error is not InvalidArgument", input);
    return;
  }
  check(sameRuleset(*parsed, *variant),
        "CRLF, comments, blank lines or counters change the ruleset", input);
  checkBounds(*parsed, lines.size(), input);
  const std::string rendered = render(*parsed);
  const auto again = nmi::iptables::parseSave(rendered);
  check(again.has_value(), "a rendered ruleset does not parse", input);
  check(sameRuleset(*again, *parsed), "a rendered ruleset parses to another ruleset", input);
  check(render(*again) == rendered, "rendering is not stable", input);
}

}  // namespace

// NOLINTNEXTLINE(readability-identifier-naming): the name libFuzzer calls.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input = nmi::fuzz::asText(data, size);
  std::size_t checked = 0;
  for (const std::string_view line : linesOf(input)) {
    if (++checked > 256) {
      break;
    }
    checkTokenize(line, input);
  }
  checkParse(input);
  return 0;
}
