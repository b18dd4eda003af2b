#include "sandbox/wire.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace thaw::sandbox {

void AppendField(std::string& out, const std::string& field) {
  out.append(field);
  out.push_back('\0');
}

std::vector<std::string> SplitFields(const char* data, size_t size) {
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == '\0') {
      out.emplace_back(data + start, i - start);
      start = i + 1;
    }
  }
  return out;
}

ssize_t SendWithFds(int sock, const std::string& msg, const int* fds, int nfds, int flags) {
  if (nfds < 0 || nfds > kMaxFds) {
    errno = EINVAL;
    return -1;
  }
  iovec iov{const_cast<char*>(msg.data()), msg.size()};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  if (nfds > 0) {
    mh.msg_control = control;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    cmsghdr* cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    std::memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
  }
  ssize_t n;
  do {
    n = ::sendmsg(sock, &mh, MSG_NOSIGNAL | flags);
  } while (n < 0 && errno == EINTR);
  return n;
}

ssize_t RecvWithFds(int sock, std::string& buf, std::vector<int>& fds, size_t max_size, int flags) {
  // Received into scratch memory that nothing zero-fills (a std::string resized to max_size
  // would write all of it, 1 MB per spawn request: in the spawner, right after a fork, that
  // copied up to 256 pages the child still shared, per start); only what arrives is touched.
  thread_local std::unique_ptr<char[]> scratch;
  thread_local size_t scratch_size = 0;
  if (scratch_size < max_size) {
    scratch.reset(new char[max_size]);
    scratch_size = max_size;
  }
  iovec iov{scratch.get(), max_size};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  mh.msg_control = control;
  mh.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = ::recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | flags);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return n;
  buf.assign(scratch.get(), static_cast<size_t>(n));
  for (cmsghdr* cm = CMSG_FIRSTHDR(&mh); cm != nullptr; cm = CMSG_NXTHDR(&mh, cm)) {
    if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
      size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      const int* p = reinterpret_cast<const int*>(CMSG_DATA(cm));
      fds.assign(p, p + count);
    }
  }
  return n;
}

}  // namespace thaw::sandbox
