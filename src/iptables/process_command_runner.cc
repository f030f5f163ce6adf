#include "iptables/process_command_runner.h"

#include <sys/wait.h>

#include <array>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <optional>
#include <string_view>
#include <system_error>
#include <tuple>
#include <utility>

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <unistd.h>

extern char** environ;  // NOLINT(readability-redundant-declaration): POSIX leaves it undeclared

namespace nmi::iptables {

namespace {

constexpr std::size_t kMaxOutput = std::size_t{64} << 20U;
constexpr std::string_view kFallbackPath =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// A file descriptor closed on destruction.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~Fd() { reset(); }
  int get() const { return fd_; }
  bool open() const { return fd_ >= 0; }
  void reset() {
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }

 private:
  int fd_ = -1;
};

struct Pipe {
  Fd read;
  Fd write;
};

Result<void> makePipe(Pipe& p) {
  std::array<int, 2> fds{-1, -1};
  if (::pipe2(fds.data(), O_CLOEXEC) != 0) {
    return makeError(ErrorCode::Unavailable,
                     "pipe2: " + std::error_code(errno, std::generic_category()).message());
  }
  p.read = Fd(fds[0]);
  p.write = Fd(fds[1]);
  return {};
}

std::optional<std::string> findIn(std::string_view dirs, const std::string& name) {
  while (true) {
    const std::size_t colon = dirs.find(':');
    std::string dir(dirs.substr(0, colon));
    if (dir.empty()) {
      dir = ".";
    }
    std::string candidate = std::move(dir);
    candidate.append("/").append(name);
    if (::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
    if (colon == std::string_view::npos) {
      return std::nullopt;
    }
    dirs.remove_prefix(colon + 1);
  }
}

std::optional<std::string> findProgram(const std::string& name) {
  if (name.find('/') != std::string::npos) {
    return ::access(name.c_str(), X_OK) == 0 ? std::optional<std::string>(name) : std::nullopt;
  }
  // NOLINTNEXTLINE(concurrency-mt-unsafe): nmi never calls setenv after start-up.
  const char* path = std::getenv("PATH");
  if (path != nullptr) {
    if (auto found = findIn(path, name)) {
      return found;
    }
  }
  return findIn(kFallbackPath, name);
}

std::vector<std::string> environmentFor(const Command& command) {
  std::vector<std::string> out;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string_view entry(*e);
    const std::string_view name = entry.substr(0, entry.find('='));
    bool replaced = false;
    for (const auto& [key, value] : command.env) {
      replaced = replaced || key == name;
    }
    if (!replaced) {
      out.emplace_back(entry);
    }
  }
  for (const auto& [key, value] : command.env) {
    std::string entry = key;
    entry.append("=").append(value);
    out.push_back(std::move(entry));
  }
  return out;
}

std::vector<char*> pointers(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (std::string& s : strings) {
    out.push_back(s.data());
  }
  out.push_back(nullptr);
  return out;
}

// Blocks SIGPIPE in this thread while feeding a child's standard input (a write to a pipe whose
// reader has gone raises it), and discards one left pending before restoring the mask.
class SigpipeBlock {
 public:
  SigpipeBlock() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
  }
  SigpipeBlock(const SigpipeBlock&) = delete;
  SigpipeBlock& operator=(const SigpipeBlock&) = delete;
  ~SigpipeBlock() {
    const timespec zero{};
    while (sigtimedwait(&pipe_, nullptr, &zero) == SIGPIPE) {
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }

 private:
  sigset_t pipe_{};
  sigset_t old_{};
};

struct Spawned {
  pid_t pid = -1;
  Fd in;
  Fd out;
  Fd err;
};

Result<Spawned> spawn(const std::string& program, const Command& command) {
  Pipe in;
  Pipe out;
  Pipe err;
  for (Pipe* p : {&in, &out, &err}) {
    if (auto made = makePipe(*p); !made) {
      return made.error();
    }
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in.read.get(), STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, out.write.get(), STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err.write.get(), STDERR_FILENO);
  posix_spawn_file_actions_addclosefrom_np(&actions, STDERR_FILENO + 1);
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  sigset_t none;
  sigemptyset(&none);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigmask(&attributes, &none);
  posix_spawnattr_setsigdefault(&attributes, &defaults);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  std::vector<std::string> argv_strings = command.argv;
  argv_strings.front() = program;
  std::vector<char*> argv = pointers(argv_strings);
  std::vector<std::string> env_strings = environmentFor(command);
  std::vector<char*> envp = pointers(env_strings);
  Spawned child;
  const int rc =
      posix_spawn(&child.pid, program.c_str(), &actions, &attributes, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  if (rc != 0) {
    return makeError(ErrorCode::Unavailable,
                     "cannot start " + command.argv.front() + ": " +
                         std::error_code(rc, std::generic_category()).message());
  }
  child.in = std::move(in.write);
  child.out = std::move(out.read);
  child.err = std::move(err.read);
  // Never block on a pipe: the child may be writing its output while nmi feeds its input.
  for (const Fd* fd : {&child.in, &child.out, &child.err}) {
    ::fcntl(fd->get(), F_SETFL, ::fcntl(fd->get(), F_GETFL) | O_NONBLOCK);
  }
  return child;
}

}  // namespace

ProcessCommandRunner::ProcessCommandRunner(const Clock& clock) : clock_(clock) {
  std::array<int, 2> fds{-1, -1};
  if (::pipe2(fds.data(), O_CLOEXEC | O_NONBLOCK) == 0) {
    cancel_read_ = fds[0];
    cancel_write_ = fds[1];
  }
}

ProcessCommandRunner::~ProcessCommandRunner() {
  for (int fd : {cancel_read_, cancel_write_}) {
    if (fd >= 0) {
      ::close(fd);
    }
  }
}

void ProcessCommandRunner::cancel() {
  cancelled_ = true;
  if (cancel_write_ >= 0) {
    const char byte = 1;
    [[maybe_unused]] const ssize_t n = ::write(cancel_write_, &byte, 1);
  }
}

Result<CommandOutput> ProcessCommandRunner::run(const Command& command) {
  if (command.argv.empty()) {
    return makeError(ErrorCode::Internal, "no program to run");
  }
  if (cancelled_) {
    return makeError(ErrorCode::Cancelled, command.argv.front() + ": cancelled");
  }
  const std::optional<std::string> program = findProgram(command.argv.front());
  if (!program) {
    return makeError(ErrorCode::NotFound,
                     command.argv.front() + ": not found in PATH or " + std::string(kFallbackPath));
  }
  const SigpipeBlock no_sigpipe;
  auto spawned = spawn(*program, command);
  if (!spawned) {
    return spawned.error();
  }
  Spawned& child = *spawned;
  const std::string& input = command.input;
  std::size_t written = 0;
  if (input.empty()) {
    child.in.reset();
  }
  CommandOutput output;
  std::optional<ErrorCode> stopped;
  const MonotonicTime deadline = clock_.monotonicNow() + command.timeout;
  const auto stop = [&](ErrorCode why) {
    ::kill(child.pid, SIGKILL);
    stopped = why;
  };
  while (!stopped && (child.out.open() || child.err.open())) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_.monotonicNow());
    if (left.count() <= 0) {
      stop(ErrorCode::Timeout);
      break;
    }
    std::array<pollfd, 4> fds{};
    fds[0] = {child.in.get(), POLLOUT, 0};
    fds[1] = {child.out.get(), POLLIN, 0};
    fds[2] = {child.err.get(), POLLIN, 0};
    fds[3] = {cancel_read_, POLLIN, 0};
    const int ready = ::poll(fds.data(), fds.size(), static_cast<int>(left.count()));
    if (ready < 0 && errno != EINTR) {
      stop(ErrorCode::Unavailable);
      break;
    }
    if (cancelled_ || (fds[3].revents & POLLIN) != 0) {
      stop(ErrorCode::Cancelled);
      break;
    }
    if (child.in.open() && fds[0].revents != 0) {
      const ssize_t n = ::write(child.in.get(), input.data() + written, input.size() - written);
      if (n > 0) {
        written += static_cast<std::size_t>(n);
      }
      if ((n < 0 && errno != EINTR && errno != EAGAIN) || written == input.size()) {
        child.in.reset();  // all given, or the child stopped reading: it sees end of input
      }
    }
    for (auto [index, fd, text] :
         {std::tuple{1, &child.out, &output.out}, std::tuple{2, &child.err, &output.err}}) {
      if (!fd->open() || fds[index].revents == 0) {
        continue;
      }
      std::array<char, 65536> buffer{};
      const ssize_t n = ::read(fd->get(), buffer.data(), buffer.size());
      if (n > 0) {
        text->append(buffer.data(), static_cast<std::size_t>(n));
        if (text->size() > kMaxOutput) {
          stop(ErrorCode::ResourceExhausted);
        }
      } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        fd->reset();
      }
    }
  }
  child.in.reset();
  int status = 0;
  while (true) {
    const pid_t done = ::waitpid(child.pid, &status, stopped ? 0 : WNOHANG);
    if (done == child.pid || (done < 0 && errno != EINTR)) {
      break;
    }
    if (done == 0) {  // output closed but still running: wait a little, within the deadline
      if (clock_.monotonicNow() >= deadline) {
        stop(ErrorCode::Timeout);
      } else if (cancelled_) {
        stop(ErrorCode::Cancelled);
      } else {
        pollfd cancel_fd{cancel_read_, POLLIN, 0};
        ::poll(&cancel_fd, 1, 2);
      }
    }
  }
  const std::string& name = command.argv.front();
  if (stopped) {
    switch (*stopped) {
      case ErrorCode::Timeout:
        return makeError(ErrorCode::Timeout, name + ": killed after " +
                                                 std::to_string(command.timeout.count()) + " ms");
      case ErrorCode::Cancelled:
        return makeError(ErrorCode::Cancelled, name + ": cancelled");
      case ErrorCode::ResourceExhausted:
        return makeError(ErrorCode::ResourceExhausted, name + ": output larger than 64 MiB");
      default:
        return makeError(ErrorCode::Unavailable, name + ": poll failed");
    }
  }
  if (WIFSIGNALED(status)) {
    return makeError(ErrorCode::Unavailable,
                     name + ": killed by signal " + std::to_string(WTERMSIG(status)));
  }
  output.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return output;
}

}  // namespace nmi::iptables
