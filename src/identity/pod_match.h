#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "common/clock.h"
#include "identity/types.h"

namespace nmi::identity {

// ---- Which pod sent a request --------------------------------------------------------------

// The key under which the pod cache remembers a pod at an address: ns/name/uid (a pod deleted and
// created again under its name is another pod).
std::string podClaimKey(const PodInfo& pod);

// The pods reporting one address, and what the pod cache remembers about the address.
struct IpClaims {
  std::vector<PodInfo> pods;  // reporting the address now (status.podIPs), any phase
  // podClaimKey() of pods in `pods` that lost the address for good: another live pod reported it
  // while they were being deleted (podsLosingIp). Unordered.
  std::vector<std::string> lost;
};

struct PodMatch {
  enum class Kind : std::uint8_t {
    Unknown,   // no live pod may be served at the address
    Found,     // `pod`
    Conflict,  // several pods claim the address; `conflicting` lists them as ns/name, sorted
  };
  Kind kind = Kind::Unknown;
  PodInfo pod;
  std::vector<std::string> conflicting;
  // Deleting pods at the address that were not considered, as "ns/name (why)", sorted: for the
  // log only.
  std::vector<std::string> refused;
};

struct PodMatchPolicy {
  // A pod being deleted is served only before its metadata.deletionTimestamp (the time of the
  // deletion plus its grace period, by the API server's clock) minus this allowance, compared
  // with the node's wall clock: a node clock behind the API server's by less than the allowance
  // cannot stretch the window (docs/compat.md, "Pods and addresses").
  std::chrono::milliseconds deletion_clock_allowance{1'000};
};

// Pure. Picks the pod behind an address. Only pods in phase Pending or Running and not on the
// host network count; the same ns/name listed twice counts once. Pods not being deleted win: one
// is Found, several are a Conflict. With none, pods being deleted are considered the same way,
// but only those still inside their deletion grace window (now < deletion_deadline - allowance)
// that have not lost the address (claims.lost). Nothing left: Unknown.
PodMatch matchPodByIp(IpClaims claims, SystemTime now, const PodMatchPolicy& policy = {});

// Pure. Of `pods`, all reporting one address now, the podClaimKey() of those that lose it: pods
// being deleted while another live pod (Pending or Running, another podClaimKey) reports the same
// address. The pod cache remembers the answer for as long as the losing pod reports the address,
// also after the other pod is gone again. Sorted.
std::vector<std::string> podsLosingIp(const std::vector<PodInfo>& pods);

}  // namespace nmi::identity
