// The web console's files (ui/ in the source tree), compiled into the binary at build time by
// cmake/embed_ui.cmake, so `thaw serve` needs no files and no network to serve /ui/. Immutable
// data: any thread may read it.
#pragma once

#include <span>
#include <string_view>

namespace thaw::ui {

struct Asset {
  std::string_view path;          // relative to ui/, e.g. "index.html", "app.js"
  std::string_view content_type;  // from the file's extension
  std::string_view body;
};

std::span<const Asset> Assets();
// The asset at `path` (relative to ui/; "" is index.html), or null.
const Asset* FindAsset(std::string_view path);

}  // namespace thaw::ui
