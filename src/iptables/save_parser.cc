#include "iptables/save_parser.h"

#include <utility>

namespace nmi::iptables {

namespace {

bool isBlank(char c) {
  return c == ' ' || c == '\t' || c == '\r';
}

Error badLine(std::size_t number, std::string_view line, std::string_view why) {
  std::string shown(line.substr(0, 200));
  return makeError(ErrorCode::InvalidArgument, "iptables-save line " + std::to_string(number) +
                                                   ": " + std::string(why) + ": " + shown);
}

// Adds a rule line (after `-A`) to the table, declaring its chain if iptables-save did not.
Result<void> addRule(SavedTable& table, std::vector<Token> tokens) {
  // tokens[0] is "-A", tokens[1] the chain.
  if (tokens.size() < 2) {
    return makeError(ErrorCode::InvalidArgument, "a rule without a chain");
  }
  SavedRule rule;
  rule.chain = tokens[1].text;
  for (std::size_t i = 2; i < tokens.size(); ++i) {
    if (!rule.spec.empty()) {
      rule.spec += ' ';
    }
    rule.spec += tokens[i].raw;
  }
  rule.tokens.assign(std::make_move_iterator(tokens.begin() + 2),
                     std::make_move_iterator(tokens.end()));
  for (SavedChain& chain : table.chains) {
    if (chain.name == rule.chain) {
      chain.rules.push_back(std::move(rule));
      return {};
    }
  }
  SavedChain chain;
  chain.name = rule.chain;
  chain.policy = "-";
  chain.rules.push_back(std::move(rule));
  table.chains.push_back(std::move(chain));
  return {};
}

}  // namespace

const SavedChain* SavedTable::find(std::string_view chain) const {
  for (const SavedChain& c : chains) {
    if (c.name == chain) {
      return &c;
    }
  }
  return nullptr;
}

const SavedTable* SavedRuleset::find(std::string_view table) const {
  for (const SavedTable& t : tables) {
    if (t.name == table) {
      return &t;
    }
  }
  return nullptr;
}

Result<std::vector<Token>> tokenize(std::string_view line) {
  std::vector<Token> tokens;
  std::size_t i = 0;
  while (i < line.size()) {
    if (isBlank(line[i])) {
      ++i;
      continue;
    }
    Token token;
    const std::size_t start = i;
    if (line[i] == '"') {
      token.quoted = true;
      ++i;
      bool closed = false;
      while (i < line.size()) {
        const char c = line[i];
        if (c == '\\' && i + 1 < line.size() && (line[i + 1] == '"' || line[i + 1] == '\\')) {
          token.text += line[i + 1];
          i += 2;
          continue;
        }
        ++i;
        if (c == '"') {
          closed = true;
          break;
        }
        token.text += c;
      }
      if (!closed) {
        return makeError(ErrorCode::InvalidArgument, "unterminated quote");
      }
    } else {
      while (i < line.size() && !isBlank(line[i])) {
        token.text += line[i];
        ++i;
      }
    }
    token.raw = std::string(line.substr(start, i - start));
    tokens.push_back(std::move(token));
  }
  return tokens;
}

Result<SavedRuleset> parseSave(std::string_view text) {
  SavedRuleset ruleset;
  SavedTable* table = nullptr;
  std::size_t number = 0;
  while (!text.empty()) {
    const std::size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view() : text.substr(eol + 1);
    ++number;
    while (!line.empty() && isBlank(line.back())) {
      line.remove_suffix(1);
    }
    if (line.empty() || line.front() == '#') {
      continue;
    }
    if (line.front() == '*') {
      SavedTable next;
      next.name = std::string(line.substr(1));
      ruleset.tables.push_back(std::move(next));
      table = &ruleset.tables.back();
      continue;
    }
    if (line == "COMMIT") {
      if (table == nullptr) {
        return badLine(number, line, "COMMIT outside a table");
      }
      table = nullptr;
      continue;
    }
    if (table == nullptr) {
      return badLine(number, line, "outside a table");
    }
    if (line.front() == ':') {
      // ":NAME POLICY [packets:bytes]"
      auto words = tokenize(line.substr(1));
      if (!words || words->size() < 2) {
        return badLine(number, line, "bad chain declaration");
      }
      SavedChain chain;
      chain.name = (*words)[0].text;
      chain.policy = (*words)[1].text;
      table->chains.push_back(std::move(chain));
      continue;
    }
    if (line.front() == '[') {  // counters in front of a rule (iptables-save -c)
      const std::size_t end = line.find(']');
      if (end == std::string_view::npos) {
        return badLine(number, line, "bad counters");
      }
      line.remove_prefix(end + 1);
    }
    auto words = tokenize(line);
    if (!words) {
      return badLine(number, line, words.error().message);
    }
    if (words->empty() || (*words)[0].text != "-A") {
      return badLine(number, line, "not a rule");
    }
    if (auto added = addRule(*table, std::move(*words)); !added) {
      return badLine(number, line, added.error().message);
    }
  }
  if (table != nullptr) {
    return makeError(ErrorCode::InvalidArgument,
                     "iptables-save output ends inside table " + table->name + " (no COMMIT)");
  }
  return ruleset;
}

}  // namespace nmi::iptables
