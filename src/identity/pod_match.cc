#include "identity/pod_match.h"

#include <algorithm>
#include <set>
#include <utility>

#include <fmt/format.h>

namespace nmi::identity {

namespace {

std::string podKey(const PodInfo& pod) {
  return pod.ns + "/" + pod.name;
}

bool livePhase(const PodInfo& pod) {
  return pod.phase == "Pending" || pod.phase == "Running";
}

// A pod that may hold the address now, by what the API server says.
bool liveClaimant(const PodInfo& pod) {
  return livePhase(pod) && !pod.host_network;
}

// RFC 3339 in UTC, to the second (as the API server writes deletionTimestamp).
std::string deadlineText(SystemTime deadline) {
  const auto day = std::chrono::floor<std::chrono::days>(deadline);
  const std::chrono::year_month_day ymd{day};
  const std::chrono::hh_mm_ss time{std::chrono::floor<std::chrono::seconds>(deadline - day)};
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", static_cast<int>(ymd.year()),
                     static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                     time.hours().count(), time.minutes().count(), time.seconds().count());
}

PodMatch pick(std::vector<PodInfo> pool, std::vector<std::string> refused) {
  PodMatch match;
  std::sort(refused.begin(), refused.end());
  match.refused = std::move(refused);
  if (pool.empty()) {
    return match;
  }
  if (pool.size() == 1) {
    match.kind = PodMatch::Kind::Found;
    match.pod = std::move(pool.front());
    return match;
  }
  match.kind = PodMatch::Kind::Conflict;
  for (const auto& pod : pool) {
    match.conflicting.push_back(podKey(pod));
  }
  std::sort(match.conflicting.begin(), match.conflicting.end());
  return match;
}

}  // namespace

std::string podClaimKey(const PodInfo& pod) {
  return pod.ns + "/" + pod.name + "/" + pod.uid;
}

PodMatch matchPodByIp(IpClaims claims, SystemTime now, const PodMatchPolicy& policy) {
  std::vector<PodInfo> running;
  std::vector<PodInfo> deleting;
  std::set<std::string, std::less<>> seen;
  for (auto& pod : claims.pods) {
    if (!liveClaimant(pod) || !seen.insert(podKey(pod)).second) {
      continue;
    }
    (pod.deleting ? deleting : running).push_back(std::move(pod));
  }
  if (!running.empty()) {
    return pick(std::move(running), {});
  }
  const std::set<std::string, std::less<>> lost(claims.lost.begin(), claims.lost.end());
  std::vector<PodInfo> in_window;
  std::vector<std::string> refused;
  for (auto& pod : deleting) {
    if (lost.contains(podClaimKey(pod))) {
      refused.push_back(podKey(pod) + " (being deleted; another pod has claimed the address)");
    } else if (now + policy.deletion_clock_allowance >= pod.deletion_deadline) {
      refused.push_back(podKey(pod) + " (being deleted; its grace period ended at " +
                        deadlineText(pod.deletion_deadline) + ")");
    } else {
      in_window.push_back(std::move(pod));
    }
  }
  return pick(std::move(in_window), std::move(refused));
}

std::vector<std::string> podsLosingIp(const std::vector<PodInfo>& pods) {
  std::vector<std::string> out;
  for (const auto& pod : pods) {
    if (!pod.deleting) {
      continue;
    }
    const std::string key = podClaimKey(pod);
    const bool claimed_by_another = std::any_of(pods.begin(), pods.end(), [&](const PodInfo& o) {
      return liveClaimant(o) && podClaimKey(o) != key;
    });
    if (claimed_by_another) {
      out.push_back(key);
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace nmi::identity
