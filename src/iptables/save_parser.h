#pragma once

// Reading iptables-save output. Pure functions, no I/O.

#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace nmi::iptables {

// One word of a rule: `text` without quotes and escapes; `raw` as printed. A quoted word is always
// a value, never an option.
struct Token {
  std::string text;
  std::string raw;
  bool quoted = false;
};

// One rule as iptables-save prints it (`-A <chain> <spec>`).
struct SavedRule {
  std::string chain;
  std::string spec;  // the words after "-A <chain>", as printed, joined by single spaces
  std::vector<Token> tokens;
};

struct SavedChain {
  std::string name;
  std::string policy;  // ACCEPT or DROP for a built-in chain, "-" for a user chain
  std::vector<SavedRule> rules;
  bool builtIn() const { return policy != "-"; }
};

struct SavedTable {
  std::string name;
  std::vector<SavedChain> chains;  // in the order iptables-save declared them
  // The chain of that name, or null.
  const SavedChain* find(std::string_view chain) const;
};

struct SavedRuleset {
  std::vector<SavedTable> tables;
  // The table of that name, or null.
  const SavedTable* find(std::string_view table) const;
};

// Splits one line into words the way iptables-restore does: blanks separate words; a double
// quote starts a quoted word in which `\"` and `\\` stand for `"` and `\`. Errors:
// InvalidArgument for an unterminated quote.
Result<std::vector<Token>> tokenize(std::string_view line);

// Parses the output of iptables-save (either backend, any number of tables). Comments and blank
// lines are skipped, rule counters (`[p:b] -A ...`) are dropped. Errors: InvalidArgument naming
// the line, for text that is not iptables-save output.
Result<SavedRuleset> parseSave(std::string_view text);

}  // namespace nmi::iptables
