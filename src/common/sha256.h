// SHA-256 of a byte string, hex encoded (content addresses for the blob store), one-shot or
// fed in pieces (Sha256Stream, for uploads hashed as they arrive). Sha256Hex is thread-safe; a
// Sha256Stream belongs to one thread at a time.
#pragma once

#include <memory>
#include <string>
#include <string_view>

namespace thaw {

std::string Sha256Hex(std::string_view data);

// Whether `text` is 64 lower-case hex digits (a Sha256Hex result).
bool IsSha256Hex(std::string_view text);

class Sha256Stream {
 public:
  Sha256Stream();
  ~Sha256Stream();
  Sha256Stream(const Sha256Stream&) = delete;
  Sha256Stream& operator=(const Sha256Stream&) = delete;

  void Update(std::string_view data);
  // The digest of everything fed so far, hex encoded; the stream is then spent.
  std::string FinishHex();

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

}  // namespace thaw
