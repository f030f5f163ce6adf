#pragma once

#include <cstddef>
#include <string>

#include "common/result.h"

namespace nmi {

// Reads a small regular file whole: a credential, a kubeconfig, the identity file, a /proc or
// /proc/sys entry (those report size 0 and are read to their end). Never blocks on a FIFO (opened
// with O_NONBLOCK, then refused). Errors: NotFound (no such file), Unavailable (cannot open, stat
// or read), InvalidArgument (not a regular file, or more than `max_bytes`, also when it grows
// while being read). Messages name the path. Blocking I/O: call it at start-up, or off the event
// loop's hot path on files the node owns.
Result<std::string> readSmallFile(const std::string& path, std::size_t max_bytes);

}  // namespace nmi
