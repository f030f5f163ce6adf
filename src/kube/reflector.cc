#include "kube/reflector.h"

#include <utility>

#include <fmt/format.h>

#include "kube/query.h"

namespace nmi::kube {

namespace {

ApiError fromError(Error error) {
  ApiError out;
  out.error = std::move(error);
  return out;
}

}  // namespace

// Receives one watch's lines on the reflector's strand.
class Reflector::Handler final : public WatchHandler {
 public:
  explicit Handler(Reflector& reflector) : r_(reflector) {}

  void opened() override {
    was_opened = true;
    r_.setConnected(true);
    r_.touch();
  }

  bool line(std::string_view text) override {
    r_.touch();
    auto event = decodeWatchEvent(text);
    if (!event) {
      outcome = WatchOutcome{
          WatchEnd::Failed,
          fromError(makeError(ErrorCode::Unavailable,
                              "watch " + r_.options_.resource + ": " + event.error().message))};
      return false;
    }
    if (event->type == EventType::Error) {
      const ApiStatus status = decodeStatus(event->object);
      ApiError error;
      error.http_status = status.code > 0 ? static_cast<unsigned>(status.code) : 0;
      error.gone = status.code == 410;
      std::string message = "watch " + r_.options_.resource + ": ERROR event";
      if (status.code != 0) {
        message += " " + std::to_string(status.code);
      }
      if (!status.reason.empty()) {
        message += " " + status.reason;
      }
      if (!status.message.empty()) {
        message += ": " + status.message;
      }
      error.error = makeError(ErrorCode::Unavailable, std::move(message));
      outcome = WatchOutcome{error.gone ? WatchEnd::Gone : WatchEnd::Failed, std::move(error)};
      return false;
    }
    std::string rv = resourceVersionOf(event->object);
    if (event->type == EventType::Bookmark) {
      if (!rv.empty()) {
        r_.rv_ = std::move(rv);
      }
      const std::lock_guard lock(r_.mu_);
      ++r_.stats_.bookmarks;
      r_.rv_copy_ = r_.rv_;
      return true;
    }
    auto applied = r_.store_.apply(event->type, event->object);
    ++events;
    if (!rv.empty()) {
      r_.rv_ = std::move(rv);
    }
    {
      const std::lock_guard lock(r_.mu_);
      ++r_.stats_.events;
      r_.rv_copy_ = r_.rv_;
      if (!applied) {
        ++r_.stats_.bad_objects;
      }
    }
    if (!applied) {
      r_.logger_->warn("watch {}: {} object ignored: {}", r_.options_.resource,
                       eventTypeName(event->type), applied.error().message);
    }
    r_.changed();
    return true;
  }

  std::optional<WatchOutcome> outcome;
  std::size_t events = 0;
  bool was_opened = false;

 private:
  Reflector& r_;
};

Reflector::Reflector(ApiTransport& transport, ObjectStore& store, ReflectorOptions options,
                     const Clock& clock, ReflectorHooks hooks,
                     std::shared_ptr<spdlog::logger> logger, std::function<double()> random)
    : transport_(transport),
      store_(store),
      options_(std::move(options)),
      clock_(clock),
      hooks_(std::move(hooks)),
      logger_(std::move(logger)),
      random_(random ? std::move(random) : std::function<double()>(uniformRandom)),
      created_at_(clock.monotonicNow()) {}

bool Reflector::hasSynced() const {
  const std::lock_guard lock(mu_);
  return synced_;
}

bool Reflector::connected() const {
  const std::lock_guard lock(mu_);
  return connected_;
}

std::string Reflector::lastError() const {
  const std::lock_guard lock(mu_);
  return last_error_;
}

ReflectorStats Reflector::stats() const {
  const std::lock_guard lock(mu_);
  return stats_;
}

std::string Reflector::resourceVersion() const {
  const std::lock_guard lock(mu_);
  return rv_copy_;
}

std::string staleReason(const FreshnessInput& input) {
  if (!input.synced) {
    return {};
  }
  const auto seconds = [](std::chrono::milliseconds ms) {
    return fmt::format("{:.1f} s", std::chrono::duration<double>(ms).count());
  };
  const std::string heard =
      "last heard from the API server " + seconds(input.since_contact) + " ago";
  if (input.failures > 0) {
    return fmt::format("in backoff after {} failed attempt{} ({}); {}", input.failures,
                       input.failures == 1 ? "" : "s",
                       input.last_error.empty() ? "no error text" : input.last_error, heard);
  }
  if (input.relisting) {
    return "listing again (the watch's history is gone); " + heard;
  }
  if (input.since_contact > input.limit) {
    return fmt::format("no word from the API server for {} (limit {})",
                       seconds(input.since_contact), seconds(input.limit));
  }
  return {};
}

Freshness Reflector::freshness() const {
  const MonotonicTime now = clock_.monotonicNow();
  FreshnessInput input;
  {
    const std::lock_guard lock(mu_);
    input.synced = synced_;
    input.relisting = relisting_;
    input.failures = failures_;
    input.last_error = last_error_;
    const MonotonicTime since = contacted_ ? last_contact_ : created_at_;
    input.since_contact =
        std::max(std::chrono::milliseconds{0},
                 std::chrono::duration_cast<std::chrono::milliseconds>(now - since));
  }
  input.limit = options_.watch_timeouts.silence + options_.watch_timeouts.head;
  Freshness out;
  out.reason = staleReason(input);
  out.stale = !out.reason.empty();
  out.staleness = out.stale ? input.since_contact : std::chrono::milliseconds{0};
  return out;
}

std::chrono::milliseconds Reflector::staleness() const {
  return freshness().staleness;
}

void Reflector::touch() {
  const MonotonicTime now = clock_.monotonicNow();
  const std::lock_guard lock(mu_);
  last_contact_ = now;
  contacted_ = true;
}

void Reflector::setConnected(bool connected) {
  const std::lock_guard lock(mu_);
  connected_ = connected;
  if (connected) {
    ++stats_.watches;
    failures_ = 0;
    last_error_.clear();
  }
}

void Reflector::setRelisting(bool relisting) {
  const std::lock_guard lock(mu_);
  relisting_ = relisting && synced_;  // the first list is "not synced", not "stale"
}

void Reflector::count(std::uint64_t ReflectorStats::*counter) {
  const std::lock_guard lock(mu_);
  ++(stats_.*counter);
}

void Reflector::changed() {
  if (hooks_.changed) {
    hooks_.changed();
  }
}

void Reflector::recordFailure(std::string_view operation, const ApiError& error, int failures) {
  std::string previous;
  {
    const std::lock_guard lock(mu_);
    ++stats_.failures;
    failures_ = failures;
    previous = std::exchange(last_error_, error.error.message);
  }
  if (hooks_.failed) {
    hooks_.failed(operation);
  }
  if (error.error.code == ErrorCode::PermissionDenied && !permission_logged_) {
    // What an operator needs: the API server's RBAC message, once per resource.
    permission_logged_ = true;
    logger_->error(
        "the API server refused to {} {}: {} (nmi needs get, list and watch on {}; see the "
        "ClusterRole in docs/operations.md)",
        operation, options_.resource, error.error.message, options_.resource);
    return;
  }
  if (failures == 1 || previous != error.error.message) {
    logger_->warn("{} {} failed (attempt {}): {}", operation, options_.resource, failures,
                  error.error.message);
  } else {
    logger_->debug("{} {} failed (attempt {}): {}", operation, options_.resource, failures,
                   error.error.message);
  }
}

Task<Reflector::ListOutcome> Reflector::listAll(std::string resource_version,
                                                CancellationSignal& stop) {
  ListOutcome outcome;
  ListOptions query;
  query.label_selector = options_.label_selector;
  query.field_selector = options_.field_selector;
  if (options_.paginate) {
    query.limit = options_.page_limit;
  } else {
    query.resource_version = resource_version;
  }
  const std::string what = "list " + options_.resource;
  store_.beginReplace();
  std::size_t bad = 0;
  std::string first_bad;
  for (int page = 0;; ++page) {
    const std::string target = buildTarget(options_.path, query);
    auto response =
        co_await transport_.get(target, options_.max_list_bytes, options_.list_timeout, &stop);
    if (!response) {
      store_.abortReplace();
      Error error = std::move(response).error();
      error.message = what + ": " + error.message;
      outcome.error = fromError(std::move(error));
      co_return outcome;
    }
    if (auto failure =
            classifyStatus(response->status, response->body, response->retry_after, what)) {
      store_.abortReplace();
      outcome.error = std::move(failure);
      co_return outcome;
    }
    touch();
    auto meta = decodeList(response->body, [&](const nlohmann::json& item) {
      if (auto staged = store_.stage(item); !staged) {
        if (bad++ == 0) {
          first_bad = staged.error().message;
        }
      }
    });
    if (!meta) {
      store_.abortReplace();
      outcome.error =
          fromError(makeError(ErrorCode::Unavailable, what + ": " + meta.error().message));
      co_return outcome;
    }
    outcome.objects += meta->items;
    if (!options_.paginate || meta->continue_token.empty()) {
      outcome.resource_version = meta->resource_version;
      break;
    }
    query.continue_token = meta->continue_token;
  }
  store_.commitReplace();
  if (bad > 0) {
    logger_->warn("{}: {} of {} objects ignored; first: {}", what, bad, outcome.objects, first_bad);
  }
  {
    const std::lock_guard lock(mu_);
    stats_.bad_objects += bad;
  }
  co_return outcome;
}

Task<Reflector::WatchOutcome> Reflector::watchOnce(CancellationSignal& stop) {
  ListOptions query;
  query.label_selector = options_.label_selector;
  query.field_selector = options_.field_selector;
  query.resource_version = rv_;
  query.watch = true;
  query.allow_bookmarks = true;
  query.timeout_seconds =
      watchTimeoutSeconds(options_.min_watch_timeout, options_.max_watch_timeout, random_());
  const std::string target = buildTarget(options_.path, query);
  const MonotonicTime started = clock_.monotonicNow();
  Handler handler(*this);
  auto result = co_await transport_.watch(target, options_.max_event_bytes, options_.watch_timeouts,
                                          handler, &stop);
  setConnected(false);
  if (handler.outcome) {
    co_return std::move(*handler.outcome);
  }
  const std::string what = "watch " + options_.resource;
  if (!result) {
    Error error = std::move(result).error();
    // A timeout after the server accepted the watch is silence (the head has its own deadline).
    const bool silent = error.code == ErrorCode::Timeout && handler.was_opened;
    error.message = what + ": " + error.message;
    co_return WatchOutcome{silent ? WatchEnd::Silent : WatchEnd::Failed,
                           fromError(std::move(error))};
  }
  if (auto failure = classifyStatus(result->status, result->body, result->retry_after, what)) {
    const WatchEnd end = failure->gone ? WatchEnd::Gone : WatchEnd::Failed;
    co_return WatchOutcome{end, std::move(failure)};
  }
  if (handler.events == 0 && clock_.monotonicNow() - started < options_.min_healthy_watch) {
    co_return WatchOutcome{
        WatchEnd::Failed,
        fromError(makeError(ErrorCode::Unavailable, what + ": closed by the server at once"))};
  }
  co_return WatchOutcome{WatchEnd::Ended, std::nullopt};
}

Task<void> Reflector::run(CancellationSignal& stop) {
  int failures = 0;
  int gone_streak = 0;  // watches ended by 410 in a row
  bool need_list = true;
  // Node-scoped lists are served from the API server's watch cache (resourceVersion=0) and,
  // after a watch's 410, ask for data not older than what was seen; paginated lists read the
  // current state.
  std::string list_rv = options_.paginate ? "" : "0";
  while (!stop.cancelled()) {
    std::optional<ApiError> failure;
    std::string_view operation = "list";
    if (need_list) {
      const MonotonicTime started = clock_.monotonicNow();
      setRelisting(true);
      ListOutcome listed = co_await listAll(list_rv, stop);
      setRelisting(false);
      if (listed.error) {
        failure = std::move(listed.error);
        if (failure->gone) {
          count(&ReflectorStats::gone);
          list_rv = "";  // the version asked for is gone: read the current state
        }
      } else {
        rv_ = std::move(listed.resource_version);
        need_list = false;
        bool first = false;
        {
          const std::lock_guard lock(mu_);
          first = !synced_;
          synced_ = true;
          ++stats_.lists;
          failures_ = 0;
          last_error_.clear();
          rv_copy_ = rv_;
        }
        if (failures > 0) {
          logger_->info("list {}: succeeded after {} failed attempts", options_.resource, failures);
        }
        failures = 0;
        logger_->debug(
            "list {}: {} objects kept of {} listed at resourceVersion {} in {} ms{}",
            options_.resource, store_.size(), listed.objects, rv_,
            std::chrono::duration_cast<std::chrono::milliseconds>(clock_.monotonicNow() - started)
                .count(),
            first ? " (initial)" : "");
        changed();
      }
    }
    if (!failure && !stop.cancelled()) {
      operation = "watch";
      WatchOutcome watched = co_await watchOnce(stop);
      switch (watched.end) {
        case WatchEnd::Ended:
          if (failures > 0) {
            logger_->info("watch {}: working again after {} failed attempts", options_.resource,
                          failures);
          }
          failures = 0;
          gone_streak = 0;
          continue;
        case WatchEnd::Silent:
          // Not an error by itself: a quiet watch may go two minutes between bookmarks. A dead
          // connection shows in the reconnect that follows.
          count(&ReflectorStats::silences);
          logger_->info("watch {}: no data for {} ms, re-opening it from resourceVersion {}",
                        options_.resource, options_.watch_timeouts.silence.count(), rv_);
          gone_streak = 0;
          continue;
        case WatchEnd::Gone:
          count(&ReflectorStats::gone);
          logger_->info("watch {}: resourceVersion {} is gone (410), listing again",
                        options_.resource, rv_);
          need_list = true;
          list_rv = options_.paginate ? "" : rv_;
          if (++gone_streak == 1) {
            continue;  // relist at once
          }
          // 410 again right after a relist: do not loop hot.
          failure = std::move(watched.error);
          break;
        case WatchEnd::Failed:
          failure = std::move(watched.error);
          break;
      }
    }
    if (stop.cancelled() || !failure) {
      break;
    }
    ++failures;
    recordFailure(operation, *failure, failures);
    const auto delay = backoffDelay(options_.backoff, failures, random_(), failure->retry_after);
    if (!co_await sleepFor(clock_, delay, &stop)) {
      break;
    }
  }
  setConnected(false);
}

}  // namespace nmi::kube
