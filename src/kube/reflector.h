#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include <spdlog/logger.h>

#include "common/cancellation.h"
#include "common/clock.h"
#include "common/task.h"
#include "kube/api_client.h"
#include "kube/backoff.h"
#include "kube/store.h"
#include "kube/watch_decode.h"

namespace nmi::kube {

struct ReflectorOptions {
  std::string resource;  // "pods": logs, readiness, errors
  std::string path;      // the collection, e.g. "/api/v1/pods"
  std::string label_selector;
  std::string field_selector;
  // true: cluster-wide lists in pages of page_limit (consistent reads, `continue`); false: one
  // list with resourceVersion=0 (served from the API server's watch cache; relists after a
  // watch's 410 ask for "not older than" the last version seen).
  bool paginate = true;
  int page_limit = 500;
  std::size_t max_list_bytes = kMaxListPageBytes;
  std::size_t max_event_bytes = kMaxWatchEventBytes;
  std::chrono::milliseconds list_timeout{60'000};
  std::chrono::seconds min_watch_timeout{240};  // timeoutSeconds of a watch: min..max
  std::chrono::seconds max_watch_timeout{300};
  WatchTimeouts watch_timeouts;  // connect/head deadline and silence timeout
  BackoffPolicy backoff;
  // A watch that ends normally sooner than this without any event counts as a failure (backoff),
  // so that a server closing watches at once is not hammered.
  std::chrono::milliseconds min_healthy_watch{1'000};
};

struct ReflectorHooks {
  // After every applied event and every relist (wake waiters, update gauges).
  std::function<void()> changed;
  // One failed API call: operation is "list" or "watch" (metrics).
  std::function<void(std::string_view operation)> failed;
};

struct ReflectorStats {
  std::uint64_t lists = 0;    // successful (re)lists
  std::uint64_t watches = 0;  // watches opened
  std::uint64_t events = 0;   // ADDED/MODIFIED/DELETED applied
  std::uint64_t bookmarks = 0;
  std::uint64_t bad_objects = 0;  // objects that did not decode (skipped or removed)
  std::uint64_t failures = 0;     // failed lists and watches
  std::uint64_t silences = 0;     // watches closed for silence
  std::uint64_t gone = 0;         // 410s (HTTP or ERROR events)
};

// What decides whether a cache that has synced may be behind the API server.
struct FreshnessInput {
  bool synced = false;     // the first list has completed
  bool relisting = false;  // a later list is running (the watch's history was lost)
  int failures = 0;        // failed lists and watches since one last worked
  std::chrono::milliseconds since_contact{0};  // since the API server was last heard from
  // A healthy reflector hears from the API server at least this often: a watch's silence limit
  // (the watch is then re-opened) plus the head deadline of the re-opening.
  std::chrono::milliseconds limit{0};
  std::string last_error;
};

// Pure. Why the cache may be behind the API server ("" when it is current): the reflector is in
// backoff after a failed list or watch, it is listing again, or nothing came from the API server
// for longer than `limit` (a watch silent past its limit whose re-opening hangs). A quiet watch
// that is re-opened after its silence limit is current: it resumes where it stopped. A cache not
// synced yet is not "stale" (readiness waits for it instead).
std::string staleReason(const FreshnessInput& input);

struct Freshness {
  bool stale = false;
  std::string reason;                      // staleReason(); "" when current
  std::chrono::milliseconds staleness{0};  // since the API server was last heard from; 0 if current
};

// Keeps one ObjectStore current: list → replace the store → watch from the list's
// resourceVersion (bookmarks on) → when the watch ends normally, watch again from the last
// version seen → on 410 Gone (HTTP, or an ERROR event with code 410) list again → on errors wait
// (BackoffPolicy, Retry-After of a 429 honoured) and retry. A watch silent for the silence
// timeout is closed and re-opened. Every applied event and relist calls hooks.changed.
//
// run() must be awaited on a strand; the status accessors are thread-safe. The transport,
// store and clock (which also times the backoff) must outlive run().
class Reflector {
 public:
  Reflector(ApiTransport& transport, ObjectStore& store, ReflectorOptions options,
            const Clock& clock, ReflectorHooks hooks, std::shared_ptr<spdlog::logger> logger,
            std::function<double()> random = {});

  // Runs until `stop` fires; returns promptly then.
  Task<void> run(CancellationSignal& stop);

  const std::string& resource() const { return options_.resource; }
  // The first list has completed.
  bool hasSynced() const;
  // A watch is open now.
  bool connected() const;
  // The last failure's message; "" once a list or watch has succeeded since.
  std::string lastError() const;
  // Whether the cache may be behind the API server now (staleReason), and since when the API
  // server was last heard from (since construction if never).
  Freshness freshness() const;
  // freshness().staleness: 0 while the cache is current.
  std::chrono::milliseconds staleness() const;
  ReflectorStats stats() const;
  std::string resourceVersion() const;

 private:
  class Handler;
  struct ListOutcome {
    std::optional<ApiError> error;
    std::string resource_version;
    std::size_t objects = 0;
  };
  enum class WatchEnd : std::uint8_t { Ended, Silent, Gone, Failed };
  struct WatchOutcome {
    WatchEnd end = WatchEnd::Ended;
    std::optional<ApiError> error;
  };

  Task<ListOutcome> listAll(std::string resource_version, CancellationSignal& stop);
  Task<WatchOutcome> watchOnce(CancellationSignal& stop);
  void recordFailure(std::string_view operation, const ApiError& error, int failures);
  void touch();
  void setConnected(bool connected);
  void setRelisting(bool relisting);
  void changed();
  void count(std::uint64_t ReflectorStats::*counter);

  ApiTransport& transport_;
  ObjectStore& store_;
  const ReflectorOptions options_;
  const Clock& clock_;
  const ReflectorHooks hooks_;
  const std::shared_ptr<spdlog::logger> logger_;
  const std::function<double()> random_;
  const MonotonicTime created_at_;

  std::string rv_;  // the last resourceVersion seen; touched by run() only
  bool permission_logged_ = false;

  mutable std::mutex mu_;
  bool synced_ = false;
  bool connected_ = false;
  MonotonicTime last_contact_{};
  bool contacted_ = false;
  bool relisting_ = false;
  int failures_ = 0;  // failed lists and watches since one last worked
  std::string last_error_;
  std::string rv_copy_;
  ReflectorStats stats_;
};

}  // namespace nmi::kube
