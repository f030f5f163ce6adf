#pragma once

#include <string>
#include <string_view>

namespace nmi::kube {

// The query of a list or watch request (the subset nmi uses). Empty strings and zero numbers
// are left out of the query.
struct ListOptions {
  std::string label_selector;    // labelSelector
  std::string field_selector;    // fieldSelector
  std::string resource_version;  // resourceVersion
  int limit = 0;                 // limit
  std::string continue_token;    // continue
  bool watch = false;            // watch=1
  bool allow_bookmarks = false;  // allowWatchBookmarks=true
  int timeout_seconds = 0;       // timeoutSeconds
};

// `path` followed by the query: parameters in a fixed order, values percent-encoded (RFC 3986
// unreserved characters stay as they are), e.g.
// "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-1&resourceVersion=0". Pure.
std::string buildTarget(std::string_view path, const ListOptions& options);

// One path segment, percent-encoded (a namespace or an object name).
std::string pathSegment(std::string_view text);

// The collections nmi reads.
inline constexpr std::string_view kPodsPath = "/api/v1/pods";
inline constexpr std::string_view kAadGroupPath = "/apis/aadpodidentity.k8s.io/v1";
inline constexpr std::string_view kAssignedIdentitiesPath =
    "/apis/aadpodidentity.k8s.io/v1/azureassignedidentities";
inline constexpr std::string_view kBindingsPath =
    "/apis/aadpodidentity.k8s.io/v1/azureidentitybindings";
inline constexpr std::string_view kIdentitiesPath =
    "/apis/aadpodidentity.k8s.io/v1/azureidentities";
inline constexpr std::string_view kExceptionsPath =
    "/apis/aadpodidentity.k8s.io/v1/azurepodidentityexceptions";

// /api/v1/namespaces/<ns>/secrets/<name>
std::string secretPath(std::string_view ns, std::string_view name);

}  // namespace nmi::kube
