#include "kube/query.h"

#include "http/url.h"

namespace nmi::kube {

namespace {

void add(std::string& target, char& separator, std::string_view name, std::string_view value) {
  target += separator;
  separator = '&';
  target += name;
  target += '=';
  target += http::urlEncode(value);
}

}  // namespace

std::string buildTarget(std::string_view path, const ListOptions& options) {
  std::string target(path);
  char separator = '?';
  if (!options.label_selector.empty()) {
    add(target, separator, "labelSelector", options.label_selector);
  }
  if (!options.field_selector.empty()) {
    add(target, separator, "fieldSelector", options.field_selector);
  }
  if (options.limit > 0) {
    add(target, separator, "limit", std::to_string(options.limit));
  }
  if (!options.continue_token.empty()) {
    add(target, separator, "continue", options.continue_token);
  }
  if (!options.resource_version.empty()) {
    add(target, separator, "resourceVersion", options.resource_version);
  }
  if (options.watch) {
    add(target, separator, "watch", "1");
  }
  if (options.allow_bookmarks) {
    add(target, separator, "allowWatchBookmarks", "true");
  }
  if (options.timeout_seconds > 0) {
    add(target, separator, "timeoutSeconds", std::to_string(options.timeout_seconds));
  }
  return target;
}

std::string pathSegment(std::string_view text) {
  return http::urlEncode(text);
}

std::string secretPath(std::string_view ns, std::string_view name) {
  return "/api/v1/namespaces/" + pathSegment(ns) + "/secrets/" + pathSegment(name);
}

}  // namespace nmi::kube
