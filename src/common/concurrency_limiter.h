#pragma once

#include <cstddef>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace nmi {

// Admission for work that must not wait: at most `total` permits at once, and at most `per_key`
// held by one key (a pod's address), so that one caller can never take the whole budget. A
// refused caller is told why at once; nothing queues. Keys are tracked only while they hold a
// permit (memory bounded by `total`). Thread-safe; must outlive its permits.
class ConcurrencyLimiter {
 public:
  ConcurrencyLimiter(std::size_t total, std::size_t per_key) : total_(total), per_key_(per_key) {}
  ConcurrencyLimiter(const ConcurrencyLimiter&) = delete;
  ConcurrencyLimiter& operator=(const ConcurrencyLimiter&) = delete;

  enum class Refusal { None, KeyLimit, TotalLimit };

  // A held permit (or a refusal); released when destroyed.
  class Permit {
   public:
    Permit(Permit&& other) noexcept
        : owner_(std::exchange(other.owner_, nullptr)),
          key_(std::move(other.key_)),
          refusal_(other.refusal_) {}
    Permit& operator=(Permit&&) = delete;
    Permit(const Permit&) = delete;
    Permit& operator=(const Permit&) = delete;
    ~Permit() {
      if (owner_ != nullptr) {
        owner_->release(key_);
      }
    }
    bool granted() const { return owner_ != nullptr; }
    Refusal refusal() const { return refusal_; }

   private:
    friend class ConcurrencyLimiter;
    Permit(ConcurrencyLimiter* owner, std::string key, Refusal refusal)
        : owner_(owner), key_(std::move(key)), refusal_(refusal) {}
    ConcurrencyLimiter* owner_;
    std::string key_;
    Refusal refusal_;
  };

  Permit tryAcquire(std::string_view key) {
    const std::lock_guard lock(mu_);
    if (in_use_ >= total_) {
      return {nullptr, {}, Refusal::TotalLimit};
    }
    auto it = by_key_.find(std::string(key));
    if (it != by_key_.end() && it->second >= per_key_) {
      return {nullptr, {}, Refusal::KeyLimit};
    }
    if (it == by_key_.end()) {
      it = by_key_.emplace(std::string(key), 0).first;
    }
    ++it->second;
    ++in_use_;
    return {this, it->first, Refusal::None};
  }

  std::size_t inUse() const {
    const std::lock_guard lock(mu_);
    return in_use_;
  }
  // Keys holding a permit now.
  std::size_t keys() const {
    const std::lock_guard lock(mu_);
    return by_key_.size();
  }

 private:
  void release(const std::string& key) {
    const std::lock_guard lock(mu_);
    --in_use_;
    if (auto it = by_key_.find(key); it != by_key_.end() && --it->second == 0) {
      by_key_.erase(it);
    }
  }

  const std::size_t total_;
  const std::size_t per_key_;
  mutable std::mutex mu_;
  std::size_t in_use_ = 0;
  std::unordered_map<std::string, std::size_t> by_key_;
};

}  // namespace nmi
