#pragma once

#include <optional>
#include <string_view>

#include "common/clock.h"

namespace nmi::kube {

// Pure. A Kubernetes timestamp (metav1.Time / MicroTime: RFC 3339, "2006-01-02T15:04:05Z",
// optionally with a fraction of a second and a numeric offset instead of "Z") as a point in
// time. Anything else, including impossible dates and times before 1970, is nullopt. Leap seconds
// (":60") are refused: the API server never writes them.
std::optional<SystemTime> parseKubeTime(std::string_view text);

}  // namespace nmi::kube
