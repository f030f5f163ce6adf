#include "kube/bearer_token.h"

#include <sys/stat.h>

#include <cerrno>
#include <system_error>
#include <utility>

#include "common/file.h"
#include "kube/rest_config.h"

namespace nmi::kube {

namespace {

constexpr std::chrono::seconds kCheckInterval{1};

std::string trimmed(const std::string& text) {
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) {
    return {};
  }
  const auto last = text.find_last_not_of(" \t\r\n");
  return text.substr(first, last - first + 1);
}

}  // namespace

BearerToken BearerToken::fixed(std::string token) {
  BearerToken out;
  out.token_ = std::move(token);
  out.loaded_ = true;
  return out;
}

BearerToken BearerToken::fromFile(std::string path, const Clock& clock) {
  BearerToken out;
  out.path_ = std::move(path);
  out.clock_ = &clock;
  return out;
}

BearerToken::BearerToken(BearerToken&& other) noexcept {
  *this = std::move(other);
}

BearerToken& BearerToken::operator=(BearerToken&& other) noexcept {
  if (this != &other) {
    const std::scoped_lock lock(mu_, other.mu_);
    path_ = std::move(other.path_);
    clock_ = other.clock_;
    token_ = std::move(other.token_);
    stamp_ = other.stamp_;
    loaded_ = other.loaded_;
    force_ = other.force_;
    checked_at_ = other.checked_at_;
    reads_ = other.reads_;
  }
  return *this;
}

std::uint64_t BearerToken::reads() const {
  const std::lock_guard lock(mu_);
  return reads_;
}

void BearerToken::invalidate() {
  const std::lock_guard lock(mu_);
  force_ = true;
}

Result<std::string> BearerToken::current() {
  const std::lock_guard lock(mu_);
  if (path_.empty()) {
    return token_;
  }
  const MonotonicTime now = clock_->monotonicNow();
  if (loaded_ && !force_ && now - checked_at_ < kCheckInterval) {
    return token_;
  }
  checked_at_ = now;
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) {
    const int err = errno;
    if (loaded_) {
      return token_;  // keep the last good token; the file may be mid-rotation
    }
    return makeError(
        err == ENOENT ? ErrorCode::NotFound : ErrorCode::Unavailable,
        "cannot stat token file " + path_ + ": " + std::generic_category().message(err));
  }
  const FileStamp stamp{
      st.st_dev, st.st_ino, st.st_size,
      static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec};
  if (loaded_ && !force_ && stamp == stamp_) {
    return token_;
  }
  force_ = false;
  auto text = readSmallFile(path_, kMaxCredentialFileBytes);
  if (!text) {
    if (loaded_) {
      return token_;
    }
    return text.error();
  }
  std::string token = trimmed(*text);
  if (token.empty()) {
    if (loaded_) {
      return token_;
    }
    return makeError(ErrorCode::InvalidArgument, "token file " + path_ + " is empty");
  }
  token_ = std::move(token);
  stamp_ = stamp;
  loaded_ = true;
  ++reads_;
  return token_;
}

}  // namespace nmi::kube
