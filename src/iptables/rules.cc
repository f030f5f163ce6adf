#include "iptables/rules.h"

#include <optional>
#include <utility>

#include "iptables/capture.h"

namespace nmi::iptables {

namespace {

// The number of rules in `hook` that are exactly the jump, and the index of the first.
struct JumpSearch {
  int count = 0;
  std::size_t first = 0;
};

JumpSearch findJumps(const SavedChain& hook, const std::string& jump_spec) {
  JumpSearch found;
  for (std::size_t i = 0; i < hook.rules.size(); ++i) {
    if (hook.rules[i].spec == jump_spec) {
      if (found.count == 0) {
        found.first = i;
      }
      ++found.count;
    }
  }
  return found;
}

std::string chainMismatch(const SavedChain& chain, const std::vector<std::string>& rules) {
  if (chain.rules.size() != rules.size()) {
    return "chain " + chain.name + " has " + std::to_string(chain.rules.size()) +
           " rules instead of " + std::to_string(rules.size());
  }
  for (std::size_t i = 0; i < rules.size(); ++i) {
    if (chain.rules[i].spec != rules[i]) {
      return "chain " + chain.name + " rule " + std::to_string(i + 1) + " is `" +
             chain.rules[i].spec + "`";
    }
  }
  return "";
}

}  // namespace

std::string dnatTargetFor(std::string_view listen_address) {
  return listen_address == "0.0.0.0" ? std::string("127.0.0.1") : std::string(listen_address);
}

DesiredTable desiredNat(const InterceptionSpec& spec) {
  DesiredTable t;
  t.table = "nat";
  t.chain = std::string(kNatChain);
  t.hook = "PREROUTING";
  t.rules = {"! -s 127.0.0.1/32 -d " + spec.metadata_ip + "/32 -p tcp -m tcp --dport " +
                 std::to_string(spec.metadata_port) + " -j DNAT --to-destination " +
                 spec.target_ip + ":" + std::to_string(spec.target_port),
             "-j RETURN"};
  return t;
}

DesiredTable desiredFilter(const InterceptionSpec& spec) {
  DesiredTable t;
  t.table = "filter";
  t.chain = std::string(kGuardChain);
  t.hook = "FORWARD";
  t.rules = {"-d " + spec.metadata_ip + "/32 -p tcp -m tcp --dport " +
             std::to_string(spec.metadata_port) +
             " -m conntrack ! --ctstate DNAT -j REJECT --reject-with tcp-reset"};
  return t;
}

TablePlan planTable(const SavedTable* observed, const DesiredTable& desired,
                    const InterceptionSpec& spec) {
  TablePlan plan;
  const SavedChain* chain = observed == nullptr ? nullptr : observed->find(desired.chain);
  if (chain == nullptr) {
    plan.refill_chain = true;
    plan.why.push_back("chain " + desired.chain + " missing");
  } else if (std::string mismatch = chainMismatch(*chain, desired.rules); !mismatch.empty()) {
    plan.refill_chain = true;
    plan.why.push_back(std::move(mismatch));
  }

  const SavedChain* hook = observed == nullptr ? nullptr : observed->find(desired.hook);
  const JumpSearch jumps = hook == nullptr ? JumpSearch{} : findJumps(*hook, desired.jumpSpec());
  if (jumps.count == 0) {
    plan.insert_jump_at = 1;
    plan.why.push_back("jump from " + desired.hook + " missing");
    return plan;
  }
  const auto address = parseIpv4(spec.metadata_ip);
  const Destination destination{address.value_or(0), spec.metadata_port};
  const std::optional<std::string> danger =
      dangerousRuleBefore(*observed, desired.hook, jumps.first, desired.chain, destination);
  if (danger) {
    plan.delete_jumps = jumps.count;
    plan.insert_jump_at = 1;
    plan.why.push_back("jump from " + desired.hook + " at position " +
                       std::to_string(jumps.first + 1) + " is behind `" + *danger + "`");
  } else if (jumps.count > 1) {
    plan.delete_jumps = jumps.count;
    plan.insert_jump_at = static_cast<int>(jumps.first) + 1;
    plan.why.push_back(std::to_string(jumps.count) + " jumps from " + desired.hook);
  }
  return plan;
}

Plan planReconcile(const SavedTable* nat, const SavedTable* filter, const InterceptionSpec& spec) {
  Plan plan;
  plan.nat = planTable(nat, desiredNat(spec), spec);
  plan.filter = planTable(filter, desiredFilter(spec), spec);
  return plan;
}

std::string restoreText(const DesiredTable& desired, const TablePlan& plan) {
  if (plan.empty()) {
    return "";
  }
  std::string text = "*" + desired.table + "\n";
  if (plan.refill_chain) {
    // With --noflush, declaring an existing chain flushes it: refilled in the same transaction.
    text += ":" + desired.chain + " - [0:0]\n";
    for (const std::string& rule : desired.rules) {
      text += "-A " + desired.chain + " " + rule + "\n";
    }
  }
  for (int i = 0; i < plan.delete_jumps; ++i) {
    text += "-D " + desired.hook + " " + desired.jumpSpec() + "\n";
  }
  if (plan.insert_jump_at > 0) {
    text += "-I " + desired.hook + " " + std::to_string(plan.insert_jump_at) + " " +
            desired.jumpSpec() + "\n";
  }
  text += "COMMIT\n";
  return text;
}

std::string cleanupText(const SavedTable& observed, std::string_view chain) {
  std::string body;
  for (const SavedChain& c : observed.chains) {
    if (c.name == chain) {
      continue;
    }
    for (const SavedRule& rule : c.rules) {
      for (std::size_t i = 0; i + 1 < rule.tokens.size(); ++i) {
        const std::string& word = rule.tokens[i].text;
        const bool jumps = word == "-j" || word == "--jump" || word == "-g" || word == "--goto";
        if (jumps && !rule.tokens[i].quoted && rule.tokens[i + 1].text == chain) {
          body += "-D " + c.name + " " + rule.spec + "\n";
          break;
        }
      }
    }
  }
  if (observed.find(chain) != nullptr) {
    body += "-F " + std::string(chain) + "\n-X " + std::string(chain) + "\n";
  }
  if (body.empty()) {
    return "";
  }
  return "*" + observed.name + "\n" + body + "COMMIT\n";
}

std::string describe(const Plan& plan) {
  std::string out;
  const auto add = [&out](std::string_view table, const TablePlan& p) {
    for (const std::string& why : p.why) {
      if (!out.empty()) {
        out += "; ";
      }
      out.append(table).append(": ").append(why);
    }
  };
  add("nat", plan.nat);
  add("filter", plan.filter);
  return out;
}

}  // namespace nmi::iptables
