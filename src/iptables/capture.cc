#include "iptables/capture.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <map>
#include <set>
#include <utility>
#include <vector>

namespace nmi::iptables {

namespace {

constexpr int kMaxDepth = 16;

// An option of a rule: its module ("" for the base options, the `-m` module otherwise, "@target"
// after `-j`), name, whether `!` negates it, and its values.
struct Option {
  std::string module;
  std::string name;
  bool negated = false;
  std::vector<std::string> values;
};

struct ParsedRule {
  std::vector<Option> options;  // matches only
  std::string target;           // "" when the rule has none
  bool is_goto = false;
};

bool isOptionWord(const Token& t) {
  return !t.quoted && t.text.size() >= 2 && t.text[0] == '-' && t.text != "-";
}

ParsedRule parseRule(const SavedRule& rule) {
  ParsedRule out;
  std::string module;
  bool in_target = false;
  bool negate_next = false;
  const std::vector<Token>& t = rule.tokens;
  std::size_t i = 0;
  while (i < t.size()) {
    if (!t[i].quoted && t[i].text == "!") {
      negate_next = true;
      ++i;
      continue;
    }
    if (!isOptionWord(t[i])) {
      ++i;  // a stray value: nothing to learn from it
      continue;
    }
    Option option;
    option.name = t[i].text;
    option.negated = negate_next;
    negate_next = false;
    ++i;
    // Values: the following non-option words. An old-style "--opt ! value" negation is a `!`
    // that is the first value and is followed by a value.
    while (i < t.size() && !isOptionWord(t[i])) {
      if (!t[i].quoted && t[i].text == "!") {
        if (option.values.empty() && i + 1 < t.size() && !isOptionWord(t[i + 1])) {
          option.negated = !option.negated;
          ++i;
          continue;
        }
        break;
      }
      option.values.push_back(t[i].text);
      ++i;
    }
    const std::string first = option.values.empty() ? std::string() : option.values.front();
    if (option.name == "-m" || option.name == "--match") {
      module = first;
      continue;
    }
    if (option.name == "-j" || option.name == "--jump" || option.name == "-g" ||
        option.name == "--goto") {
      out.target = first;
      out.is_goto = option.name == "-g" || option.name == "--goto";
      in_target = true;
      continue;
    }
    if (option.name == "-c" || option.name == "--set-counters") {
      continue;
    }
    if (in_target) {
      continue;  // the target's own options do not restrict the match
    }
    const bool base = option.name.size() == 2 || option.name == "--source" ||
                      option.name == "--destination" || option.name == "--protocol" ||
                      option.name == "--in-interface" || option.name == "--out-interface" ||
                      option.name == "--fragment";
    option.module = base ? std::string() : module;
    out.options.push_back(std::move(option));
  }
  return out;
}

std::optional<unsigned> parseNumber(std::string_view text, unsigned max) {
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value > max) {
    return std::nullopt;
  }
  return value;
}

// "a.b.c.d", "a.b.c.d/len" or "a.b.c.d/m.m.m.m": does it contain `address`? nullopt when the
// text cannot be read.
std::optional<bool> cidrContains(std::string_view cidr, std::uint32_t address) {
  const std::size_t slash = cidr.find('/');
  const auto base = parseIpv4(cidr.substr(0, slash));
  if (!base) {
    return std::nullopt;
  }
  std::uint32_t mask = 0xffffffffU;
  if (slash != std::string_view::npos) {
    const std::string_view m = cidr.substr(slash + 1);
    if (m.find('.') != std::string_view::npos) {
      const auto dotted = parseIpv4(m);
      if (!dotted) {
        return std::nullopt;
      }
      mask = *dotted;
    } else {
      const auto len = parseNumber(m, 32);
      if (!len) {
        return std::nullopt;
      }
      mask = *len == 0 ? 0U : 0xffffffffU << (32U - *len);
    }
  }
  return (address & mask) == (*base & mask);
}

// "80", "1000:2000", ":2000", "1000:" — does it contain `port`? nullopt when unreadable.
std::optional<bool> portSpecContains(std::string_view spec, std::uint16_t port) {
  const std::size_t colon = spec.find(':');
  if (colon == std::string_view::npos) {
    const auto p = parseNumber(spec, 65535);
    if (!p) {
      return std::nullopt;
    }
    return *p == port;
  }
  const std::string_view lo_text = spec.substr(0, colon);
  const std::string_view hi_text = spec.substr(colon + 1);
  const auto lo = lo_text.empty() ? std::optional<unsigned>(0) : parseNumber(lo_text, 65535);
  const auto hi = hi_text.empty() ? std::optional<unsigned>(65535) : parseNumber(hi_text, 65535);
  if (!lo || !hi) {
    return std::nullopt;
  }
  return port >= *lo && port <= *hi;
}

// "80,443:445" (multiport lists).
std::optional<bool> portListContains(std::string_view list, std::uint16_t port) {
  bool any = false;
  while (true) {
    const std::size_t comma = list.find(',');
    const auto one = portSpecContains(list.substr(0, comma), port);
    if (!one) {
      return std::nullopt;
    }
    any = any || *one;
    if (comma == std::string_view::npos) {
      return any;
    }
    list.remove_prefix(comma + 1);
  }
}

bool coversTcp(std::string_view proto) {
  return proto == "tcp" || proto == "6" || proto == "all" || proto == "0";
}

// --dst-type TYPES (comma-separated): the metadata address is UNICAST, LOCAL or UNSPEC.
bool addrTypeCouldMatch(std::string_view types, bool negated) {
  constexpr std::array<std::string_view, 3> kPossible = {"UNICAST", "LOCAL", "UNSPEC"};
  std::set<std::string_view> listed;
  while (!types.empty()) {
    const std::size_t comma = types.find(',');
    listed.insert(types.substr(0, comma));
    types = comma == std::string_view::npos ? std::string_view() : types.substr(comma + 1);
  }
  const auto in_list = [&listed](std::string_view t) { return listed.count(t) > 0; };
  if (negated) {
    return !std::all_of(kPossible.begin(), kPossible.end(), in_list);
  }
  return std::any_of(kPossible.begin(), kPossible.end(), in_list);
}

// Whether one option could hold for a TCP packet to `d`. Unknown options could.
bool optionCouldMatch(const Option& o, const Destination& d) {
  const std::string value = o.values.empty() ? std::string() : o.values.front();
  const auto apply = [&o](std::optional<bool> holds) {
    return !holds.has_value() || (*holds != o.negated);
  };
  if (o.module.empty()) {
    if (o.name == "-d" || o.name == "--destination") {
      return apply(cidrContains(value, d.address));
    }
    if (o.name == "-p" || o.name == "--protocol") {
      return apply(coversTcp(value));
    }
    return true;  // source, interfaces, fragments: any pod could send such a packet
  }
  if (o.module == "udp" || o.module == "icmp" || o.module == "sctp" || o.module == "dccp" ||
      o.module == "udplite") {
    return false;  // these modules never match a TCP packet
  }
  if (o.module == "tcp" && (o.name == "--dport" || o.name == "--destination-port")) {
    return apply(portSpecContains(value, d.port));
  }
  if (o.module == "multiport" && (o.name == "--dports" || o.name == "--destination-ports")) {
    return apply(portListContains(value, d.port));
  }
  if (o.module == "addrtype" && o.name == "--dst-type") {
    return addrTypeCouldMatch(value, o.negated);
  }
  return true;
}

bool targetIsHarmless(std::string_view target) {
  constexpr std::array<std::string_view, 20> kHarmless = {
      "",    "DROP",    "REJECT",   "LOG",      "NFLOG", "MARK",      "CONNMARK",
      "CT",  "NOTRACK", "TRACE",    "TCPMSS",   "DSCP",  "TOS",       "TTL",
      "SET", "AUDIT",   "CHECKSUM", "CLASSIFY", "SNAT",  "MASQUERADE"};
  return std::find(kHarmless.begin(), kHarmless.end(), target) != kHarmless.end();
}

bool targetCaptures(std::string_view table, std::string_view target) {
  if (target == "ACCEPT") {
    return true;
  }
  return table == "nat" && (target == "DNAT" || target == "REDIRECT" || target == "NETMAP");
}

class Analysis {
 public:
  Analysis(const SavedTable& table, std::string_view own_chain, const Destination& d)
      : table_(table), own_chain_(own_chain), d_(d) {}

  // Could this rule, met in a chain whose RETURN lets the built-in policy apply
  // (`return_is_policy`), take the traffic away?
  bool ruleCaptures(const SavedRule& rule, bool return_is_policy, int depth) {
    if (!ruleCouldMatch(rule, d_)) {
      return false;
    }
    const ParsedRule parsed = parseRule(rule);
    const std::string& target = parsed.target;
    if (target == own_chain_ || targetIsHarmless(target)) {
      return false;
    }
    if (target == "RETURN") {
      return return_is_policy;
    }
    if (targetCaptures(table_.name, target)) {
      return true;
    }
    const SavedChain* chain = table_.find(target);
    if (chain == nullptr || chain->builtIn()) {
      return true;  // an unknown target or extension (NFQUEUE, ...): assume the worst
    }
    // -j: a RETURN there comes back here. -g: a RETURN there returns from this chain.
    return chainCaptures(*chain, parsed.is_goto && return_is_policy, depth + 1);
  }

  bool chainCaptures(const SavedChain& chain, bool return_is_policy, int depth) {
    if (depth > kMaxDepth) {
      return true;
    }
    const std::pair<std::string, bool> key{chain.name, return_is_policy};
    if (const auto it = memo_.find(key); it != memo_.end()) {
      return it->second;
    }
    memo_[key] = true;  // a cycle counts as dangerous
    bool captures = false;
    for (const SavedRule& rule : chain.rules) {
      if (ruleCaptures(rule, return_is_policy, depth)) {
        captures = true;
        break;
      }
    }
    memo_[key] = captures;
    return captures;
  }

 private:
  const SavedTable& table_;
  std::string_view own_chain_;
  Destination d_;
  std::map<std::pair<std::string, bool>, bool> memo_;
};

}  // namespace

std::optional<std::uint32_t> parseIpv4(std::string_view text) {
  std::uint32_t out = 0;
  for (int part = 0; part < 4; ++part) {
    const std::size_t dot = text.find('.');
    if ((part < 3) != (dot != std::string_view::npos)) {
      return std::nullopt;
    }
    const std::string_view piece = text.substr(0, dot);
    if (piece.empty() || piece.size() > 3) {
      return std::nullopt;
    }
    const auto value = parseNumber(piece, 255);
    if (!value) {
      return std::nullopt;
    }
    out = (out << 8U) | *value;
    text = dot == std::string_view::npos ? std::string_view() : text.substr(dot + 1);
  }
  return out;
}

bool ruleCouldMatch(const SavedRule& rule, const Destination& destination) {
  const ParsedRule parsed = parseRule(rule);
  return std::all_of(parsed.options.begin(), parsed.options.end(),
                     [&destination](const Option& o) { return optionCouldMatch(o, destination); });
}

std::optional<std::string> dangerousRuleBefore(const SavedTable& table, std::string_view hook,
                                               std::size_t before, std::string_view own_chain,
                                               const Destination& destination) {
  const SavedChain* chain = table.find(hook);
  if (chain == nullptr) {
    return std::nullopt;
  }
  Analysis analysis(table, own_chain, destination);
  const std::size_t end = std::min(before, chain->rules.size());
  for (std::size_t i = 0; i < end; ++i) {
    if (analysis.ruleCaptures(chain->rules[i], /*return_is_policy=*/true, 0)) {
      return chain->rules[i].spec;
    }
  }
  return std::nullopt;
}

}  // namespace nmi::iptables
