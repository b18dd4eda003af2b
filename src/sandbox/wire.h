// Wire: how the spawner, its clients and its shells talk: one SOCK_SEQPACKET datagram per
// message, fields separated by NUL, descriptors passed alongside with SCM_RIGHTS. Internal to
// src/sandbox. A socket is used by one thread at a time; each thread receives into scratch memory
// of its own (RecvWithFds).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string>
#include <vector>

namespace thaw::sandbox {

inline constexpr size_t kMaxMessage = 1 << 20;
// Descriptors one message may carry: a spawn request's pipes and channel, and, to a shell, its
// bundle's, models' and devices' mounts (SpawnerSetup::cut_trees).
inline constexpr int kMaxFds = 64;

void AppendField(std::string& out, const std::string& field);
std::vector<std::string> SplitFields(const char* data, size_t size);
// Sends `msg` with `nfds` (at most kMaxFds) descriptors; returns what sendmsg returned.
// `flags` adds to sendmsg's (MSG_DONTWAIT for a send that must not block).
ssize_t SendWithFds(int sock, const std::string& msg, const int* fds, int nfds, int flags = 0);
// Receives one datagram of at most `max_size` bytes into `buf` and the descriptors that came
// with it (close-on-exec) into `fds`; returns what recvmsg returned (0: the peer closed).
// `flags` adds to recvmsg's (MSG_DONTWAIT for a non-blocking read).
ssize_t RecvWithFds(int sock, std::string& buf, std::vector<int>& fds,
                    size_t max_size = kMaxMessage, int flags = 0);

}  // namespace thaw::sandbox
