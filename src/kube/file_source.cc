#include "kube/file_source.h"

#include <sys/inotify.h>
#include <sys/stat.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <system_error>
#include <unordered_map>
#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <fcntl.h>
#include <spdlog/logger.h>
#include <unistd.h>

#include "common/file.h"
#include "common/log.h"
#include "kube/decode.h"
#include "kube/file_parse.h"

namespace nmi::kube {

namespace asio = boost::asio;

namespace {

struct StringHash {
  using is_transparent = void;  // NOLINT(readability-identifier-naming): the standard's name
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

template <class V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

// An unambiguous key for a namespace/name pair (both may hold any character in a hostile file).
std::string nameKey(std::string_view ns, std::string_view name) {
  std::string key = std::to_string(ns.size());
  key += ':';
  key += ns;
  key += name;
  return key;
}

template <class T>
std::vector<T> lookupList(const StringMap<std::vector<T>>& map, std::string_view key) {
  const auto it = map.find(key);
  return it == map.end() ? std::vector<T>{} : it->second;
}

// One consistent snapshot of the file's content, indexed for the queries.
struct DataSet {
  StringMap<std::vector<identity::PodInfo>> pods_by_ip;  // hostNetwork pods excluded
  StringMap<identity::PodInfo> pods_by_name;
  StringMap<std::vector<identity::AzureAssignedIdentity>> assigned_by_pod;
  StringMap<std::vector<identity::AzureIdentityBinding>> bindings_by_selector;
  StringMap<identity::AzureIdentity> identities;
  StringMap<std::vector<identity::AzurePodIdentityException>> exceptions_by_ns;
  StringMap<identity::SecretData> secrets;
};

// Kind names come from the file: keep log lines short.
std::string printable(std::string_view text) {
  constexpr std::size_t kMax = 64;
  std::string out;
  for (const char c : text.substr(0, kMax)) {
    out += (c >= 0x20 && c < 0x7f) ? c : '?';
  }
  if (text.size() > kMax) {
    out += "...";
  }
  return out;
}

class UniqueFd {
 public:
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&&) = delete;
  UniqueFd& operator=(UniqueFd&&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

std::string errnoText(int err) {
  return std::generic_category().message(err);
}

struct BuildStats {
  std::size_t pods = 0;
  std::size_t pods_other_nodes = 0;
  std::size_t identities = 0;
  std::size_t bindings = 0;
  std::size_t assigned = 0;
  std::size_t exceptions = 0;
  std::size_t secrets = 0;
  std::size_t duplicates = 0;
  std::map<std::string, std::size_t> ignored_kinds;
};

using Key = std::pair<std::string, std::string>;  // namespace, name

// Objects decoded from the file, by kind then namespace/name: later duplicates replace earlier
// ones (as `kubectl apply` of the file would), and iteration order is deterministic.
struct Decoded {
  std::map<Key, identity::PodInfo> pods;
  std::map<Key, identity::AzureIdentity> identities;
  std::map<Key, identity::AzureIdentityBinding> bindings;
  std::map<Key, identity::AzureAssignedIdentity> assigned;
  std::map<Key, identity::AzurePodIdentityException> exceptions;
  std::map<Key, identity::SecretData> secrets;
};

template <class T>
void put(std::map<Key, T>& map, const Key& key, T value, BuildStats& stats) {
  if (!map.insert_or_assign(key, std::move(value)).second) {
    ++stats.duplicates;
  }
}

// Where the object is and what it is, for an error message.
std::string describe(const LocatedObject& located, const std::string& kind) {
  std::string out = located.where.empty() ? std::string("object") : located.where;
  out += " (" + printable(kind);
  if (auto meta = decodeObjectMeta(located.object)) {
    out += " " + printable(meta->ns) + "/" + printable(meta->name);
  }
  out += ")";
  return out;
}

template <class T>
Result<T> withContext(Result<T> result, const LocatedObject& located, const std::string& kind) {
  if (result) {
    return result;
  }
  Error error = std::move(result).error();
  error.message = describe(located, kind) + ": " + error.message;
  return error;
}

Result<void> decodeOne(const LocatedObject& located, const std::string& node_name, Decoded& out,
                       BuildStats& stats) {
  const auto kind_it = located.object.find("kind");
  if (kind_it == located.object.end() || !kind_it->is_string()) {
    return makeError(ErrorCode::InvalidArgument,
                     describe(located, "?") + ": kind: expected a string");
  }
  const auto& kind = kind_it->get_ref<const std::string&>();
  if (kind == "Pod") {
    auto pod = withContext(decodePod(located.object), located, kind);
    if (!pod) {
      return pod.error();
    }
    if (!node_name.empty() && pod->node_name != node_name) {
      ++stats.pods_other_nodes;
      return {};
    }
    Key key{pod->ns, pod->name};
    put(out.pods, key, std::move(*pod), stats);
  } else if (kind == "AzureIdentity") {
    auto id = withContext(decodeAzureIdentity(located.object), located, kind);
    if (!id) {
      return id.error();
    }
    Key key{id->ns, id->name};
    put(out.identities, key, std::move(*id), stats);
  } else if (kind == "AzureIdentityBinding") {
    auto binding = withContext(decodeAzureIdentityBinding(located.object), located, kind);
    if (!binding) {
      return binding.error();
    }
    Key key{binding->ns, binding->name};
    put(out.bindings, key, std::move(*binding), stats);
  } else if (kind == "AzureAssignedIdentity") {
    auto assigned = withContext(decodeAzureAssignedIdentity(located.object), located, kind);
    if (!assigned) {
      return assigned.error();
    }
    Key key{assigned->ns, assigned->name};
    put(out.assigned, key, std::move(*assigned), stats);
  } else if (kind == "AzurePodIdentityException") {
    auto exception = withContext(decodeAzurePodIdentityException(located.object), located, kind);
    if (!exception) {
      return exception.error();
    }
    Key key{exception->ns, exception->name};
    put(out.exceptions, key, std::move(*exception), stats);
  } else if (kind == "Secret") {
    auto secret = withContext(decodeSecret(located.object), located, kind);
    if (!secret) {
      return secret.error();
    }
    auto meta = withContext(decodeObjectMeta(located.object), located, kind);
    if (!meta) {
      return meta.error();
    }
    put(out.secrets, Key{meta->ns, meta->name}, std::move(*secret), stats);
  } else {
    ++stats.ignored_kinds[printable(kind)];
  }
  return {};
}

Result<std::shared_ptr<DataSet>> build(const std::vector<LocatedObject>& objects,
                                       const std::string& node_name, BuildStats& stats) {
  Decoded decoded;
  for (const auto& located : objects) {
    if (auto ok = decodeOne(located, node_name, decoded, stats); !ok) {
      return ok.error();
    }
  }
  auto data = std::make_shared<DataSet>();
  for (auto& [key, pod] : decoded.pods) {
    if (!pod.host_network) {
      for (const auto& ip : pod.ips) {
        data->pods_by_ip[ip].push_back(pod);
      }
    }
    data->pods_by_name.emplace(nameKey(key.first, key.second), std::move(pod));
  }
  for (auto& [key, id] : decoded.identities) {
    data->identities.emplace(nameKey(key.first, key.second), std::move(id));
  }
  for (auto& [key, binding] : decoded.bindings) {
    data->bindings_by_selector[binding.selector].push_back(std::move(binding));
  }
  for (auto& [key, assigned] : decoded.assigned) {
    data->assigned_by_pod[nameKey(assigned.pod_namespace, assigned.pod)].push_back(
        std::move(assigned));
  }
  for (auto& [key, exception] : decoded.exceptions) {
    data->exceptions_by_ns[exception.ns].push_back(std::move(exception));
  }
  for (auto& [key, secret] : decoded.secrets) {
    data->secrets.emplace(nameKey(key.first, key.second), std::move(secret));
  }
  stats.pods = decoded.pods.size();
  stats.identities = decoded.identities.size();
  stats.bindings = decoded.bindings.size();
  stats.assigned = decoded.assigned.size();
  stats.exceptions = decoded.exceptions.size();
  stats.secrets = decoded.secrets.size();
  return data;
}

Task<Result<identity::SecretData>> ready(Result<identity::SecretData> result) {
  co_return result;
}

}  // namespace

// ---- State: the data and everything the watcher needs, shared with it ------------------------

struct FileIdentitySource::State {
  State(std::string file_path, std::string node, std::shared_ptr<spdlog::logger> log,
        const Clock& c)
      : path(std::move(file_path)),
        node_name(std::move(node)),
        logger(std::move(log)),
        clock(c),
        notifier(c) {}

  const std::string path;
  const std::string node_name;
  const std::shared_ptr<spdlog::logger> logger;
  const Clock& clock;

  std::mutex load_mu;  // one load at a time, so an older read cannot replace a newer one
  mutable std::shared_mutex mu;
  std::shared_ptr<const DataSet> data = std::make_shared<DataSet>();  // guarded by mu
  std::string last_error;                                             // guarded by mu
  std::atomic<bool> synced{false};
  std::atomic<std::uint64_t> reload_failures{0};
  ChangeNotifier notifier;

  std::shared_ptr<const DataSet> snapshot() const {
    const std::shared_lock lock(mu);
    return data;
  }

  Result<void> load() {
    const std::lock_guard serial(load_mu);
    auto result = loadSerialised();
    if (!result) {
      const std::unique_lock lock(mu);
      last_error = result.error().message;
    }
    return result;
  }

  // The watcher's reload: a failure keeps the data and is counted.
  void reload() {
    if (auto result = load(); !result) {
      reload_failures.fetch_add(1, std::memory_order_relaxed);
      logger->warn("identity file reload failed, keeping the previous data path={} error=\"{}\"",
                   path, result.error().message);
    }
  }

 private:
  Result<void> loadSerialised() {
    auto content = readSmallFile(path, kMaxIdentityFileBytes);
    if (!content) {
      return std::move(content).error();  // the message names the path
    }
    auto objects = parseIdentityText(*content);
    if (!objects) {
      Error error = std::move(objects).error();
      error.message = path + ": " + error.message;
      return error;
    }
    BuildStats stats;
    auto built = build(*objects, node_name, stats);
    if (!built) {
      Error error = std::move(built).error();
      error.message = path + ": " + error.message;
      return error;
    }
    {
      const std::unique_lock lock(mu);
      data = std::move(*built);
      last_error.clear();
    }
    synced.store(true, std::memory_order_release);
    logger->info(
        "identity file loaded path={} pods={} pods_on_other_nodes={} identities={} bindings={} "
        "assigned_identities={} exceptions={} secrets={}",
        path, stats.pods, stats.pods_other_nodes, stats.identities, stats.bindings, stats.assigned,
        stats.exceptions, stats.secrets);
    if (stats.duplicates > 0) {
      logger->warn("identity file repeats objects, the later ones are used path={} duplicates={}",
                   path, stats.duplicates);
    }
    if (!stats.ignored_kinds.empty()) {
      std::string kinds;
      for (const auto& [kind, count] : stats.ignored_kinds) {
        kinds += (kinds.empty() ? "" : ",") + kind + ":" + std::to_string(count);
      }
      logger->warn("identity file objects of unsupported kinds ignored path={} kinds={}", path,
                   kinds);
    }
    notifier.notify();
    return {};
  }
};

// ---- Watcher: inotify on the file's directory, debounced reloads -----------------------------

struct FileIdentitySource::Watcher : std::enable_shared_from_this<Watcher> {
  Watcher(const asio::any_io_executor& executor, std::shared_ptr<State> shared_state,
          std::chrono::milliseconds debounce_for)
      : strand(asio::make_strand(executor)),
        descriptor(strand),
        state(std::move(shared_state)),
        timer(state->clock.makeTimer(strand)),
        debounce(debounce_for) {}

  asio::strand<asio::any_io_executor> strand;
  asio::posix::stream_descriptor descriptor;  // the inotify instance
  const std::shared_ptr<State> state;
  const TimerPtr timer;  // the debounce; woken by stop()
  const std::chrono::milliseconds debounce;
  std::string file_name;
  bool any_entry = false;  // the file is a symlink: any change in the directory may retarget it
  bool stopped = false;    // strand only
  bool reload_pending = false;  // strand only: a debounce is running
  MonotonicTime quiet_until{};  // strand only: the debounce's end, pushed back by every event
  std::array<char, std::size_t{64} * 1024> buffer{};

  void readNext() {
    descriptor.async_read_some(asio::buffer(buffer),
                               [self = shared_from_this()](boost::system::error_code ec,
                                                           std::size_t n) { self->onRead(ec, n); });
  }

  void onRead(boost::system::error_code ec, std::size_t n) {
    if (stopped || ec == asio::error::operation_aborted) {
      return;
    }
    if (ec) {
      state->logger->warn("identity file watch failed, no more reloads path={} error=\"{}\"",
                          state->path, ec.message());
      return;
    }
    bool relevant = false;
    bool gone = false;
    std::size_t offset = 0;
    while (offset + sizeof(inotify_event) <= n) {
      inotify_event event{};
      std::memcpy(&event, buffer.data() + offset, sizeof(inotify_event));
      std::string_view name;
      if (event.len > 0 && offset + sizeof(inotify_event) + event.len <= n) {
        const char* start = buffer.data() + offset + sizeof(inotify_event);
        name = std::string_view(start, ::strnlen(start, event.len));
      }
      offset += sizeof(inotify_event) + event.len;
      if ((event.mask & IN_IGNORED) != 0U) {
        gone = true;  // the directory went away
        continue;
      }
      // IN_Q_OVERFLOW: events were lost, so reload to be safe.
      relevant = relevant || (event.mask & IN_Q_OVERFLOW) != 0U || any_entry || name == file_name;
    }
    if (relevant) {
      scheduleReload();
    }
    if (gone) {
      state->logger->warn("identity file directory is gone, no more reloads path={}", state->path);
      return;
    }
    readNext();
  }

  // Waits until the directory has been quiet for `debounce` (a write often comes as several
  // events), then reloads once.
  void scheduleReload() {
    quiet_until = state->clock.monotonicNow() + debounce;
    if (!reload_pending) {
      reload_pending = true;
      asio::co_spawn(strand, debounceThenReload(shared_from_this()), asio::detached);
    }
  }

  static Task<void> debounceThenReload(std::shared_ptr<Watcher> self) {
    for (;;) {
      const MonotonicTime until = self->quiet_until;
      if (co_await self->timer->waitUntil(until) || self->stopped) {
        co_return;  // woken: stopped
      }
      if (self->quiet_until <= until) {
        break;  // nothing happened meanwhile
      }
    }
    self->reload_pending = false;
    self->state->reload();
  }

  void stop() {
    asio::post(strand, [self = shared_from_this()] {
      self->stopped = true;
      self->timer->wake();
      boost::system::error_code ignored;
      self->descriptor.close(ignored);
    });
  }
};

// ---- FileIdentitySource ----------------------------------------------------------------------

FileIdentitySource::FileIdentitySource(asio::any_io_executor executor, std::string path,
                                       std::string node_name,
                                       std::shared_ptr<spdlog::logger> logger,
                                       std::chrono::milliseconds debounce, const Clock& clock)
    : executor_(std::move(executor)),
      debounce_(debounce),
      state_(std::make_shared<State>(std::move(path), std::move(node_name),
                                     logger ? std::move(logger) : nmi::logger("nmi.identity"),
                                     clock)) {}

FileIdentitySource::~FileIdentitySource() {
  try {
    stop();
  } catch (...) {
    // Only posting the close can fail (no memory); the watcher then ends with the executor.
  }
}

Result<void> FileIdentitySource::load() {
  return state_->load();
}

Result<void> FileIdentitySource::start() {
  if (watcher_) {
    return {};
  }
  const std::filesystem::path path(state_->path);
  std::filesystem::path dir = path.parent_path();
  if (dir.empty()) {
    dir = ".";
  }
  UniqueFd fd(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (fd.get() < 0) {
    return makeError(ErrorCode::Unavailable,
                     "identity file " + state_->path + ": inotify_init1: " + errnoText(errno));
  }
  if (::inotify_add_watch(fd.get(), dir.c_str(),
                          IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE) < 0) {
    return makeError(ErrorCode::Unavailable, "identity file " + state_->path + ": watching " +
                                                 dir.string() + ": " + errnoText(errno));
  }
  auto watcher = std::make_shared<Watcher>(executor_, state_, debounce_);
  boost::system::error_code ec;
  watcher->descriptor.assign(fd.get(), ec);
  if (ec) {
    return makeError(ErrorCode::Unavailable,
                     "identity file " + state_->path + ": watching: " + ec.message());
  }
  static_cast<void>(fd.release());
  watcher->file_name = path.filename().string();
  std::error_code link_ec;
  watcher->any_entry = std::filesystem::is_symlink(path, link_ec);
  asio::post(watcher->strand, [watcher] { watcher->readNext(); });
  watcher_ = std::move(watcher);
  return {};
}

void FileIdentitySource::stop() {
  if (watcher_) {
    watcher_->stop();
    watcher_.reset();
  }
}

std::uint64_t FileIdentitySource::reloadFailures() const {
  return state_->reload_failures.load(std::memory_order_relaxed);
}

bool FileIdentitySource::hasSynced() const {
  return state_->synced.load(std::memory_order_acquire);
}

std::string FileIdentitySource::notReadyReason() const {
  if (hasSynced()) {
    return {};
  }
  const std::shared_lock lock(state_->mu);
  std::string reason = "identity file " + state_->path + " not loaded yet";
  if (!state_->last_error.empty()) {
    reason += ": " + state_->last_error;
  }
  return reason;
}

std::chrono::seconds FileIdentitySource::staleness() const {
  return std::chrono::seconds{0};
}

std::vector<identity::PodInfo> FileIdentitySource::podsByIp(std::string_view ip) const {
  return lookupList(state_->snapshot()->pods_by_ip, ip);
}

identity::IpClaims FileIdentitySource::ipClaims(std::string_view ip) const {
  return identity::IpClaims{podsByIp(ip), {}};
}

std::optional<identity::PodInfo> FileIdentitySource::podByName(std::string_view ns,
                                                               std::string_view name) const {
  const auto data = state_->snapshot();
  const auto it = data->pods_by_name.find(nameKey(ns, name));
  if (it == data->pods_by_name.end()) {
    return std::nullopt;
  }
  return it->second;
}

std::vector<identity::AzureAssignedIdentity> FileIdentitySource::assignedIdentities(
    std::string_view pod_ns, std::string_view pod_name) const {
  return lookupList(state_->snapshot()->assigned_by_pod, nameKey(pod_ns, pod_name));
}

std::vector<identity::AzureIdentityBinding> FileIdentitySource::bindingsBySelector(
    std::string_view selector) const {
  return lookupList(state_->snapshot()->bindings_by_selector, selector);
}

std::optional<identity::AzureIdentity> FileIdentitySource::identity(std::string_view ns,
                                                                    std::string_view name) const {
  const auto data = state_->snapshot();
  const auto it = data->identities.find(nameKey(ns, name));
  if (it == data->identities.end()) {
    return std::nullopt;
  }
  return it->second;
}

std::vector<identity::AzurePodIdentityException> FileIdentitySource::exceptions(
    std::string_view ns) const {
  return lookupList(state_->snapshot()->exceptions_by_ns, ns);
}

Task<Result<identity::SecretData>> FileIdentitySource::secret(const identity::SecretRef& ref) {
  // Looked up now, so the returned task holds no reference to `ref`.
  const auto data = state_->snapshot();
  const auto it = data->secrets.find(nameKey(ref.ns, ref.name));
  if (it == data->secrets.end()) {
    return ready(makeError(ErrorCode::NotFound, "secret " + ref.ns + "/" + ref.name +
                                                    " not in identity file " + state_->path));
  }
  return ready(it->second);
}

ChangeNotifier& FileIdentitySource::changes() {
  return state_->notifier;
}

}  // namespace nmi::kube
