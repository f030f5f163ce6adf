#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"
#include "kube/decode.h"
#include "kube/watch_decode.h"

namespace nmi::kube {

// What a Reflector feeds: a cache of one kind of object, filled by a list and kept current by
// watch events. Objects arrive as JSON from the API server and are decoded at once into compact
// structs; the JSON is not kept.
class ObjectStore {
 public:
  virtual ~ObjectStore() = default;

  // A relist: beginReplace(), stage() each listed object, then commitReplace() swaps the staged
  // set in at once (abortReplace() drops it). Objects that do not decode are skipped: stage()
  // returns the error for the log.
  virtual void beginReplace() = 0;
  virtual Result<void> stage(const nlohmann::json& object) = 0;
  virtual void commitReplace() = 0;
  virtual void abortReplace() = 0;

  // A watch event (ADDED, MODIFIED or DELETED). An object that does not decode is removed (its
  // previous version can no longer be trusted) and the error returned for the log.
  virtual Result<void> apply(EventType type, const nlohmann::json& object) = 0;

  virtual std::size_t size() const = 0;
};

// An unambiguous key for a namespace/name pair.
std::string objectKey(std::string_view ns, std::string_view name);

// Objects of type T by key, with secondary indexes (each maps an index value to the objects
// carrying it). Lookups are O(1) plus the size of the answer; answers are copies, ordered by key.
// Objects are shared between the main map and the indexes (one copy in memory). Thread-safe:
// readers share a lock, writers take it exclusively.
template <class T>
class IndexedStore {
 public:
  // The index values of an object (none, one or several).
  using IndexFn = std::function<std::vector<std::string>(const T&)>;

  explicit IndexedStore(std::vector<IndexFn> indexes = {})
      : index_fns_(std::move(indexes)), data_(std::make_shared<Data>(index_fns_.size())) {}

  // Replaces everything at once.
  void replace(std::vector<std::pair<std::string, T>> items) {
    auto fresh = std::make_shared<Data>(index_fns_.size());
    for (auto& [key, value] : items) {
      insertLocked(*fresh, key, std::make_shared<const T>(std::move(value)));
    }
    const std::unique_lock lock(mu_);
    data_.swap(fresh);
  }

  void upsert(const std::string& key, T value) {
    auto item = std::make_shared<const T>(std::move(value));
    const std::unique_lock lock(mu_);
    eraseLocked(*data_, key);
    insertLocked(*data_, key, std::move(item));
  }

  // True when something was removed.
  bool erase(const std::string& key) {
    const std::unique_lock lock(mu_);
    return eraseLocked(*data_, key);
  }

  std::optional<T> get(std::string_view key) const {
    const std::shared_lock lock(mu_);
    const auto it = data_->by_key.find(std::string(key));
    if (it == data_->by_key.end()) {
      return std::nullopt;
    }
    return *it->second;
  }

  std::vector<T> byIndex(std::size_t index, std::string_view value) const {
    const std::shared_lock lock(mu_);
    std::vector<T> out;
    const auto& map = data_->indexes.at(index);
    const auto it = map.find(std::string(value));
    if (it != map.end()) {
      out.reserve(it->second.size());
      for (const auto& [key, item] : it->second) {
        out.push_back(*item);
      }
    }
    return out;
  }

  std::size_t size() const {
    const std::shared_lock lock(mu_);
    return data_->by_key.size();
  }

  // Every object (tests, counts).
  std::vector<T> all() const {
    const std::shared_lock lock(mu_);
    std::map<std::string, std::shared_ptr<const T>> sorted(data_->by_key.begin(),
                                                           data_->by_key.end());
    std::vector<T> out;
    out.reserve(sorted.size());
    for (const auto& [key, item] : sorted) {
      out.push_back(*item);
    }
    return out;
  }

  // Index entries (values) of one index, for tests: no index value is left without objects.
  std::size_t indexSizeForTest(std::size_t index) const {
    const std::shared_lock lock(mu_);
    return data_->indexes.at(index).size();
  }

 private:
  using Ptr = std::shared_ptr<const T>;
  struct Data {
    explicit Data(std::size_t index_count) : indexes(index_count) {}
    std::unordered_map<std::string, Ptr> by_key;
    std::vector<std::unordered_map<std::string, std::map<std::string, Ptr>>> indexes;
  };

  void insertLocked(Data& data, const std::string& key, Ptr item) {
    for (std::size_t i = 0; i < index_fns_.size(); ++i) {
      for (const auto& value : index_fns_[i](*item)) {
        data.indexes[i][value].insert_or_assign(key, item);
      }
    }
    data.by_key.insert_or_assign(key, std::move(item));
  }

  bool eraseLocked(Data& data, const std::string& key) {
    const auto it = data.by_key.find(key);
    if (it == data.by_key.end()) {
      return false;
    }
    for (std::size_t i = 0; i < index_fns_.size(); ++i) {
      for (const auto& value : index_fns_[i](*it->second)) {
        const auto entry = data.indexes[i].find(value);
        if (entry != data.indexes[i].end()) {
          entry->second.erase(key);
          if (entry->second.empty()) {
            data.indexes[i].erase(entry);
          }
        }
      }
    }
    data.by_key.erase(it);
    return true;
  }

  const std::vector<IndexFn> index_fns_;
  mutable std::shared_mutex mu_;
  std::shared_ptr<Data> data_;
};

// An ObjectStore of one kind over an IndexedStore: `decode` turns JSON into T, `keep` filters
// (objects it rejects are treated as absent), `key` names them.
template <class T>
class KindStore : public ObjectStore {
 public:
  struct Traits {
    std::function<Result<T>(const nlohmann::json&)> decode;
    std::function<std::string(const T&)> key;
    std::function<bool(const T&)> keep;  // may be empty: keep everything
    std::vector<typename IndexedStore<T>::IndexFn> indexes;
  };

  explicit KindStore(Traits traits)
      : traits_(std::move(traits)), store_(std::move(traits_.indexes)) {}

  void beginReplace() override {
    const std::lock_guard lock(staging_mu_);
    staged_.clear();
  }

  Result<void> stage(const nlohmann::json& object) override {
    auto decoded = traits_.decode(object);
    if (!decoded) {
      return decoded.error();
    }
    if (traits_.keep && !traits_.keep(*decoded)) {
      return {};
    }
    std::string key = traits_.key(*decoded);
    const std::lock_guard lock(staging_mu_);
    staged_.emplace_back(std::move(key), std::move(*decoded));
    return {};
  }

  void commitReplace() override {
    std::vector<std::pair<std::string, T>> staged;
    {
      const std::lock_guard lock(staging_mu_);
      staged.swap(staged_);
    }
    store_.replace(std::move(staged));
  }

  void abortReplace() override {
    const std::lock_guard lock(staging_mu_);
    staged_.clear();
    staged_.shrink_to_fit();
  }

  Result<void> apply(EventType type, const nlohmann::json& object) override {
    if (type == EventType::Deleted) {
      auto meta = decodeObjectMeta(object);
      if (!meta) {
        return meta.error();
      }
      store_.erase(objectKey(meta->ns, meta->name));
      return {};
    }
    auto decoded = traits_.decode(object);
    if (!decoded) {
      if (auto meta = decodeObjectMeta(object)) {
        store_.erase(objectKey(meta->ns, meta->name));
      }
      return decoded.error();
    }
    std::string key = traits_.key(*decoded);
    if (traits_.keep && !traits_.keep(*decoded)) {
      store_.erase(key);
      return {};
    }
    store_.upsert(key, std::move(*decoded));
    return {};
  }

  std::size_t size() const override { return store_.size(); }

  const IndexedStore<T>& store() const { return store_; }

 private:
  Traits traits_;
  IndexedStore<T> store_;
  std::mutex staging_mu_;
  std::vector<std::pair<std::string, T>> staged_;
};

}  // namespace nmi::kube
