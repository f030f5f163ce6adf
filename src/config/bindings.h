#pragma once

// Bindings: how one flag's text becomes a Config field (parse, check, store), and what --help
// shows for it. Internal to config/.

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"

namespace nmi::config {

// Converts one occurrence's text and stores it; returns why the text is invalid.
using Applier = std::function<std::optional<std::string>(const std::string& text)>;

struct Binding {
  std::string type;          // shown in --help after the name ("int", "port"); empty for bools
  std::string default_text;  // shown as (default ...); empty shows nothing
  bool is_bool = false;
  Applier apply;
};

// Bindings into Config fields. Each reads the field's current value as its default.
Binding boolInto(bool& field);
Binding intInto(int& field, int min, int max);  // strconv.ParseInt(s, 0, 64) spellings
Binding levelInto(int& field);                  // klog -v: decimal, >= 0
Binding secondsInto(std::chrono::seconds& field, int min, int max);
Binding millisFromSecondsInto(std::chrono::milliseconds& field, int min, int max);
Binding millisInto(std::chrono::milliseconds& field, int min, int max);
Binding portInto(std::uint16_t& field);
Binding ipv4Into(std::string& field, bool allow_unspecified);
Binding hostPortInto(std::string& field);
// A comma-separated list of host, host:port, [v6] or [v6]:port entries, appended to `field` (the
// flag may be given several times; empty items are skipped).
Binding authorityListInto(std::vector<std::string>& field);
Binding stringInto(std::string& field);
Binding userAgentInto(std::string& field);  // no control characters (it goes into a header)
Binding positiveDoubleInto(double& field);
Binding operationModeInto(OperationMode& field);
Binding logFormatInto(LogFormat& field);
Binding iptablesBackendInto(IptablesBackend& field);  // auto, nft or legacy
// Accepted for compatibility: checked like the original checks it, then dropped.
Binding ignoredBool(bool default_value);
Binding ignoredValue(std::string type, std::string default_text,
                     std::function<bool(std::string_view)> valid, std::string_view why_invalid);

}  // namespace nmi::config
