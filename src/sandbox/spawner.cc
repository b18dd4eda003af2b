#include "sandbox/spawner.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <vector>

#include "common/files.h"
#include "sandbox/jail.h"
#include "sandbox/shell.h"
#include "sandbox/tmp_disk.h"
#include "sandbox/uid_pool.h"
#include "sandbox/wire.h"

namespace thaw::sandbox {
namespace {

// Requests (wire.h) are NUL-separated fields: [op, id, ...]. A spawn ('S') is answered
// [id, "ok", pid, uid, cgroup], carrying a network: none instance's Runtime API listener, or
// [id, "err", message]. A kill ('K', [op, id, pid]) is not answered: the exit event follows.
constexpr char kOpSpawn = 'S';
constexpr char kOpKill = 'K';
// A fork ('F', [op, id, template pid, mem, pids, cpu, envc, env...], the log pipes) is
// answered as a spawn. Forks happen in two steps, so that the slow one (joining a cgroup: tens
// of milliseconds on cgroup v1) can happen ahead of the request: the spawner sends the
// template "P" on its channel with one end of a fresh socketpair (the fork socket); the
// template answers on it ["E", why] when it will not fork (it holds threads), or its child
// does, ["H", its pid in its namespace] (the kernel attaches its pid as the spawner sees it,
// SO_PASSCRED); the spawner moves it into a cgroup of its own, and the child then waits for
// its identity: ["I", nodump, env...] with its log pipes. Each ready template keeps one such
// child ready (a spare), made while the spawner is idle; a fork request takes it, or forks on
// demand when there is none. On its channel the template says "R" once its init is done and
// ["X", child's pid in its namespace, wait status] for each child it reaped. Everything a
// template or its children send is untrusted: the function's code ran in it.
constexpr char kOpFork = 'F';
constexpr int kRefillDelayMs = 20;  // how long the spawner is idle before it makes more
// Shells (or fork cgroups) made per idle turn: each costs the spawner a cgroup's directories and
// a clone (a millisecond or more). A request arriving meanwhile ends the batch after the one
// being made: it waits for that one only.
constexpr size_t kRefillBatch = 8;
// Requests handled per turn of the loop before it looks at the starts in flight again. While
// thaw sends a burst, requests keep arriving as fast as they are handled: draining them all
// first answered no start until the last request had its child (every call of a 100-instance
// burst waited for the 100th fork), though the first children had exec'd long before.
constexpr int kRequestsPerTurn = 4;
constexpr size_t kMaxReply = 64 << 10;

// The ready shells, one queue per network mode and /tmp size. Until some function asks for
// network: none, one such shell of the default size is kept (its first cold start is then as
// quick as the rest), not ready_shells: most machines never use it. A size a function asked
// for gets ready_shells from then on, so only that function's first cold start waits for
// its shell's /tmp to be made.
struct ShellKind {
  bool private_network = false;
  int64_t tmp_bytes = 0;
  auto operator<=>(const ShellKind&) const = default;
};

struct Shells {
  std::map<ShellKind, std::deque<Shell>> ready;
  std::map<ShellKind, size_t> keep;
  // By kind: the limits the last start asked for, which its next shells' cgroups are made with
  // (the default until a start asks; every function asks at least 64 MB).
  std::map<ShellKind, CgroupLimits> limits;
  // By /tmp size: the disk template its shells copy (tmp_disk.h), made on first use; an
  // invalid one when it could not be made (its shells then run mkfs.ext4, and report why).
  std::map<int64_t, UniqueFd> tmp_templates;

  Shells(int64_t default_tmp_bytes, size_t ready_shells) {
    keep[{false, default_tmp_bytes}] = ready_shells;
    keep[{true, default_tmp_bytes}] = std::min<size_t>(1, ready_shells);
  }

  bool Short() const {
    for (const auto& [kind, n] : keep) {
      auto it = ready.find(kind);
      if ((it == ready.end() ? 0 : it->second.size()) < n) return true;
    }
    return false;
  }

  // Forgets the ready shell with this pid; false when it is not one.
  bool Forget(pid_t pid, std::vector<std::string>& unremoved) {
    for (auto& [kind, queue] : ready) {
      auto it =
          std::find_if(queue.begin(), queue.end(), [pid](const Shell& s) { return s.pid == pid; });
      if (it == queue.end()) continue;
      ::close(it->control);
      if (!it->cgroup.empty()) unremoved.push_back(it->cgroup);
      queue.erase(it);
      return true;
    }
    return false;
  }

  // The template for shells of `kind`, made now if it is the first (mkfs.ext4, once per size,
  // here in the spawner: tens of milliseconds that every shell would otherwise spend); -1 when
  // shells make no disk.
  int TmpTemplate(const SpawnerSetup& setup, const ShellKind& kind) {
    if (setup.tmp_disk_dir.empty()) return -1;
    auto it = tmp_templates.find(kind.tmp_bytes);
    if (it == tmp_templates.end()) {
      auto made = MakeTmpDiskTemplate(setup.tmp_disk_dir, kind.tmp_bytes);
      it = tmp_templates.emplace(kind.tmp_bytes, made.ok() ? std::move(*made) : UniqueFd()).first;
    }
    return it->second.valid() ? it->second.get() : -1;
  }

  StatusOr<Shell> Start(const SpawnerSetup& setup, const ShellKind& kind) {
    return StartShell(setup, kind.private_network, kind.tmp_bytes, TmpTemplate(setup, kind),
                      limits[kind]);
  }
};

bool SameLimits(const CgroupLimits& a, const CgroupLimits& b) {
  return a.memory_bytes == b.memory_bytes && a.pids_max == b.pids_max &&
         a.cpu_weight == b.cpu_weight;
}

// A child the spawner made and has not reaped yet.
struct Child {
  std::string cgroup;   // may be empty
  uid_t uid = 0;        // from the uid pool (kJail), given back when reaped; 0: none
  bool report = false;  // thaw knows its pid: send an exit event (not for failed starts)
};

// A start whose exec is not confirmed yet: the child reports on `wait_fd` (a shell's control
// socket, or a plain child's status pipe), which its exec closes.
struct PendingStart {
  std::string id;
  pid_t pid = 0;
  UniqueFd wait_fd;
  bool shell = false;
  bool private_network = false;
  UniqueFd listener;    // a network: none shell's Runtime API listener, handed over first
  UniqueFd channel;     // a template's: the spawner's end of its channel
  CgroupLimits limits;  // a template's: its forks' too
};

// A template the spawner started. Its spawn is answered when it says it is ready.
struct Template {
  UniqueFd channel;      // invalid once the template closed it
  std::string ready_id;  // the spawn to answer when it is ready; empty once answered
  CgroupLimits limits;   // its own, and its forks'
  std::string refusal;   // why it will not fork (it holds threads): every fork is refused
  pid_t spare = 0;       // a child in its cgroup, waiting for an identity; 0: none
  bool forking = false;  // a fork for a spare is in flight
};

// An instance forked from a template: the template's child, not the spawner's, so its exit
// comes from the template (or the template's own end, which ends it too).
struct Forked {
  pid_t template_pid = 0;
  pid_t ns_pid = 0;  // its pid in the template's PID namespace, as the template reports it
  std::string cgroup;
  UniqueFd pidfd;         // kills it without the risk of a reused pid
  UniqueFd sock;          // its fork socket, until it has its identity
  bool assigned = false;  // an instance thaw knows (else a spare): it gets an exit event
};

// A cgroup made ahead for a fork, with the limits the last fork asked for: the fork then
// joins it through its open cgroup.procs files instead of making one (a dozen mkdirs and
// limit writes) and joining it by path, which cost the single-threaded spawner ~0.3 ms per
// fork on cgroup v1 and queued a burst of forks behind it.
struct ReadyCgroup {
  std::string name;
  CgroupLimits limits;
  CgroupProcs procs;
};

// A fork whose child has not said hello yet: for request `id`, or a spare (`id` empty).
struct PendingFork {
  std::string id;
  pid_t template_pid = 0;
  std::string cgroup;
  CgroupProcs procs;     // cgroup's, when it was made ahead (else joined by path)
  UniqueFd sock;         // the spawner's end of the fork socket
  std::string identity;  // the "I" message, for a request
  UniqueFd out, err;     // its log pipes, for a request
  UniqueFd channel;      // its native channel, for a request that has one
};

class Spawner {
 public:
  Spawner(const SpawnerSetup& setup, int request_fd, int exit_fd, std::optional<UidPool> uids)
      : setup_(setup),
        request_fd_(request_fd),
        exit_fd_(exit_fd),
        uids_(std::move(uids)),
        shells_(setup.tmp_bytes, setup.ready_shells) {}

  [[noreturn]] void Run();
  // Cgroups to remove once empty (left behind by a spawner that was killed).
  void RemoveWhenEmpty(std::vector<std::string> cgroups) {
    for (auto& c : cgroups) {
      (void)setup_.cgroups->Kill(c);
      unremoved_.push_back(std::move(c));
    }
  }

 private:
  void OnRequest(std::vector<std::string> fields, std::vector<int>& fds);
  void Spawn(const std::string& id, std::vector<std::string> fields, const std::vector<int>& fds);
  void SpawnInShell(const std::string& id, const ChildSpec& spec, std::vector<std::string> fields,
                    const std::vector<int>& fds, uid_t uid, UniqueFd channel);
  void SpawnPlain(const std::string& id, const ChildSpec& spec, const std::vector<int>& fds,
                  UniqueFd channel);
  void Fork(const std::string& id, const std::vector<std::string>& fields,
            const std::vector<int>& fds);
  // Asks `template_pid` for a child (a spare when fork.id is empty) in a new cgroup.
  void StartFork(PendingFork fork, const CgroupLimits& limits);
  // Gives child `pid` its identity and its log pipes, and answers request `id`.
  void Assign(pid_t pid, const std::string& id, const std::string& identity, int out, int err,
              int channel);
  // Forks spares for the ready templates that have none (when the spawner is idle).
  void RefillSpares();
  bool SparesShort() const;
  // Makes cgroups for forks ahead (ReadyCgroup), kRefillBatch at a time (fewer once a request
  // waits), up to ready_shells while a template is ready (when the spawner is idle).
  void RefillForkCgroups();
  bool ForkCgroupsShort() const;
  std::string NextForkCgroupName();
  // The fork socket is readable: true when the fork is settled.
  bool OnForkReadable(PendingFork& fork);
  void OnTemplateReadable(pid_t template_pid);
  // A forked instance ended: its usage, its cgroup removed, its exit event sent.
  void EndForked(pid_t pid, int wait_status);
  // A template was reaped: its init failed (answered so), or its instances ended with it.
  void TemplateEnded(pid_t pid, int wait_status);
  void Kill(const std::vector<std::string>& fields);
  // The child on `pending.wait_fd` wrote or exec'd: true when the start is settled.
  bool OnPendingReadable(PendingStart& pending);
  void Reap();
  // Reads the child's cgroup usage, removes the cgroup, gives its uid back.
  void Release(pid_t pid, ExitEvent* usage);
  void ReplyError(const std::string& id, const std::string& message);
  void ReplyOk(const std::string& id, pid_t pid, UniqueFd listener);
  void SendExit(const ExitEvent& ev);
  // Queues `msg` for thaw on `fd` (the request socket's replies, or exit events), with
  // `passed` handed over, and sends what it can.
  void ToThaw(int fd, std::string msg, UniqueFd passed = UniqueFd());
  // Sends the queue in order until a socket is full.
  void FlushOutbox();
  [[noreturn]] void Stop();

  const SpawnerSetup& setup_;
  const int request_fd_;
  const int exit_fd_;
  std::optional<UidPool> uids_;             // kJail only
  std::map<pid_t, Child> live_;             // every child not yet reaped, shells in use included
  std::map<pid_t, int> early_exits_;        // pending children reaped before their start settled
  std::vector<PendingStart> pending_;       // starts waiting for their exec
  Shells shells_;                           // ready sandboxes, when isolated
  std::vector<std::string> unremoved_;      // cgroups still busy when their child was reaped
  std::map<pid_t, Template> templates_;     // by pid: started, until reaped
  std::map<pid_t, Forked> forked_;          // by pid as the spawner sees it
  std::vector<PendingFork> pending_forks_;  // forks waiting for the child's hello
  // What the spawner sends thaw, in order, sent without blocking: thaw may be sending requests
  // at the same moment (a socket pair holds about ten messages each way), and a spawner blocked
  // in its send would never read them (removing a function with 500 forked instances did that:
  // its template's end sent 500 exit events while thaw sent 500 kills).
  struct Outgoing {
    int fd;
    std::string msg;
    UniqueFd passed;  // a descriptor handed over with it (a network: none listener)
  };
  std::deque<Outgoing> outbox_;
  uint64_t fork_cgroups_ = 0;              // names the forked instances' cgroups
  std::deque<ReadyCgroup> ready_cgroups_;  // made ahead for forks, oldest first
  CgroupLimits fork_limits_;               // the limits the last fork asked for
  // SpawnPlain's children's stack until they exec (one at a time: the spawner waits).
  static constexpr size_t kVforkStack = 256 << 10;
  char* vfork_stack_ = nullptr;
};

// True when `fd` has something to read (a poll that does not wait).
bool Readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0 && (p.revents & POLLIN) != 0;
}

// Fills the queues: one shell each at once, the rest only when `idle`, kRefillBatch at a time
// (the next idle turn makes more), and none past the first of a batch once a request waits on
// `request_fd`. A shell costs CPU (its mounts, a cgroup, a network namespace) that, made right
// after a spawn, the instance just started would have to share.
void RefillShells(const SpawnerSetup& setup, Shells& shells, bool idle, int request_fd) {
  if (setup.mode == Isolation::kPlain) return;
  size_t made = 0;
  for (const auto& [kind, keep] : shells.keep) {
    auto& queue = shells.ready[kind];
    const size_t target = idle ? keep : std::min<size_t>(1, keep);
    while (queue.size() < target && (!idle || made < kRefillBatch)) {
      if (idle && made > 0 && Readable(request_fd)) return;
      ++made;
      auto shell = shells.Start(setup, kind);
      if (!shell.ok()) break;  // the next spawn reports the error
      queue.push_back(std::move(*shell));
    }
  }
}

void Spawner::ReplyError(const std::string& id, const std::string& message) {
  std::string msg;
  AppendField(msg, id);
  AppendField(msg, "err");
  AppendField(msg, message.substr(0, kMaxReply / 2));
  ToThaw(request_fd_, std::move(msg));
}

void Spawner::ReplyOk(const std::string& id, pid_t pid, UniqueFd listener) {
  const Child& child = live_.at(pid);
  std::string msg;
  AppendField(msg, id);
  AppendField(msg, "ok");
  AppendField(msg, std::to_string(pid));
  AppendField(msg, std::to_string(child.uid));
  AppendField(msg, child.cgroup);
  ToThaw(request_fd_, std::move(msg), std::move(listener));
}

void Spawner::SendExit(const ExitEvent& ev) {
  ToThaw(exit_fd_, std::string(reinterpret_cast<const char*>(&ev), sizeof(ev)));
}

void Spawner::ToThaw(int fd, std::string msg, UniqueFd passed) {
  outbox_.push_back(Outgoing{fd, std::move(msg), std::move(passed)});
  FlushOutbox();
}

void Spawner::FlushOutbox() {
  while (!outbox_.empty()) {
    Outgoing& o = outbox_.front();
    const int fd = o.passed.get();
    if (SendWithFds(o.fd, o.msg, &fd, o.passed.valid() ? 1 : 0, MSG_DONTWAIT) < 0 &&
        errno == EAGAIN) {
      return;  // the loop polls for room
    }
    outbox_.pop_front();  // sent, or thaw is gone
  }
}

void Spawner::OnRequest(std::vector<std::string> fields, std::vector<int>& fds) {
  if (fields.size() < 2 || fields[0].size() != 1) return;  // no id to answer: not thaw
  const std::string id = fields[1];
  fields.erase(fields.begin() + 1);  // the rest is what ParseSpawn and the shell read
  if (fields[0][0] == kOpSpawn) {
    Spawn(id, std::move(fields), fds);
  } else if (fields[0][0] == kOpKill && fields.size() == 2) {
    Kill(fields);
  } else if (fields[0][0] == kOpFork) {
    Fork(id, fields, fds);
  } else {
    ReplyError(id, "unknown request");
  }
}

void Spawner::Spawn(const std::string& id, std::vector<std::string> fields,
                    const std::vector<int>& fds) {
  auto spec = ParseSpawn(fields);
  // The log pipes, and the native channel when it has one (a template never does).
  if (!spec.ok() || fds.size() < 2 || fds.size() > (spec->template_channel ? 2u : 3u)) {
    return ReplyError(id, "malformed spawn request");
  }
  std::vector<int> child_fds = fds;
  UniqueFd channel, theirs;
  if (spec->template_channel) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
      return ReplyError(
          id, std::string("failed to create socketpair on template channel: ") + strerror(errno));
    }
    channel.reset(sv[0]);
    theirs.reset(sv[1]);
    child_fds.push_back(sv[1]);
  }
  if (setup_.mode == Isolation::kPlain) {
    if (spec->private_network) {
      return ReplyError(id,
                        "failed to start instance: network: none needs the sandbox, and "
                        "instances run as plain processes here (GET /v1/node says why)");
    }
    SpawnPlain(id, *spec, child_fds, std::move(channel));
    if (!pending_.empty() && pending_.back().id == id) pending_.back().limits = spec->limits;
    return;
  }
  uid_t uid = 0;
  if (uids_.has_value()) {
    auto taken = uids_->Take();
    if (!taken.has_value()) {
      return ReplyError(id, "failed to start instance: all " + std::to_string(uids_->taken()) +
                                " instance uids are in use (raise instance_uids)");
    }
    uid = *taken;
    fields[SpawnUidField(fields)] = std::to_string(uid);  // the jailed uid
  }
  SpawnInShell(id, *spec, std::move(fields), child_fds, uid, std::move(channel));
  if (!pending_.empty() && pending_.back().id == id) pending_.back().limits = spec->limits;
}

void Spawner::SpawnInShell(const std::string& id, const ChildSpec& spec,
                           std::vector<std::string> fields, const std::vector<int>& fds, uid_t uid,
                           UniqueFd channel) {
  const ShellKind kind{spec.private_network,
                       spec.tmp_bytes > 0 ? spec.tmp_bytes : setup_.tmp_bytes};
  // The start's mounts, cut from the host here: the shell has pivoted already (cut_trees).
  std::vector<UniqueFd> trees;
  if (setup_.cut_trees) {
    std::vector<std::pair<std::string, bool>> paths = {{spec.bundle_dir, false}};
    for (const std::string& src : spec.mount_src) paths.emplace_back(src, false);
    for (const std::string& device : spec.gpu_bind) paths.emplace_back(device, true);
    for (const auto& [path, device] : paths) {
      auto tree = CutTree(path, device);
      if (!tree.ok()) {
        if (uid != 0) uids_->Give(uid);
        return ReplyError(id, "failed to start instance: " + tree.status().message());
      }
      trees.push_back(std::move(*tree));
    }
  }
  auto& ready = shells_.ready[kind];
  shells_.keep[kind] = setup_.ready_shells;
  shells_.limits[kind] = spec.limits;
  if (ready.empty()) {
    auto fresh = shells_.Start(setup_, kind);
    if (!fresh.ok()) {
      if (uid != 0) uids_->Give(uid);
      return ReplyError(id, fresh.status().message());
    }
    ready.push_back(std::move(*fresh));
  }
  Shell shell = ready.front();
  ready.pop_front();
  // From here the shell is a child like any other: reaping it removes its cgroup and gives
  // its uid back, whether it became an instance or failed on the way.
  live_[shell.pid] = Child{shell.cgroup, uid, false};
  UniqueFd control(shell.control);
  if (!shell.cgroup.empty() && !SameLimits(shell.limits, spec.limits)) {
    if (Status st = setup_.cgroups->SetLimits(shell.cgroup, spec.limits); !st.ok()) {
      ::kill(shell.pid, SIGKILL);
      return ReplyError(id, st.message());
    }
  }
  if (setup_.cut_trees) {
    if (Status st = DenyOtherGpus(setup_, shell.cgroup, spec); !st.ok()) {
      ::kill(shell.pid, SIGKILL);
      return ReplyError(id, st.message());
    }
  }
  std::string msg;
  for (const auto& f : fields) AppendField(msg, f);
  std::vector<int> sent = fds;
  for (const UniqueFd& tree : trees) sent.push_back(tree.get());
  if (SendWithFds(control.get(), msg, sent.data(), static_cast<int>(sent.size())) < 0) {
    int err = errno;
    ::kill(shell.pid, SIGKILL);
    return ReplyError(id,
                      std::string("failed to start instance in sandbox shell: ") + strerror(err));
  }
  PendingStart pending;
  pending.id = id;
  pending.pid = shell.pid;
  pending.wait_fd = std::move(control);
  pending.shell = true;
  pending.private_network = spec.private_network;
  pending.channel = std::move(channel);
  pending_.push_back(std::move(pending));
}

void Spawner::SpawnPlain(const std::string& id, const ChildSpec& spec, const std::vector<int>& fds,
                         UniqueFd channel) {
  int status_pipe[2];
  if (::pipe2(status_pipe, O_CLOEXEC) != 0) {
    return ReplyError(id, std::string("failed to create pipe on spawner: ") + strerror(errno));
  }
  // A vfork-style clone: the child borrows the spawner's memory (and runs on a stack of its
  // own) until it execs, while the spawner waits. A fork copied the spawner's page tables and
  // the exec tore them down again, and every page the spawner then wrote while a child had not
  // exec'd yet was copied: most of a plain start's CPU. The child allocates nothing on its way
  // to the exec (ExecArrays), and touches nothing of the spawner's but its own stack.
  const ExecArrays exec(spec);
  struct Args {
    const SpawnerSetup* setup;
    const ChildSpec* spec;
    const std::vector<int>* fds;
    int status_fd;
    const ExecArrays* exec;
  } args{&setup_, &spec, &fds, status_pipe[1], &exec};
  if (vfork_stack_ == nullptr) {
    void* stack = ::mmap(nullptr, kVforkStack, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack != MAP_FAILED) vfork_stack_ = static_cast<char*>(stack);
  }
  pid_t pid = -1;
  if (vfork_stack_ != nullptr) {
    pid = ::clone(
        [](void* p) -> int {
          const Args& a = *static_cast<const Args*>(p);
          const int third = a.fds->size() > 2 ? (*a.fds)[2] : -1;
          const bool tpl = a.spec->template_channel;
          ExecChild(*a.setup, *a.spec, (*a.fds)[0], (*a.fds)[1], a.status_fd, nullptr,
                    tpl ? third : -1, tpl ? -1 : third, a.exec);
        },
        vfork_stack_ + kVforkStack, CLONE_VM | CLONE_VFORK | SIGCHLD, &args);
  } else {
    errno = ENOMEM;
  }
  if (pid < 0) {
    int err = errno;
    ::close(status_pipe[0]);
    ::close(status_pipe[1]);
    return ReplyError(id, std::string("failed to fork on spawner: ") + strerror(err));
  }
  ::close(status_pipe[1]);
  live_[pid] = Child{"", 0, false};
  PendingStart pending;
  pending.id = id;
  pending.pid = pid;
  pending.wait_fd.reset(status_pipe[0]);
  pending.channel = std::move(channel);
  pending_.push_back(std::move(pending));
}

bool Spawner::OnPendingReadable(PendingStart& p) {
  std::string error;
  if (p.shell) {
    std::string buf;
    std::vector<int> fds;
    ssize_t n = RecvWithFds(p.wait_fd.get(), buf, fds, 4096, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return false;
    if (n > 0 && !fds.empty()) {  // the listener comes first; the exec (EOF) follows
      p.listener.reset(fds[0]);
      for (size_t i = 1; i < fds.size(); ++i) ::close(fds[i]);
      return false;
    }
    if (n > 0) error = buf;
  } else {
    error = AwaitExec(p.wait_fd.get());  // a pipe: readable means EOF or the whole message
  }
  if (error.empty() && p.private_network && !p.listener.valid()) {
    error = "failed to start instance in sandbox shell: no Runtime API listener came back";
  }
  auto early = early_exits_.find(p.pid);
  if (!error.empty()) {
    // The child exits (or is killed here); reaping it cleans up, and reports nothing.
    if (early == early_exits_.end()) {
      ::kill(p.pid, SIGKILL);
    } else {
      Release(p.pid, nullptr);
      early_exits_.erase(early);
    }
    ReplyError(p.id, error);
    return true;
  }
  if (p.channel.valid()) {
    // A template: answered once it says its init is done (OnTemplateReadable), or failed.
    Template& t = templates_[p.pid];
    t.channel = std::move(p.channel);
    t.ready_id = p.id;
    t.limits = p.limits;
    fork_limits_ = p.limits;  // its forks' cgroups are made ahead with them
    if (early != early_exits_.end()) {
      TemplateEnded(p.pid, early->second);
      Release(p.pid, nullptr);
      early_exits_.erase(early);
    }
    return true;
  }
  live_.at(p.pid).report = true;
  ReplyOk(p.id, p.pid, std::move(p.listener));
  if (early != early_exits_.end()) {  // it exec'd and already ended: say so now
    ExitEvent ev{p.pid, early->second, 0, 0, 0};
    Release(p.pid, &ev);
    early_exits_.erase(early);
    SendExit(ev);
  }
  return true;
}

void Spawner::Release(pid_t pid, ExitEvent* usage) {
  auto it = live_.find(pid);
  if (it == live_.end()) return;
  const Child& child = it->second;
  if (setup_.cgroups != nullptr && !child.cgroup.empty()) {
    if (usage != nullptr) {
      if (auto u = setup_.cgroups->Usage(child.cgroup); u.ok()) {
        usage->cpu_us = u->cpu_us;
        usage->peak_memory_bytes = u->peak_memory_bytes;
        usage->oom_kills = u->oom_kills;
      }
    }
    (void)setup_.cgroups->Kill(child.cgroup);
    if (!setup_.cgroups->Remove(child.cgroup).ok()) unremoved_.push_back(child.cgroup);
  }
  // SAFETY: the uid is free again only now: the instance's last process is gone (its cgroup
  // was killed above; without cgroups its PID namespace died with its first process).
  if (child.uid != 0) uids_->Give(child.uid);
  live_.erase(it);
}

// Reaps exited children: a ready shell that died unused is dropped quietly; a child whose start
// is still settling waits for it; an instance's cgroup is read and removed and its exit event
// sent.
void Spawner::Reap() {
  int status = 0;
  pid_t pid;
  while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
    if (shells_.Forget(pid, unremoved_)) continue;
    const bool settling = std::any_of(pending_.begin(), pending_.end(),
                                      [pid](const PendingStart& p) { return p.pid == pid; });
    if (settling) {
      early_exits_[pid] = status;
      continue;
    }
    if (templates_.count(pid)) TemplateEnded(pid, status);
    auto it = live_.find(pid);
    const bool report = it != live_.end() && it->second.report;
    ExitEvent ev{pid, status, 0, 0, 0};
    Release(pid, &ev);
    if (report) SendExit(ev);
  }
}

void Spawner::Kill(const std::vector<std::string>& fields) {
  pid_t pid = static_cast<pid_t>(std::strtol(fields[1].c_str(), nullptr, 10));
  if (auto it = forked_.find(pid); it != forked_.end()) {
    // SAFETY: through its pidfd: the template may have reaped it already and its pid be reused.
    (void)::syscall(SYS_pidfd_send_signal, it->second.pidfd.get(), SIGKILL, nullptr, 0);
    if (setup_.cgroups != nullptr && !it->second.cgroup.empty()) {
      (void)setup_.cgroups->Kill(it->second.cgroup);
    }
    return;
  }
  // Only a child not yet reaped: its pid cannot have been reused.
  if (auto it = live_.find(pid); it != live_.end() && pid > 0) {
    ::kill(-pid, SIGKILL);
    ::kill(pid, SIGKILL);
    if (setup_.cgroups != nullptr && !it->second.cgroup.empty()) {
      (void)setup_.cgroups->Kill(it->second.cgroup);
    }
  }
}

void Spawner::Run() {
  ::prctl(PR_SET_NAME, "thaw-spawner");
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  // SIGINT/SIGTERM from a terminal reach the whole process group; thaw decides when we stop.
  ::sigprocmask(SIG_BLOCK, &mask, nullptr);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  int sfd = ::signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  std::string buf;
  std::vector<pollfd> pfds;
  bool idle = false;  // the last poll timed out: no request came for a moment
  for (;;) {
    // Keep sandboxes ready for the next cold starts, unless starts are settling: the
    // instances being started would share the CPU with it.
    if (pending_.empty()) RefillShells(setup_, shells_, idle, request_fd_);
    // Spares (a fork per template, in its cgroup ahead of the request): only when idle, as
    // they cost a cgroup join that the instances being started would wait behind.
    if (pending_.empty() && pending_forks_.empty() && idle) {
      RefillSpares();
      RefillForkCgroups();
    }
    int timeout = shells_.Short() || SparesShort() || ForkCgroupsShort() ? kRefillDelayMs : -1;
    // Cgroups whose last processes were still exiting are retried shortly.
    if (!unremoved_.empty()) timeout = timeout < 0 ? 100 : std::min(timeout, 100);
    FlushOutbox();
    // Room for what waits to be sent: on the request socket with its requests, the exit
    // socket's as the last entry.
    const int waiting_on = outbox_.empty() ? -1 : outbox_.front().fd;
    pfds.assign(
        {{request_fd_, static_cast<short>(POLLIN | (waiting_on == request_fd_ ? POLLOUT : 0)), 0},
         {sfd, POLLIN, 0}});
    for (const auto& p : pending_) pfds.push_back({p.wait_fd.get(), POLLIN, 0});
    for (const auto& f : pending_forks_) pfds.push_back({f.sock.get(), POLLIN, 0});
    std::vector<pid_t> channels;  // templates whose channel is open, in pfds' order
    for (const auto& [pid, t] : templates_) {
      if (!t.channel.valid()) continue;
      channels.push_back(pid);
      pfds.push_back({t.channel.get(), POLLIN, 0});
    }
    if (waiting_on == exit_fd_) pfds.push_back({exit_fd_, POLLOUT, 0});
    int ready = ::poll(pfds.data(), pfds.size(), timeout);
    if (ready < 0) {
      if (errno == EINTR) continue;
      break;
    }
    idle = ready == 0;
    if (pfds[1].revents & POLLIN) {
      signalfd_siginfo info;
      while (::read(sfd, &info, sizeof(info)) == sizeof(info)) {
      }
      Reap();
    }
    // Settle the starts whose child wrote or exec'd (pfds[2 + i] is pending_[i]'s).
    size_t kept = 0;
    for (size_t i = 0; i < pending_.size(); ++i) {
      const bool settled =
          (pfds[2 + i].revents & (POLLIN | POLLHUP | POLLERR)) && OnPendingReadable(pending_[i]);
      if (!settled) {
        if (kept != i) pending_[kept] = std::move(pending_[i]);
        ++kept;
      }
    }
    // pfds: the request socket, the signalfd, then pending_'s, pending_forks_' and channels'.
    const size_t old_pending = pending_.size();
    pending_.resize(kept);
    kept = 0;
    const size_t nforks = pending_forks_.size();
    for (size_t i = 0; i < nforks; ++i) {
      const bool settled = (pfds[2 + old_pending + i].revents & (POLLIN | POLLHUP | POLLERR)) &&
                           OnForkReadable(pending_forks_[i]);
      if (!settled) {
        if (kept != i) pending_forks_[kept] = std::move(pending_forks_[i]);
        ++kept;
      }
    }
    pending_forks_.resize(kept);
    for (size_t i = 0; i < channels.size(); ++i) {
      if (pfds[2 + old_pending + nforks + i].revents & (POLLIN | POLLHUP | POLLERR)) {
        OnTemplateReadable(channels[i]);
      }
    }
    for (auto it = unremoved_.begin(); it != unremoved_.end();) {
      it = setup_.cgroups->Remove(*it).ok() ? unremoved_.erase(it) : std::next(it);
    }
    if (pfds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      // A few of the requests waiting, so a burst of starts is in flight at once; the next
      // poll answers the starts that settled meanwhile before it takes more.
      for (int handled = 0; handled < kRequestsPerTurn; ++handled) {
        std::vector<int> fds;
        ssize_t n = RecvWithFds(request_fd_, buf, fds, kMaxMessage, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
        if (n <= 0) Stop();  // thaw is gone
        OnRequest(SplitFields(buf.data(), buf.size()), fds);
        for (int fd : fds) ::close(fd);
      }
    }
  }
  Stop();
}

void Spawner::Stop() {
  for (auto& [pid, f] : forked_) {
    (void)::syscall(SYS_pidfd_send_signal, f.pidfd.get(), SIGKILL, nullptr, 0);
    if (setup_.cgroups != nullptr && !f.cgroup.empty()) (void)setup_.cgroups->Kill(f.cgroup);
  }
  for (auto& [kind, queue] : shells_.ready) {
    for (const Shell& shell : queue) live_[shell.pid] = Child{shell.cgroup, 0, false};
  }
  for (const auto& [pid, child] : live_) {
    ::kill(-pid, SIGKILL);
    ::kill(pid, SIGKILL);
    if (setup_.cgroups != nullptr && !child.cgroup.empty()) {
      (void)setup_.cgroups->Kill(child.cgroup);
      ::waitpid(pid, nullptr, 0);
      (void)setup_.cgroups->Remove(child.cgroup);
    }
  }
  // The templates are reaped above: their forked instances are gone with them.
  for (auto& [pid, f] : forked_) {
    if (setup_.cgroups != nullptr && !f.cgroup.empty()) (void)setup_.cgroups->Remove(f.cgroup);
  }
  for (const ReadyCgroup& c : ready_cgroups_) (void)setup_.cgroups->Remove(c.name);
  _exit(0);
}

void Spawner::Fork(const std::string& id, const std::vector<std::string>& fields,
                   const std::vector<int>& fds) {
  // [op, template pid, mem, pids, cpu, envc, env...]
  if (fields.size() < 6 || fds.size() < 2 || fds.size() > 3) {
    return ReplyError(id, "malformed fork request");
  }
  const pid_t template_pid = static_cast<pid_t>(std::strtol(fields[1].c_str(), nullptr, 10));
  const size_t envc = std::strtoul(fields[5].c_str(), nullptr, 10);
  if (fields.size() != 6 + envc) return ReplyError(id, "malformed fork request");
  auto t = templates_.find(template_pid);
  if (t == templates_.end() || !t->second.ready_id.empty() || !t->second.channel.valid()) {
    return ReplyError(id, "failed to fork instance: its template is gone");
  }
  if (!t->second.refusal.empty()) {
    return ReplyError(id, "template refused to fork: " + t->second.refusal);
  }
  std::string identity;
  AppendField(identity, "I");
  // SAFETY: jailed forks share the template's uid; not dumpable, a sibling cannot read them.
  AppendField(identity, setup_.mode == Isolation::kJail ? "1" : "0");
  for (size_t i = 0; i < envc; ++i) AppendField(identity, fields[6 + i]);
  if (const pid_t spare = t->second.spare; spare != 0 && forked_.count(spare)) {
    t->second.spare = 0;
    return Assign(spare, id, identity, fds[0], fds[1], fds.size() > 2 ? fds[2] : -1);
  }
  PendingFork fork;
  fork.id = id;
  fork.template_pid = template_pid;
  fork.identity = std::move(identity);
  // The request's descriptors are closed when it returns; the fork keeps its own copies.
  fork.out.reset(::fcntl(fds[0], F_DUPFD_CLOEXEC, 0));
  fork.err.reset(::fcntl(fds[1], F_DUPFD_CLOEXEC, 0));
  if (fds.size() > 2) fork.channel.reset(::fcntl(fds[2], F_DUPFD_CLOEXEC, 0));
  if (!fork.out.valid() || !fork.err.valid() || (fds.size() > 2 && !fork.channel.valid())) {
    return ReplyError(id, std::string("failed to dup log pipes on fork: ") + strerror(errno));
  }
  CgroupLimits limits;
  limits.memory_bytes = std::strtoll(fields[2].c_str(), nullptr, 10);
  limits.pids_max = std::strtoll(fields[3].c_str(), nullptr, 10);
  limits.cpu_weight = std::strtoll(fields[4].c_str(), nullptr, 10);
  StartFork(std::move(fork), limits);
}

void Spawner::StartFork(PendingFork fork, const CgroupLimits& limits) {
  Template& t = templates_.at(fork.template_pid);
  auto fail = [&](const std::string& why) {
    if (!fork.cgroup.empty()) (void)setup_.cgroups->Remove(fork.cgroup);
    if (!fork.id.empty()) ReplyError(fork.id, why);
  };
  if (setup_.cgroups != nullptr) {
    fork_limits_ = limits;
    if (!ready_cgroups_.empty()) {
      ReadyCgroup& ready = ready_cgroups_.front();
      fork.cgroup = std::move(ready.name);
      fork.procs = std::move(ready.procs);
      const bool same = ready.limits == limits;
      ready_cgroups_.pop_front();
      if (!same) {
        if (Status st = setup_.cgroups->SetLimits(fork.cgroup, limits); !st.ok()) {
          return fail(st.message());
        }
      }
    } else {
      fork.cgroup = NextForkCgroupName();
      if (Status st = setup_.cgroups->Create(fork.cgroup, limits); !st.ok()) {
        fork.cgroup.clear();
        return fail(st.message());
      }
    }
  }
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    return fail(std::string("failed to create socketpair on fork: ") + strerror(errno));
  }
  fork.sock.reset(sv[0]);
  UniqueFd theirs(sv[1]);
  const int one = 1;
  // SAFETY: the kernel, not the sender, tells who wrote each message on our end (SO_PASSCRED):
  // the child's pid is never taken from what the template's code says.
  ::setsockopt(fork.sock.get(), SOL_SOCKET, SO_PASSCRED, &one, sizeof(one));
  std::string msg;
  AppendField(msg, "P");
  const int fd = theirs.get();
  if (SendWithFds(t.channel.get(), msg, &fd, 1) < 0) {
    return fail(std::string("failed to send fork request to template: ") + strerror(errno));
  }
  if (fork.id.empty()) t.forking = true;
  pending_forks_.push_back(std::move(fork));
}

void Spawner::Assign(pid_t pid, const std::string& id, const std::string& identity, int out,
                     int err, int channel) {
  Forked& f = forked_.at(pid);
  // SAFETY: fd hand-off: the child gets its log pipes and its own native channel, nothing else.
  const int fds[3] = {out, err, channel};
  if (SendWithFds(f.sock.get(), identity, fds, channel >= 0 ? 3 : 2) < 0) {
    const int e = errno;
    (void)::syscall(SYS_pidfd_send_signal, f.pidfd.get(), SIGKILL, nullptr, 0);
    return ReplyError(id, std::string("failed to start forked instance: ") + strerror(e));
  }
  f.sock.reset();
  f.assigned = true;
  auto t = live_.find(f.template_pid);
  std::string msg;
  AppendField(msg, id);
  AppendField(msg, "ok");
  AppendField(msg, std::to_string(pid));
  AppendField(msg, std::to_string(t != live_.end() ? t->second.uid : 0));
  AppendField(msg, f.cgroup);
  ToThaw(request_fd_, std::move(msg));
}

bool Spawner::SparesShort() const {
  for (const auto& [pid, t] : templates_) {
    if (t.ready_id.empty() && t.channel.valid() && t.refusal.empty() && t.spare == 0 &&
        !t.forking) {
      return true;
    }
  }
  return false;
}

void Spawner::RefillSpares() {
  std::vector<pid_t> short_of;
  for (const auto& [pid, t] : templates_) {
    if (t.ready_id.empty() && t.channel.valid() && t.refusal.empty() && t.spare == 0 &&
        !t.forking) {
      short_of.push_back(pid);
    }
  }
  for (pid_t pid : short_of) {
    PendingFork fork;
    fork.template_pid = pid;
    StartFork(std::move(fork), templates_.at(pid).limits);
  }
}

std::string Spawner::NextForkCgroupName() {
  // Named as shells are, so a spawner killed with -9 leaves none behind (OrphanedCgroups).
  return "shell-" + std::to_string(::getpid()) + "-fork" + std::to_string(++fork_cgroups_);
}

bool Spawner::ForkCgroupsShort() const {
  if (setup_.cgroups == nullptr || ready_cgroups_.size() >= setup_.ready_shells) return false;
  for (const auto& [pid, t] : templates_) {
    if (t.ready_id.empty() && t.channel.valid() && t.refusal.empty()) return true;
  }
  return false;
}

void Spawner::RefillForkCgroups() {
  for (size_t made = 0; made < kRefillBatch && ForkCgroupsShort(); ++made) {
    if (made > 0 && Readable(request_fd_)) return;  // the rest at the next idle turn
    ReadyCgroup c;
    c.name = NextForkCgroupName();
    c.limits = fork_limits_;
    if (Status st = setup_.cgroups->Create(c.name, c.limits); !st.ok()) {
      (void)setup_.cgroups->Remove(c.name);
      return;  // tried again at the next idle turn
    }
    auto procs = CgroupProcs::Open(*setup_.cgroups, c.name);
    if (!procs.ok()) {
      (void)setup_.cgroups->Remove(c.name);
      return;
    }
    c.procs = std::move(*procs);
    ready_cgroups_.push_back(std::move(c));
  }
}

bool Spawner::OnForkReadable(PendingFork& f) {
  char data[512];
  iovec iov{data, sizeof(data)};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred)) + CMSG_SPACE(sizeof(int) * kMaxFds)];
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control;
  mh.msg_controllen = sizeof(control);
  ssize_t n = ::recvmsg(f.sock.get(), &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return false;
  pid_t pid = 0;
  for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level != SOL_SOCKET) continue;
    if (c->cmsg_type == SCM_CREDENTIALS) {
      ucred cred;
      std::memcpy(&cred, CMSG_DATA(c), sizeof(cred));
      pid = cred.pid;
    } else if (c->cmsg_type == SCM_RIGHTS) {  // nothing is expected: closed
      const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        ::close(fd);
      }
    }
  }
  auto t = templates_.find(f.template_pid);
  if (t != templates_.end() && f.id.empty()) t->second.forking = false;
  auto fail = [&](const std::string& why) {
    if (!f.cgroup.empty()) {
      (void)setup_.cgroups->Kill(f.cgroup);
      if (!setup_.cgroups->Remove(f.cgroup).ok()) unremoved_.push_back(f.cgroup);
    }
    if (!f.id.empty()) ReplyError(f.id, why);
    return true;
  };
  if (n <= 0) return fail("failed to fork instance: its template ended before it forked");
  auto fields = SplitFields(data, static_cast<size_t>(n));
  if (fields.size() == 2 && fields[0] == "E") {
    // It holds threads: it never will fork (its init is over); every later fork is refused.
    if (t != templates_.end()) t->second.refusal = fields[1].substr(0, 512);
    return fail("template refused to fork: " + fields[1].substr(0, 512));
  }
  if (fields.size() != 2 || fields[0] != "H" || pid <= 0) {
    return fail("failed to fork instance: malformed answer from its template");
  }
  // Only the template's own child may become the instance.
  auto status = ReadFile("/proc/" + std::to_string(pid) + "/status");
  const size_t at = status.ok() ? status->find("\nPPid:\t") : std::string::npos;
  if (at == std::string::npos ||
      std::strtol(status->c_str() + at + 7, nullptr, 10) != f.template_pid) {
    return fail("failed to fork instance: the answer did not come from its template's child");
  }
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd.valid()) {
    return fail(std::string("failed to open pidfd on forked instance: ") + strerror(errno));
  }
  if (!f.cgroup.empty()) {
    if (Status st = f.procs.empty() ? setup_.cgroups->AddProcess(f.cgroup, pid) : f.procs.Add(pid);
        !st.ok()) {
      (void)::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
      return fail(st.message());
    }
  }
  const pid_t ns_pid = static_cast<pid_t>(std::strtol(fields[1].c_str(), nullptr, 10));
  Forked& child = forked_[pid];
  child.template_pid = f.template_pid;
  child.ns_pid = ns_pid;
  child.cgroup = f.cgroup;
  child.pidfd = std::move(pidfd);
  child.sock = std::move(f.sock);
  if (f.id.empty()) {
    if (t != templates_.end()) t->second.spare = pid;
  } else {
    Assign(pid, f.id, f.identity, f.out.get(), f.err.get(), f.channel.get());
  }
  return true;
}

void Spawner::OnTemplateReadable(pid_t template_pid) {
  auto found = templates_.find(template_pid);
  if (found == templates_.end()) return;  // reaped in this same turn
  Template& t = found->second;
  std::string buf;
  for (;;) {
    std::vector<int> fds;
    ssize_t n = RecvWithFds(t.channel.get(), buf, fds, 4096, MSG_DONTWAIT);
    for (int fd : fds) ::close(fd);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) {  // it closed its channel: no more forks; its exit is reaped as usual
      t.channel.reset();
      return;
    }
    auto fields = SplitFields(buf.data(), buf.size());
    if (fields.size() == 1 && fields[0] == "R" && !t.ready_id.empty()) {
      live_.at(template_pid).report = true;
      ReplyOk(t.ready_id, template_pid, UniqueFd());
      t.ready_id.clear();
    } else if (fields.size() == 3 && fields[0] == "X") {
      const pid_t ns_pid = static_cast<pid_t>(std::strtol(fields[1].c_str(), nullptr, 10));
      const int wait_status = static_cast<int>(std::strtol(fields[2].c_str(), nullptr, 10));
      for (const auto& [pid, f] : forked_) {
        if (f.template_pid == template_pid && f.ns_pid == ns_pid) {
          if (t.spare == pid) t.spare = 0;
          EndForked(pid, wait_status);
          break;
        }
      }
    }
  }
}

void Spawner::EndForked(pid_t pid, int wait_status) {
  auto it = forked_.find(pid);
  if (it == forked_.end()) return;
  ExitEvent ev{pid, wait_status, 0, 0, 0};
  const std::string& cgroup = it->second.cgroup;
  if (setup_.cgroups != nullptr && !cgroup.empty()) {
    if (auto u = setup_.cgroups->Usage(cgroup); u.ok()) {
      ev.cpu_us = u->cpu_us;
      ev.peak_memory_bytes = u->peak_memory_bytes;
      ev.oom_kills = u->oom_kills;
    }
    (void)setup_.cgroups->Kill(cgroup);
    if (!setup_.cgroups->Remove(cgroup).ok()) unremoved_.push_back(cgroup);
  }
  const bool report = it->second.assigned;  // a spare that ended is nobody's concern
  forked_.erase(it);
  if (report) SendExit(ev);
}

void Spawner::TemplateEnded(pid_t pid, int wait_status) {
  auto t = templates_.find(pid);
  if (t == templates_.end()) return;
  if (!t->second.ready_id.empty()) {
    ReplyError(t->second.ready_id,
               "template ended during its init: " + DescribeWaitStatus(wait_status));
  }
  templates_.erase(t);
  // Its PID namespace ended with it (or, unjailed, PDEATHSIG): so did every instance it forked.
  std::vector<pid_t> orphans;
  for (const auto& [child, f] : forked_) {
    if (f.template_pid == pid) orphans.push_back(child);
  }
  for (pid_t child : orphans) {
    (void)::syscall(SYS_pidfd_send_signal, forked_.at(child).pidfd.get(), SIGKILL, nullptr, 0);
    EndForked(child, SIGKILL);  // a wait status: killed by SIGKILL
  }
}

constexpr char kNetworkLayers[] =
    "network: none gets a network namespace of its own (loopback only, Runtime API inside it)";

// The cgroups a spawner that is gone left behind (thaw killed with -9: its spawner died by
// PDEATHSIG before it could remove them). Shell cgroups are named shell-<spawner pid>-<n>; a
// spawner is gone when no live process of that pid is a thaw-spawner (a zombie is gone: a
// killed spawner's parent died with it, and whoever inherits it may reap it late). Those of
// other live thaw servers are left alone.
std::vector<std::string> OrphanedCgroups(const Cgroups& cgroups) {
  std::vector<std::string> out;
  for (const std::string& name : cgroups.Names()) {
    if (!name.starts_with("shell-")) continue;
    const pid_t owner = static_cast<pid_t>(std::strtol(name.c_str() + 6, nullptr, 10));
    auto stat = ReadFile("/proc/" + std::to_string(owner) + "/stat");  // "pid (comm) S ..."
    if (owner <= 0 || !stat.ok() || stat->find("(thaw-spawner) ") == std::string::npos ||
        stat->find("(thaw-spawner) Z") != std::string::npos) {
      out.push_back(name);
    }
  }
  return out;
}

// Root: every layer, cgroups where the machine has them.
std::string SetUpJail(SpawnerSetup& setup, std::unique_ptr<Cgroups>& cgroups) {
  setup.mode = Isolation::kJail;
  // Kernels since 5.12 (open_tree, mount_setattr): shells enter their root before they wait
  // (SpawnerSetup::cut_trees). Probed on a copy of the host's root mount alone.
  setup.cut_trees = CutTree("/", true).ok();
  std::string tmp = "/tmp a tmpfs counted against memory_mb (no tmp_disk_dir)";
  if (!setup.tmp_disk_dir.empty()) {
    if (Status probe = ProbeTmpDisks(setup.tmp_disk_dir); probe.ok()) {
      tmp = "/tmp an ext4 disk of its own on a loop device (not counted against memory_mb)";
    } else {
      tmp = "/tmp a tmpfs counted against memory_mb (" + probe.message() + ")";
      setup.tmp_disk_dir.clear();
    }
  }
  std::string isolation =
      "jail (root): mount, PID, IPC and UTS namespaces; private root (bundle read-only at "
      "/var/task, " +
      tmp + "); a uid of its own; no_new_privs; seccomp";
  auto detected = Cgroups::Detect();
  if (detected.ok()) {
    cgroups = std::move(*detected);
    setup.cgroups = cgroups.get();
    isolation += "; " + cgroups->Describe() + " with memory, pids and CPU-weight limits";
  } else {
    isolation += "; no cgroups (" + detected.status().message() + "): memory_mb is not enforced";
  }
  return isolation +
         "; network: egress shares the host network, its Runtime API answering only its "
         "instance's uid; " +
         kNetworkLayers;
}

// Not root: user namespaces if the kernel allows them, else plain processes; rlimits for the
// limits cgroups would give.
std::string SetUpRootless(SpawnerSetup& setup) {
  const std::string uid = std::to_string(setup.host_uid);
  setup.mode = Isolation::kRootless;
  setup.tmp_disk_dir.clear();  // loop devices need root
  setup.rlimit_memory = true;
  Status probe = ProbeUserNamespaces(setup);
  if (probe.ok()) {
    setup.rlimit_pids = true;
    return "rootless (thaw is uid " + uid +
           ", not root): user namespaces: user, mount, PID, IPC and UTS namespaces; private "
           "root (bundle read-only at /var/task, /tmp a tmpfs: no loop devices without root); "
           "every instance runs as uid " +
           uid +
           "; no_new_privs; seccomp; no cgroups (not root): memory_mb is RLIMIT_DATA (private "
           "writable memory), pids_max is RLIMIT_NPROC per instance, no CPU weight; network: "
           "egress shares the host network, its Runtime API answering only sockets held by its "
           "instance's processes; " +
           kNetworkLayers;
  }
  setup.mode = Isolation::kPlain;
  return "none: thaw is not root and user namespaces are refused (" + probe.message() +
         "): instances are plain processes of uid " + uid +
         " in their own process groups; memory_mb is RLIMIT_DATA only; network: none cannot be "
         "enforced (such functions fail to start)";
}

}  // namespace

StatusOr<std::unique_ptr<SpawnerClient>> SpawnerClient::Start(const SpawnerOptions& options) {
  SpawnerSetup setup;
  setup.jail_root = options.jail_root;
  setup.runtimes_dir = options.runtimes_dir;
  setup.tmp_bytes = options.tmp_bytes;
  setup.ready_shells = static_cast<size_t>(std::max<int64_t>(0, options.ready_shells));
  setup.tmp_disk_dir = options.tmp_disk_dir;
  setup.host_uid = ::geteuid();
  setup.host_gid = ::getegid();
  std::unique_ptr<Cgroups> cgroups;
  std::string isolation;
  if (!options.sandbox) {
    isolation =
        "none: the sandbox is switched off (sandbox=false): instances are plain "
        "processes of uid " +
        std::to_string(setup.host_uid) +
        " in their own process groups; network: none cannot be enforced (such "
        "functions fail to start)";
  } else if (setup.host_uid == 0) {
    isolation = SetUpJail(setup, cgroups);
  } else {
    isolation = SetUpRootless(setup);
  }
  // Opened before the fork: the spawner keeps it (close-on-exec) for its shells to exec.
  UniqueFd shell_exe;
  if (setup.cut_trees && !options.shell_exe.empty()) {
    shell_exe.reset(::open(options.shell_exe.c_str(), O_PATH | O_CLOEXEC));
    setup.shell_exe = shell_exe.get();
  }
  std::optional<UidLease> lease;
  if (setup.mode == Isolation::kJail) {
    auto leased = LeaseInstanceUids(options.uid_lock_dir, options.instance_uids);
    if (!leased.ok()) return leased.status();
    lease = std::move(*leased);
  }
  int req[2], ex[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, req) != 0) {
    return ErrnoStatus("create socketpair", "spawner requests", errno);
  }
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ex) != 0) {
    return ErrnoStatus("create socketpair", "spawner exits", errno);
  }
  pid_t pid = ::fork();
  if (pid < 0) return ErrnoStatus("fork", "spawner", errno);
  if (pid == 0) {
    ::close(req[0]);
    ::close(ex[0]);
    std::optional<UidPool> uids;
    if (lease.has_value()) uids.emplace(lease->uids);
    Spawner spawner(setup, req[1], ex[1], std::move(uids));
    if (setup.cgroups != nullptr) spawner.RemoveWhenEmpty(OrphanedCgroups(*setup.cgroups));
    spawner.Run();
  }
  ::close(req[1]);
  ::close(ex[1]);
  std::unique_ptr<SpawnerClient> client(new SpawnerClient(req[0], ex[0], pid));
  client->mode_ = setup.mode;
  client->cgroups_ = std::move(cgroups);
  client->isolation_ = isolation;
  client->tmp_storage_ = setup.mode == Isolation::kPlain      ? "shared"
                         : setup.mode == Isolation::kRootless ? "host memory"
                         : setup.tmp_disk_dir.empty()         ? "memory"
                                                              : "disk";
  if (lease.has_value()) {
    client->instance_uids_ = lease->Describe();
    client->isolation_ += "; instance uids " + client->instance_uids_ + " (leased host-wide)";
  }
  // The spawner holds the leases' locks now (inherited); this process's copies close here.
  return client;
}

SpawnerClient::~SpawnerClient() {
  StopReplyThread();
  ::close(request_fd_);  // the spawner sees EOF, kills what is left and exits
  ::close(exit_fd_);
  ::waitpid(spawner_pid_, nullptr, 0);
}

void SpawnerClient::Spawn(const SpawnRequest& request, SpawnDone done) {
  std::string msg;
  AppendField(msg, std::string(1, kOpSpawn));
  const size_t id_at = msg.size();  // the id goes here once it is known
  AppendField(msg, request.cwd);
  AppendField(msg, std::to_string(request.argv.size()));
  AppendField(msg, std::to_string(request.env.size()));
  for (const auto& a : request.argv) AppendField(msg, a);
  for (const auto& e : request.env) AppendField(msg, e);
  AppendField(msg, request.bundle_dir);
  AppendField(msg, request.cgroup);
  AppendField(msg, std::to_string(request.limits.memory_bytes));
  AppendField(msg, std::to_string(request.limits.pids_max));
  AppendField(msg, std::to_string(request.limits.cpu_weight));
  AppendField(msg, "65534");  // the jailed uid: the spawner's to choose (uid_pool.h)
  AppendField(msg, request.private_network ? "1" : "0");
  AppendField(msg, JoinSpawnList(request.gpu_bind));
  AppendField(msg, JoinSpawnList(request.gpu_deny));
  std::vector<std::string> mount_src, mount_dst;
  for (const auto& [src, dst] : request.mounts) {
    mount_src.push_back(src);
    mount_dst.push_back(dst);
  }
  AppendField(msg, JoinSpawnList(mount_src));
  AppendField(msg, JoinSpawnList(mount_dst));
  AppendField(msg, request.template_channel ? "1" : "0");
  AppendField(msg, std::to_string(request.tmp_bytes));
  // A template has no native channel: its forks each get their own.
  const bool channel = request.channel_fd >= 0 && !request.template_channel;
  const int fds[3] = {request.stdout_fd, request.stderr_fd, request.channel_fd};
  Send(std::move(msg), id_at, fds, channel ? 3 : 2, std::move(done));
}

void SpawnerClient::Fork(const ForkRequest& request, SpawnDone done) {
  std::string msg;
  AppendField(msg, std::string(1, kOpFork));
  const size_t id_at = msg.size();
  AppendField(msg, std::to_string(request.template_pid));
  AppendField(msg, std::to_string(request.limits.memory_bytes));
  AppendField(msg, std::to_string(request.limits.pids_max));
  AppendField(msg, std::to_string(request.limits.cpu_weight));
  AppendField(msg, std::to_string(request.env.size()));
  for (const auto& e : request.env) AppendField(msg, e);
  const int fds[3] = {request.stdout_fd, request.stderr_fd, request.channel_fd};
  Send(std::move(msg), id_at, fds, request.channel_fd >= 0 ? 3 : 2, std::move(done));
}

void SpawnerClient::Send(std::string msg, size_t id_at, const int* fds, int nfds, SpawnDone done) {
  if (msg.size() + 32 > kMaxMessage) return done(InvalidArgument("spawn request too large"));
  Status failed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const uint64_t id = ++next_id_;
    std::string id_field;
    AppendField(id_field, std::to_string(id));
    msg.insert(id_at, id_field);
    // Registered before the send: the reply may be read before this thread runs again.
    pending_.emplace(id, std::move(done));
    if (SendWithFds(request_fd_, msg, fds, nfds) < 0) {
      failed = ErrnoStatus("send request", "spawner", errno);
      done = std::move(pending_.at(id));
      pending_.erase(id);
    }
  }
  if (!failed.ok()) done(std::move(failed));
}

void SpawnerClient::Kill(pid_t pid) {
  std::string msg;
  AppendField(msg, std::string(1, kOpKill));
  AppendField(msg, "0");
  AppendField(msg, std::to_string(pid));
  // A failed send means the spawner is gone, and its instances with it (PDEATHSIG).
  (void)!SendWithFds(request_fd_, msg, nullptr, 0);
}

bool SpawnerClient::OnReplies() {
  std::string buf;
  for (;;) {
    std::vector<int> fds;
    ssize_t n = RecvWithFds(request_fd_, buf, fds, kMaxReply, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
    if (n <= 0) {
      for (int fd : fds) ::close(fd);
      FailAllPending(Internal("spawner process is gone"));
      return false;
    }
    std::vector<UniqueFd> received;
    for (int fd : fds) received.emplace_back(fd);
    auto fields = SplitFields(buf.data(), buf.size());
    if (fields.size() < 3) continue;  // not a reply: the spawner never sends these
    SpawnDone done;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = pending_.find(std::strtoull(fields[0].c_str(), nullptr, 10));
      if (it == pending_.end()) continue;
      done = std::move(it->second);
      pending_.erase(it);
    }
    if (fields[1] != "ok" || fields.size() != 5) {
      done(Internal(fields[2]));
      continue;
    }
    Spawned spawned;
    spawned.pid = static_cast<pid_t>(std::strtol(fields[2].c_str(), nullptr, 10));
    spawned.uid = static_cast<uid_t>(std::strtoul(fields[3].c_str(), nullptr, 10));
    spawned.cgroup = fields[4];
    if (!received.empty()) spawned.runtime_api = std::move(received[0]);
    done(std::move(spawned));
  }
}

void SpawnerClient::StartReplyThread() {
  reply_thread_ = std::thread([this] {
    for (;;) {
      pollfd pfd{request_fd_, POLLIN, 0};
      if (::poll(&pfd, 1, -1) < 0 && errno != EINTR) break;
      if (!OnReplies()) break;
    }
  });
}

void SpawnerClient::StopReplyThread() {
  if (!reply_thread_.joinable()) return;
  // The thread reads EOF, fails what is waiting and ends; Kill can still send.
  ::shutdown(request_fd_, SHUT_RD);
  reply_thread_.join();
}

void SpawnerClient::FailAllPending(const Status& why) {
  std::map<uint64_t, SpawnDone> failed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    failed.swap(pending_);
  }
  for (auto& [_, done] : failed) done(why);
}

StatusOr<Spawned> SpawnerClient::SpawnAndWait(const SpawnRequest& request) {
  std::optional<StatusOr<Spawned>> result;
  Spawn(request, [&result](StatusOr<Spawned> r) { result.emplace(std::move(r)); });
  while (!result.has_value()) {
    pollfd pfd{request_fd_, POLLIN, 0};
    if (::poll(&pfd, 1, -1) < 0 && errno != EINTR) return ErrnoStatus("poll", "spawner", errno);
    if (!OnReplies() && !result.has_value()) return Internal("spawner process is gone");
  }
  return std::move(*result);
}

}  // namespace thaw::sandbox
