#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

#include "common/clock.h"
#include "common/result.h"

namespace nmi::kube {

// The bearer token sent to the API server: none, a fixed string, or a file that is re-read when
// it changes. A projected service-account token is rotated by the kubelet (an atomic symlink
// swap); the file's identity, size and modification time are checked at most once a second when
// the token is used, and invalidate() (after a 401) makes the next use re-read it at once.
// Thread-safe. Never log the token.
class BearerToken {
 public:
  BearerToken() = default;  // no token
  static BearerToken fixed(std::string token);
  // `clock` must outlive the object. The file is read on first use.
  static BearerToken fromFile(std::string path, const Clock& clock);

  BearerToken(BearerToken&& other) noexcept;
  BearerToken& operator=(BearerToken&& other) noexcept;
  BearerToken(const BearerToken&) = delete;
  BearerToken& operator=(const BearerToken&) = delete;
  ~BearerToken() = default;

  // The token to send now ("" when there is none). A file that cannot be read keeps the last
  // token it gave; with none yet, the error (NotFound, Unavailable, InvalidArgument: empty).
  Result<std::string> current();
  // The API server refused the token: re-read the file on next use (no effect for fixed tokens).
  void invalidate();
  bool isFile() const { return !path_.empty(); }
  // Times the file's content was (re)read, for tests and logs.
  std::uint64_t reads() const;

 private:
  struct FileStamp {
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = 0;
    std::int64_t mtime_ns = 0;
    bool operator==(const FileStamp&) const = default;
  };

  std::string path_;
  const Clock* clock_ = nullptr;
  mutable std::mutex mu_;
  std::string token_;
  FileStamp stamp_;
  bool loaded_ = false;
  bool force_ = false;
  MonotonicTime checked_at_{};
  std::uint64_t reads_ = 0;
};

}  // namespace nmi::kube
