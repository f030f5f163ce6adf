#include "common/file.h"

#include <sys/stat.h>

#include <array>
#include <cerrno>
#include <system_error>
#include <utility>

#include <fcntl.h>
#include <unistd.h>

namespace nmi {

namespace {

std::string errnoText(int err) {
  return std::generic_category().message(err);
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&&) = delete;
  Fd& operator=(Fd&&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

Error tooLarge(const std::string& path, std::size_t max_bytes) {
  return makeError(ErrorCode::InvalidArgument,
                   path + " is larger than " + std::to_string(max_bytes) + " bytes");
}

}  // namespace

Result<std::string> readSmallFile(const std::string& path, std::size_t max_bytes) {
  // O_NONBLOCK: a FIFO must not block the caller; it is refused below.
  const Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));  // NOLINT: vararg
  if (fd.get() < 0) {
    const int err = errno;
    return makeError(err == ENOENT ? ErrorCode::NotFound : ErrorCode::Unavailable,
                     "cannot open " + path + ": " + errnoText(err));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    return makeError(ErrorCode::Unavailable, "cannot stat " + path + ": " + errnoText(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    return makeError(ErrorCode::InvalidArgument, path + " is not a regular file");
  }
  if (static_cast<std::size_t>(st.st_size) > max_bytes) {
    return tooLarge(path, max_bytes);
  }
  std::string content;
  std::array<char, 16384> chunk{};
  for (;;) {
    const ssize_t n = ::read(fd.get(), chunk.data(), chunk.size());
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return makeError(ErrorCode::Unavailable, "cannot read " + path + ": " + errnoText(errno));
    }
    if (n == 0) {
      break;
    }
    content.append(chunk.data(), static_cast<std::size_t>(n));
    if (content.size() > max_bytes) {  // grew while being read, or a /proc entry
      return tooLarge(path, max_bytes);
    }
  }
  return content;
}

}  // namespace nmi
