#pragma once

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/change_notifier.h"
#include "common/result.h"
#include "identity/source.h"

namespace nmi::testing {

// An in-memory IdentitySource: plain lists that tests fill. Every mutator notifies changes(), as
// the real sources do after each change, so waiting requests re-evaluate. Counts the lookups that
// cost the real sources most. Thread-safe.
class FakeIdentitySource final : public identity::IdentitySource {
 public:
  // Waits on changes() run on `clock`'s timers (a FakeClock's fire on advance()).
  explicit FakeIdentitySource(const Clock& clock = systemClock()) : changes_(clock) {}

  void setSynced(bool synced, std::string reason = {}) {
    mutate([&] {
      synced_ = synced;
      not_ready_reason_ = std::move(reason);
    });
  }
  void addPod(identity::PodInfo pod) {
    mutate([&] { pods_.push_back(std::move(pod)); });
  }
  void removePod(std::string_view ns, std::string_view name) {
    mutate([&] {
      std::erase_if(pods_,
                    [&](const identity::PodInfo& p) { return p.ns == ns && p.name == name; });
    });
  }
  void addAssigned(identity::AzureAssignedIdentity a) {
    mutate([&] { assigned_.push_back(std::move(a)); });
  }
  void addBinding(identity::AzureIdentityBinding b) {
    mutate([&] { bindings_.push_back(std::move(b)); });
  }
  void addIdentity(identity::AzureIdentity id) {
    mutate([&] { identities_.push_back(std::move(id)); });
  }
  void addException(identity::AzurePodIdentityException e) {
    mutate([&] { exceptions_.push_back(std::move(e)); });
  }
  void setSecret(const identity::SecretRef& ref, identity::SecretData data) {
    mutate([&] { secrets_[ref.ns + "/" + ref.name] = std::move(data); });
  }

  int assignedQueries() const {
    const std::lock_guard lock(mu_);
    return assigned_queries_;
  }
  int identityQueries() const {
    const std::lock_guard lock(mu_);
    return identity_queries_;
  }

  bool hasSynced() const override {
    const std::lock_guard lock(mu_);
    return synced_;
  }
  std::string notReadyReason() const override {
    const std::lock_guard lock(mu_);
    return synced_ ? std::string() : not_ready_reason_;
  }
  std::chrono::seconds staleness() const override { return std::chrono::seconds{0}; }
  std::vector<identity::PodInfo> podsByIp(std::string_view ip) const override {
    const std::lock_guard lock(mu_);
    std::vector<identity::PodInfo> out;
    for (const auto& p : pods_) {
      if (!p.host_network && std::ranges::find(p.ips, ip) != p.ips.end()) {
        out.push_back(p);
      }
    }
    return out;
  }
  identity::IpClaims ipClaims(std::string_view ip) const override {
    return identity::IpClaims{podsByIp(ip), {}};
  }
  std::optional<identity::PodInfo> podByName(std::string_view ns,
                                             std::string_view name) const override {
    const std::lock_guard lock(mu_);
    for (const auto& p : pods_) {
      if (p.ns == ns && p.name == name) {
        return p;
      }
    }
    return std::nullopt;
  }
  std::vector<identity::AzureAssignedIdentity> assignedIdentities(
      std::string_view pod_ns, std::string_view pod_name) const override {
    const std::lock_guard lock(mu_);
    ++assigned_queries_;
    std::vector<identity::AzureAssignedIdentity> out;
    for (const auto& a : assigned_) {
      if (a.pod_namespace == pod_ns && a.pod == pod_name) {
        out.push_back(a);
      }
    }
    return out;
  }
  std::vector<identity::AzureIdentityBinding> bindingsBySelector(
      std::string_view selector) const override {
    const std::lock_guard lock(mu_);
    std::vector<identity::AzureIdentityBinding> out;
    for (const auto& b : bindings_) {
      if (b.selector == selector) {
        out.push_back(b);
      }
    }
    return out;
  }
  std::optional<identity::AzureIdentity> identity(std::string_view ns,
                                                  std::string_view name) const override {
    const std::lock_guard lock(mu_);
    ++identity_queries_;
    for (const auto& id : identities_) {
      if (id.ns == ns && id.name == name) {
        return id;
      }
    }
    return std::nullopt;
  }
  std::vector<identity::AzurePodIdentityException> exceptions(std::string_view ns) const override {
    const std::lock_guard lock(mu_);
    std::vector<identity::AzurePodIdentityException> out;
    for (const auto& e : exceptions_) {
      if (e.ns == ns) {
        out.push_back(e);
      }
    }
    return out;
  }
  Task<Result<identity::SecretData>> secret(const identity::SecretRef& ref) override {
    std::optional<identity::SecretData> found;
    {
      const std::lock_guard lock(mu_);
      if (const auto it = secrets_.find(ref.ns + "/" + ref.name); it != secrets_.end()) {
        found = it->second;
      }
    }
    if (!found) {
      co_return makeError(ErrorCode::NotFound, "secret " + ref.ns + "/" + ref.name + " not found");
    }
    co_return std::move(*found);
  }
  ChangeNotifier& changes() override { return changes_; }

 private:
  template <class F>
  void mutate(F&& change) {
    {
      const std::lock_guard lock(mu_);
      std::forward<F>(change)();
    }
    changes_.notify();
  }

  mutable std::mutex mu_;
  bool synced_ = true;
  std::string not_ready_reason_;
  std::vector<identity::PodInfo> pods_;
  std::vector<identity::AzureAssignedIdentity> assigned_;
  std::vector<identity::AzureIdentityBinding> bindings_;
  std::vector<identity::AzureIdentity> identities_;
  std::vector<identity::AzurePodIdentityException> exceptions_;
  std::map<std::string, identity::SecretData> secrets_;
  mutable int assigned_queries_ = 0;
  mutable int identity_queries_ = 0;
  ChangeNotifier changes_;
};

}  // namespace nmi::testing
