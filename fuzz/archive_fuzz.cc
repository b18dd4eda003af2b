// libFuzzer target for the bundle unpacker (registry/archive.h): whatever the bytes, Unpack
// must return a Status, never write outside its destination, and leave nothing behind on error.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "common/files.h"
#include "registry/archive.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string base = [] {
    char tmpl[] = "/tmp/thaw-fuzz-XXXXXX";
    return std::string(::mkdtemp(tmpl));
  }();
  const std::string dest = base + "/out";
  std::string archive(reinterpret_cast<const char*>(data), size);
  thaw::Status st = thaw::registry::Unpack(archive, dest, {1 << 20, 64});
  if (!st.ok() && thaw::PathExists(dest)) std::abort();  // a refused archive left files behind
  // Nothing may appear beside `out`: that would be an escape.
  for (const auto& entry : std::filesystem::directory_iterator(base)) {
    if (entry.path().filename() != "out") std::abort();
  }
  (void)thaw::RemoveTree(dest);
  return 0;
}
