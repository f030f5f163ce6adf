#include "common/result.h"

namespace nmi {

const char* errorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::InvalidArgument:
      return "InvalidArgument";
    case ErrorCode::NotFound:
      return "NotFound";
    case ErrorCode::PermissionDenied:
      return "PermissionDenied";
    case ErrorCode::Unavailable:
      return "Unavailable";
    case ErrorCode::Timeout:
      return "Timeout";
    case ErrorCode::Upstream:
      return "Upstream";
    case ErrorCode::Cancelled:
      return "Cancelled";
    case ErrorCode::ResourceExhausted:
      return "ResourceExhausted";
    case ErrorCode::Internal:
      return "Internal";
  }
  return "Internal";
}

}  // namespace nmi
