#pragma once

// Test helper: the iptables-save samples of tests/testdata/iptables (make_samples.sh).

#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "iptables/save_parser.h"

namespace nmi::iptables::testing {

inline std::string sample(const std::string& name) {
  std::ifstream in(std::string(NMI_IPTABLES_TESTDATA) + "/" + name);
  EXPECT_TRUE(in.good()) << "missing sample " << name;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The one table of a sample.
inline SavedTable sampleTable(const std::string& name, const std::string& table) {
  auto parsed = parseSave(sample(name));
  EXPECT_TRUE(parsed.has_value()) << (parsed ? "" : parsed.error().message);
  if (!parsed || parsed->find(table) == nullptr) {
    ADD_FAILURE() << "no table " << table << " in " << name;
    return SavedTable{};
  }
  return *parsed->find(table);
}

// A table parsed from inline text ("*nat\n...COMMIT\n").
inline SavedTable tableOf(const std::string& text) {
  auto parsed = parseSave(text);
  EXPECT_TRUE(parsed.has_value()) << (parsed ? "" : parsed.error().message);
  if (!parsed || parsed->tables.empty()) {
    ADD_FAILURE() << "no table in:\n" << text;
    return SavedTable{};
  }
  return parsed->tables.front();
}

}  // namespace nmi::iptables::testing
