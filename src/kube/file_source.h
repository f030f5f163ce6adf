#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <boost/asio/any_io_executor.hpp>
#include <spdlog/logger.h>

#include "common/clock.h"
#include "identity/source.h"

namespace nmi::kube {

// An IdentitySource read from one file (--identity-file): Pods, Secrets, AzureIdentities,
// AzureIdentityBindings, AzureAssignedIdentities and AzurePodIdentityExceptions as JSON (one
// object, a List, or an array) or YAML (possibly several documents), as `kubectl get -o yaml`
// writes them. Other kinds are ignored with a warning. Pods on other nodes are dropped when
// node_name is set. For tests, demos and clusters without an API server to ask.
//
// load() reads the file once; start() also watches it (inotify on its directory, so editors'
// rename-over writes and ConfigMap `..data` symlink swaps are seen) and reloads on change. A
// reload that fails keeps the previous data, logs one warning and counts in reloadFailures().
// A successful (re)load replaces all data at once and notifies changes().
//
// Logs to `logger`, or to nmi::logger("nmi.identity") when it is null. Queries are thread-safe. The
// watcher runs on `executor`, which must outlive this object or be stopped first; stop() (also
// called by the destructor) ends the watch. The debounce and waits on changes() use `clock`, which
// must outlive the executor's work.
class FileIdentitySource final : public identity::IdentitySource {
 public:
  FileIdentitySource(boost::asio::any_io_executor executor, std::string path, std::string node_name,
                     std::shared_ptr<spdlog::logger> logger = nullptr,
                     std::chrono::milliseconds debounce = std::chrono::milliseconds{100},
                     const Clock& clock = systemClock());
  ~FileIdentitySource() override;
  FileIdentitySource(const FileIdentitySource&) = delete;
  FileIdentitySource& operator=(const FileIdentitySource&) = delete;
  FileIdentitySource(FileIdentitySource&&) = delete;
  FileIdentitySource& operator=(FileIdentitySource&&) = delete;

  // Reads and parses the file; on success swaps the data in and notifies. On failure the data
  // is unchanged. Errors: NotFound (no file), InvalidArgument (too large, syntax, a bad object;
  // the message names the object), Unavailable (read error).
  Result<void> load();

  // Starts watching the file's directory (call once, after or before load()). Errors:
  // Unavailable when inotify cannot be set up.
  Result<void> start();
  // Stops watching. Idempotent; queries keep working.
  void stop();

  // Reloads triggered by the watcher that failed.
  std::uint64_t reloadFailures() const;

  bool hasSynced() const override;
  std::string notReadyReason() const override;
  std::chrono::seconds staleness() const override;
  std::vector<identity::PodInfo> podsByIp(std::string_view ip) const override;
  // The file is a snapshot: it remembers no earlier claim of an address (`lost` is empty).
  identity::IpClaims ipClaims(std::string_view ip) const override;
  std::optional<identity::PodInfo> podByName(std::string_view ns,
                                             std::string_view name) const override;
  std::vector<identity::AzureAssignedIdentity> assignedIdentities(
      std::string_view pod_ns, std::string_view pod_name) const override;
  std::vector<identity::AzureIdentityBinding> bindingsBySelector(
      std::string_view selector) const override;
  std::optional<identity::AzureIdentity> identity(std::string_view ns,
                                                  std::string_view name) const override;
  std::vector<identity::AzurePodIdentityException> exceptions(std::string_view ns) const override;
  Task<Result<identity::SecretData>> secret(const identity::SecretRef& ref) override;
  ChangeNotifier& changes() override;

 private:
  struct State;
  struct Watcher;

  boost::asio::any_io_executor executor_;
  std::chrono::milliseconds debounce_;
  std::shared_ptr<State> state_;
  std::shared_ptr<Watcher> watcher_;
};

}  // namespace nmi::kube
