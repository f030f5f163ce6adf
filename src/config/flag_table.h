#pragma once

// Every flag nmi accepts, in --help order. Internal to config/.

#include "config/config.h"
#include "config/flag_set.h"

namespace nmi::config {

// Binds each flag to its field in `config` (whose current values become the defaults) and
// --version to `version`. Both must outlive `flags`.
void registerFlags(FlagSet& flags, Config& config, bool& version);

}  // namespace nmi::config
