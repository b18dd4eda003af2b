#include "models/names.h"

#include <array>
#include <cctype>

namespace thaw::models {
namespace {

bool IsAlnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }

// Folders the jail builds itself (sandbox/jail.cc): a model may not cover or sit inside them.
constexpr std::array<std::string_view, 16> kJailOwned = {
    "/var/task", "/opt/thaw", "/tmp",   "/proc",  "/dev",    "/usr", "/etc",  "/bin",
    "/sbin",     "/lib",      "/lib32", "/lib64", "/libx32", "/sys", "/.old", "/run"};

}  // namespace

bool IsValidModelName(std::string_view name) {
  if (name.empty() || name.size() > 64 || !IsAlnum(name[0])) return false;
  for (char c : name) {
    if (!IsAlnum(c) && c != '-' && c != '_') return false;
  }
  return true;
}

bool IsValidModelTag(std::string_view tag) {
  if (tag.empty() || tag.size() > 128 || !IsAlnum(tag[0])) return false;
  for (char c : tag) {
    if (!IsAlnum(c) && c != '-' && c != '_' && c != '.') return false;
  }
  return true;
}

std::optional<std::string> FilePathProblem(std::string_view path) {
  if (path.empty()) return "is empty";
  if (path.size() > kMaxFilePathBytes) return "is longer than 4096 bytes";
  if (path.front() == '/') return "must be relative";
  int depth = 0;
  for (size_t start = 0; start <= path.size();) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view part = path.substr(start, end - start);
    if (part.empty()) return "has an empty part";
    if (part == "." || part == "..") return "must not contain '.' or '..'";
    if (part.size() > kMaxFileNameBytes) return "has a name longer than 255 bytes";
    if (part.find('\0') != std::string_view::npos) return "contains a NUL byte";
    if (++depth > kMaxFileDepth) return "is deeper than 64 levels";
    start = end + 1;
  }
  return std::nullopt;
}

std::optional<std::string> MountPathProblem(std::string_view mount) {
  if (mount.empty() || mount.front() != '/') return "must be an absolute path";
  if (mount == "/") return "must not be /";
  if (mount.size() > 1024) return "is longer than 1024 bytes";
  for (size_t start = 1; start <= mount.size();) {
    size_t end = mount.find('/', start);
    if (end == std::string_view::npos) end = mount.size();
    std::string_view part = mount.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") {
      return "must be normalised (no empty, '.' or '..' parts, no trailing '/')";
    }
    for (char c : part) {
      if (!IsAlnum(c) && c != '-' && c != '_' && c != '.') {
        return "may hold only letters, digits, '-', '_' and '.'";
      }
    }
    start = end + 1;
  }
  for (std::string_view owned : kJailOwned) {
    auto inside = [](std::string_view path, std::string_view dir) {
      return path == dir || (path.starts_with(dir) && path[dir.size()] == '/');
    };
    if (inside(mount, owned) || inside(owned, mount)) {
      return "must not be in or above " + std::string(owned) + ", which the jail provides";
    }
  }
  return std::nullopt;
}

std::string ModelEnvName(std::string_view name) {
  std::string out = "THAW_MODEL_";
  for (char c : name) {
    out.push_back(c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  }
  return out;
}

std::optional<std::pair<std::string, std::string>> ParseModelRef(std::string_view ref) {
  size_t colon = ref.find(':');
  std::string name(ref.substr(0, colon));
  std::string tag =
      colon == std::string_view::npos ? kDefaultTag : std::string(ref.substr(colon + 1));
  if (!IsValidModelName(name) || !IsValidModelTag(tag)) return std::nullopt;
  return std::make_pair(std::move(name), std::move(tag));
}

}  // namespace thaw::models
