// Names in the model store (src/models/store.h), checked the same way by the manifest parser,
// the HTTP API and the CLI: model names, tags, the paths of a model's files, and the mount
// paths thaw.yaml's `models:` gives them inside a jail. Pure functions.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace thaw::models {

inline constexpr char kDefaultTag[] = "latest";
inline constexpr size_t kMaxFilePathBytes = 4096;
inline constexpr size_t kMaxFileNameBytes = 255;
inline constexpr int kMaxFileDepth = 64;
inline constexpr size_t kMaxFilesPerModel = 10'000;

// 1-64 of [A-Za-z0-9_-], starting with a letter or digit (a function name's rules, so an
// admin's TENANT.NAME splits the same way).
bool IsValidModelName(std::string_view name);
// 1-128 of [A-Za-z0-9_.-], starting with a letter or digit.
bool IsValidModelTag(std::string_view tag);
// Why `path` cannot name a file inside a model (relative, '/'-separated, no empty, "." or
// ".." part, no NUL, within the length and depth limits), or nothing.
std::optional<std::string> FilePathProblem(std::string_view path);
// Why `mount` cannot be where a model appears in a jail (absolute, normalised, plain names, not
// "/" and not in or above a folder the jail owns: /var/task, /opt/thaw, /tmp, /proc, /dev,
// /usr, /etc, ...), or nothing.
std::optional<std::string> MountPathProblem(std::string_view mount);
// The variable an instance finds a model's folder in: THAW_MODEL_ + the name upper-cased with
// '-' as '_' ("digits-v2" -> THAW_MODEL_DIGITS_V2).
std::string ModelEnvName(std::string_view name);
// "NAME[:TAG]" -> {NAME, TAG or "latest"}; nothing if either part is invalid.
std::optional<std::pair<std::string, std::string>> ParseModelRef(std::string_view ref);

}  // namespace thaw::models
