#pragma once

#include "common/clock.h"

namespace nmi::http {

// The clock of BeastHttpClient (nmi's one HTTP client, which kube's transport uses too). Its
// deadlines end up in Beast stream timeouts (tcp_stream::expires_at), which run on the real steady
// clock, so they read time from the seam's real side: a FakeClock could not drive those timers.
// Their tests run against loopback servers in real time.
inline const Clock& transportClock() {
  return systemClock();
}

}  // namespace nmi::http
