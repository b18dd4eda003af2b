// The floor of "one proxy hop to a function process": the least any server can do that answers
// an HTTP call by handing it to a separate process and relaying that process's answer, which is
// what thaw does for every warm call. No auth, no metering, no logs, no timeouts, no HTTP
// parsing beyond finding the end of a request: each of THREADS threads runs an epoll loop on
// its own SO_REUSEPORT listener and owns WORKERS worker processes, each on a socketpair
// (SOCK_SEQPACKET), that answer each event with a fixed body (hello-cpp's). A call is one read
// from the client, one write to a free worker (or a wait for one), one read of its answer and
// one write to the client. bench/hop_floor.sh runs it beside nginx `return 200` and thaw.
//   hop_floor PORT [THREADS] [WORKERS per thread]
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

enum { kMaxConns = 4096, kMaxWorkers = 64, kBuf = 8192 };

static const char kBody[] = "{\"message\":\"hello, bench\"}";

typedef struct {
  int fd;
  char buf[kBuf];
  size_t len;
  int waiting;  // has a whole request not yet handed to a worker
} Conn;

typedef struct {
  int fd;
  int conn;  // the connection whose event it holds, or -1 when free
} Worker;

typedef struct {
  int port;
  int workers;
  int epoll;
  int listener;
  Worker worker[kMaxWorkers];
  int queue[kMaxConns];  // connections waiting for a worker (a ring)
  int q_head, q_len;
  Conn* conns[kMaxConns];
} Loop;

static void Die(const char* what) {
  perror(what);
  exit(1);
}

// A worker: one event in, one answer out, forever (the function process).
static void WorkerMain(int fd) {
  char in[kBuf];
  for (;;) {
    ssize_t n = read(fd, in, sizeof(in));
    if (n <= 0) _exit(0);
    if (write(fd, kBody, sizeof(kBody) - 1) < 0) _exit(1);
  }
}

// The end of a whole request in `c` (headers and Content-Length bytes of body), or 0.
static size_t RequestEnd(const Conn* c) {
  const char* head_end = memmem(c->buf, c->len, "\r\n\r\n", 4);
  if (head_end == NULL) return 0;
  size_t head = (size_t)(head_end - c->buf) + 4;
  size_t body = 0;
  const char* cl = memmem(c->buf, head, "Content-Length:", 15);
  if (cl != NULL) body = strtoul(cl + 15, NULL, 10);
  return c->len >= head + body ? head + body : 0;
}

static void Dispatch(Loop* l, int conn, Worker* w) {
  Conn* c = l->conns[conn];
  size_t end = RequestEnd(c);
  // The event: the request's body (its bytes after the head), as a runtime would get it.
  const char* head_end = memmem(c->buf, end, "\r\n\r\n", 4);
  const char* body = head_end + 4;
  if (write(w->fd, body, (size_t)(c->buf + end - body)) < 0) Die("write worker");
  memmove(c->buf, c->buf + end, c->len - end);
  c->len -= end;
  c->waiting = 0;
  w->conn = conn;
}

static Worker* FreeWorker(Loop* l) {
  for (int i = 0; i < l->workers; ++i) {
    if (l->worker[i].conn < 0) return &l->worker[i];
  }
  return NULL;
}

// Hands `conn`'s whole request to a free worker, or queues it for the next one free.
static void Schedule(Loop* l, int conn) {
  l->conns[conn]->waiting = 1;
  Worker* w = FreeWorker(l);
  if (w != NULL) {
    Dispatch(l, conn, w);
  } else {
    l->queue[(l->q_head + l->q_len++) % kMaxConns] = conn;
  }
}

static void OnClient(Loop* l, int fd) {
  Conn* c = l->conns[fd];
  ssize_t n = read(fd, c->buf + c->len, kBuf - c->len);
  if (n <= 0) {
    if (n < 0 && errno == EAGAIN) return;
    close(fd);
    free(c);
    l->conns[fd] = NULL;  // a queued entry for it is skipped when it comes up
    return;
  }
  c->len += (size_t)n;
  if (c->waiting || RequestEnd(c) == 0) return;
  Schedule(l, fd);
}

static void OnWorker(Loop* l, Worker* w) {
  char out[kBuf];
  ssize_t n = read(w->fd, out, sizeof(out));
  if (n <= 0) Die("read worker");
  int conn = w->conn;
  w->conn = -1;
  if (l->conns[conn] != NULL) {
    char resp[kBuf];
    int head = snprintf(resp, sizeof(resp),
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        "Content-Length: %zd\r\n\r\n",
                        n);
    memcpy(resp + head, out, (size_t)n);
    if (write(conn, resp, (size_t)head + (size_t)n) < 0) { /* the client went away */
    }
  }
  while (l->q_len > 0) {
    int next = l->queue[l->q_head];
    l->q_head = (l->q_head + 1) % kMaxConns;
    --l->q_len;
    if (l->conns[next] != NULL && l->conns[next]->waiting) {
      Dispatch(l, next, w);
      break;
    }
  }
  // A pipelined request already read from the answered connection.
  Conn* c = l->conns[conn];
  if (c != NULL && !c->waiting && RequestEnd(c) > 0) Schedule(l, conn);
}

static void* Run(void* arg) {
  Loop* l = arg;
  struct epoll_event events[256];
  for (;;) {
    int n = epoll_wait(l->epoll, events, 256, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) Die("epoll_wait");
    for (int i = 0; i < n; ++i) {
      uint64_t tag = events[i].data.u64;
      if (tag == (uint64_t)-1) {
        int fd = accept4(l->listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) continue;
        if (fd >= kMaxConns) {
          close(fd);
          continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        l->conns[fd] = calloc(1, sizeof(Conn));
        l->conns[fd]->fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)fd};
        epoll_ctl(l->epoll, EPOLL_CTL_ADD, fd, &ev);
      } else if (tag >= (1ull << 32)) {
        OnWorker(l, &l->worker[tag - (1ull << 32)]);
      } else {
        OnClient(l, (int)tag);
      }
    }
  }
  return NULL;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s PORT [THREADS] [WORKERS]\n", argv[0]);
    return 2;
  }
  const int port = atoi(argv[1]);
  const int threads = argc > 2 ? atoi(argv[2]) : 2;
  const int workers = argc > 3 ? atoi(argv[3]) : 4;
  if (threads < 1 || workers < 1 || workers > kMaxWorkers) {
    fprintf(stderr, "bad THREADS or WORKERS\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  Loop* loops = calloc((size_t)threads, sizeof(Loop));
  // Workers first, from a single-threaded process.
  for (int t = 0; t < threads; ++t) {
    loops[t].workers = workers;
    for (int w = 0; w < workers; ++w) {
      int sv[2];
      if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) Die("socketpair");
      pid_t pid = fork();
      if (pid < 0) Die("fork");
      if (pid == 0) {
        close(sv[0]);
        // Only its own end: the server's ends of the other workers stay with the server, so
        // each worker sees EOF when the server goes.
        for (int u = 0; u <= t; ++u) {
          for (int v = 0; v < (u == t ? w : workers); ++v) close(loops[u].worker[v].fd);
        }
        WorkerMain(sv[1]);
      }
      close(sv[1]);
      loops[t].worker[w].fd = sv[0];
      loops[t].worker[w].conn = -1;
    }
  }
  pthread_t ids[64];
  for (int t = 0; t < threads && t < 64; ++t) {
    Loop* l = &loops[t];
    l->epoll = epoll_create1(EPOLL_CLOEXEC);
    l->listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(l->listener, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    setsockopt(l->listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(l->listener, (struct sockaddr*)&addr, sizeof(addr)) != 0) Die("bind");
    if (listen(l->listener, 1024) != 0) Die("listen");
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)-1};
    epoll_ctl(l->epoll, EPOLL_CTL_ADD, l->listener, &ev);
    for (int w = 0; w < workers; ++w) {
      struct epoll_event wev = {.events = EPOLLIN, .data.u64 = (1ull << 32) + (uint64_t)w};
      epoll_ctl(l->epoll, EPOLL_CTL_ADD, l->worker[w].fd, &wev);
    }
    pthread_create(&ids[t], NULL, Run, l);
  }
  fprintf(stderr, "listening on 127.0.0.1:%d\n", port);
  for (int t = 0; t < threads && t < 64; ++t) pthread_join(ids[t], NULL);
  return 0;
}
