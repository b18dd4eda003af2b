#include "runtime_api/runtime_server.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string_view>
#include <vector>

#include "common/base64.h"
#include "gateway/http_server.h"
#include "pool/response_sink.h"
#include "runtime_api/runtime_channel.h"

namespace thaw::runtime_api {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using gateway::Request;
using gateway::Response;

constexpr std::string_view kPrefix = "/2018-06-01/runtime/";
constexpr std::string_view kResponseMode = "Lambda-Runtime-Function-Response-Mode";
constexpr std::string_view kErrorType = "Lambda-Runtime-Function-Error-Type";
constexpr std::string_view kErrorBody = "Lambda-Runtime-Function-Error-Body";

// The request id of a POST .../invocation/{id}/response; empty for any other request.
std::string ResponseRequestId(const http::request_header<>& header) {
  std::string_view target = header.target();
  constexpr std::string_view kInvocation = "invocation/";
  constexpr std::string_view kResponse = "/response";
  if (header.method() != http::verb::post || !target.starts_with(kPrefix)) return "";
  target.remove_prefix(kPrefix.size());
  if (!target.starts_with(kInvocation) || !target.ends_with(kResponse)) return "";
  target.remove_prefix(kInvocation.size());
  target.remove_suffix(kResponse.size());
  return std::string(target);
}

bool IsStreamed(const http::request_header<>& header) {
  return boost::beast::iequals(header[kResponseMode], "streaming");
}

// A streamed response's error trailers: the type, and the body (base64, as Lambda's runtimes
// send it; taken as is when it is not).
std::pair<std::string, std::string> TrailerError(const http::request_header<>& header) {
  std::string type(header[kErrorType]);
  std::string_view encoded = header[kErrorBody];
  auto decoded = Base64Decode(encoded);
  return {std::move(type), decoded ? std::move(*decoded) : std::string(encoded)};
}

void JsonError(Response& res, http::status status, const std::string& type,
               const std::string& message) {
  res.result(status);
  res.set(http::field::content_type, "application/json");
  res.body() =
      boost::json::serialize(boost::json::object{{"errorType", type}, {"errorMessage", message}});
}

// A GET /next the runtime pipelined behind its answer (the C++ runtime writes both at once),
// asked of the pool together with that answer (RespondAndNext: on the lane, no pool mutex):
// the event it is handed waits here until the GET is read. Touched on the endpoint's shard
// thread only: the connection runs there, and the pool's handler is dispatched there.
struct PipelinedNext {
  void Deliver(pool::InvocationPtr inv) {
    if (waiter.has_value()) {
      auto h = std::move(*waiter);
      waiter.reset();
      std::move(h)(std::move(inv));
      return;
    }
    ready = true;
    event = std::move(inv);
  }
  bool ready = false;  // handed over (`event`; nullptr: the instance is stopping)
  pool::InvocationPtr event;
  // The GET, read before the event came. The pool's handler owns this object, and the GET's
  // coroutine holds no reference: nothing keeps a parked GET alive but the pool.
  std::optional<asio::any_completion_handler<void(pool::InvocationPtr)>> waiter;
};

// Parks a GET /next on `p` until the pool hands it its event. Holds a plain pointer: gcc 12
// may destroy an initiation's copies twice inside a co_await.
struct ParkOn {
  PipelinedNext* p;
  template <typename Handler>
  void operator()(Handler&& handler) const {
    p->waiter.emplace(std::forward<Handler>(handler));
  }
};

// Whether `bytes` (what the runtime sent past its answer) begin with a whole GET /next head.
bool StartsWithNext(std::string_view bytes) {
  constexpr std::string_view kNext = "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n";
  return bytes.starts_with(kNext) && bytes.find("\r\n\r\n", kNext.size() - 2) != bytes.npos;
}

// A shard is run by one thread: its connections need no strand, and the event the pool hands
// over on that thread resumes the runtime's GET /next inline.
gateway::HttpOptions OneThread() {
  gateway::HttpOptions o;
  o.strand_per_connection = false;
  return o;
}

}  // namespace

// One instance's Runtime API: its listener and the routes, bound to the instance.
struct RuntimeServer::Endpoint final : gateway::HttpHandler {
  Endpoint(asio::io_context& ioc, std::shared_ptr<pool::FunctionPool> p, uint64_t id,
           int64_t max_body, int64_t max_stream)
      : strand(asio::make_strand(ioc)),
        acceptor(strand),
        ioc(ioc),
        pool(std::move(p)),
        instance_id(id),
        max_response_bytes(max_body),
        max_stream_bytes(max_stream) {}

  uint64_t BodyLimit(const http::request_header<>& header) const override {
    return static_cast<uint64_t>(IsStreamed(header) ? max_stream_bytes : max_response_bytes);
  }

  bool StreamsBody(const http::request_header<>& header) const override {
    return IsStreamed(header) && !ResponseRequestId(header).empty();
  }

  // A streamed response: each piece goes to the caller as it arrives. The sink's buffer is
  // bounded, so a slow caller slows the runtime down; a caller that went away ends the call
  // (metered) and the runtime's connection, so the instance is free for the next event.
  asio::awaitable<void> ServeBody(const gateway::Peer&, gateway::BodyReader& body,
                                  Response& res) override {
    const std::string id = ResponseRequestId(body.header());
    std::string content_type(body.header()[http::field::content_type]);
    auto sink = pool->StreamBegin(instance_id, id, std::move(content_type));
    if (!sink.ok())
      co_return JsonError(res, http::status::bad_request, "InvalidRequestID",
                          sink.status().message());
    bool caller_gone = false;
    for (;;) {
      std::string piece = co_await body.Read();
      if (piece.empty()) break;
      if (!co_await (*sink)->Write(std::move(piece), asio::use_awaitable)) {
        caller_gone = (*sink)->cancelled();
        break;
      }
    }
    std::string error_type, error_body;
    bool answered = true;
    if (caller_gone) {
      error_type = "Client.Disconnected";
      error_body = R"({"errorType":"Client.Disconnected",)"
                   R"("errorMessage":"the caller closed its connection mid-stream"})";
      JsonError(res, http::status::gone, "ClientDisconnected",
                "the caller closed its connection: the invocation is over");
    } else if (body.error() == http::error::body_limit) {
      const std::string message = "Response payload size exceeded maximum allowed payload size (" +
                                  std::to_string(max_stream_bytes) + " bytes).";
      error_type = "Function.ResponseSizeTooLarge";
      error_body = boost::json::serialize(
          boost::json::object{{"errorMessage", message}, {"errorType", error_type}});
      JsonError(res, http::status::payload_too_large, "RequestEntityTooLarge", message);
    } else if (body.error()) {
      error_type = "Runtime.TruncatedResponse";
      error_body = boost::json::serialize(boost::json::object{
          {"errorMessage", "the runtime's streamed response ended before its last chunk: " +
                               body.error().message()},
          {"errorType", error_type}});
      JsonError(res, http::status::bad_request, "InvalidRequest",
                "the streamed body was cut short");
    } else {
      std::tie(error_type, error_body) = TrailerError(body.header());
      answered = false;
    }
    Status st = pool->StreamEnd(instance_id, id, std::move(error_body), std::move(error_type));
    if (answered) co_return;
    if (!st.ok()) {
      co_return JsonError(res, http::status::bad_request, "InvalidRequestID", st.message());
    }
    Accepted(res);
  }

  static void Accepted(Response& res) {
    res.result(http::status::accepted);
    res.set(http::field::content_type, "application/json");
    res.body() = R"({"status":"OK"})";
  }

  void Reject(http::status status, const std::string& why, Response& res) const override {
    JsonError(
        res, status,
        status == http::status::payload_too_large ? "RequestEntityTooLarge" : "InvalidRequest",
        why);
  }

  // A response over the limit: the runtime gets 413, and the caller, at once, the error Lambda
  // gives (not a wait for the deadline).
  void OnBodyTooLarge(const http::request_header<>& header, uint64_t limit) const override {
    const std::string id = ResponseRequestId(header);
    if (id.empty()) return;
    const std::string message = "Response payload size exceeded maximum allowed payload size (" +
                                std::to_string(limit) + " bytes).";
    (void)pool->ReportError(
        instance_id, id,
        boost::json::serialize(boost::json::object{{"errorMessage", message},
                                                   {"errorType", "Function.ResponseSizeTooLarge"}}),
        "Function.ResponseSizeTooLarge");
  }

  // Only the instance's own processes may talk to its Runtime API: instances that share the
  // host network could otherwise connect here and take this instance's events.
  bool Admit(const asio::ip::tcp::socket& socket) const override {
    if (check.kind == pool::PeerCheck::Kind::kAnyone) return true;
    boost::system::error_code ec;
    auto local = socket.local_endpoint(ec);
    auto remote = ec ? local : socket.remote_endpoint(ec);
    if (ec) return false;
    auto peer = FindLoopbackPeer(local.port(), remote.port());
    if (!peer.has_value()) return false;
    const pid_t root = AwaitPeer();
    if (root <= 0) return false;
    if (check.kind == pool::PeerCheck::Kind::kUid) return peer->uid == peer_uid;
    return ProcessTreeHoldsSocket(root, peer->inode);
  }

  // The runtime may connect before the spawn reply has told us its pid and uid: that takes
  // microseconds, exec and a runtime's start far longer, so this wait is almost never taken,
  // and is bounded when it is.
  pid_t AwaitPeer() const {
    std::unique_lock<std::mutex> lock(peer_mu);
    peer_cv.wait_for(lock, std::chrono::seconds(5), [&] { return peer_root != 0; });
    return peer_root;
  }

  // Drain: `done` runs once the accept loop and every connection it served have ended.
  void OnDrained(std::function<void()> done) {
    {
      std::lock_guard<std::mutex> lock(drain_mu);
      if (!drained) {
        on_drained = std::move(done);
        return;
      }
    }
    done();
  }

  void Drained() {
    std::function<void()> done;
    {
      std::lock_guard<std::mutex> lock(drain_mu);
      drained = true;
      done = std::move(on_drained);
    }
    if (done) done();
  }

  // Refuses a connection still waiting for its peer: the instance will never have one. A
  // peer already known stays, so what a dead instance sent can still be read.
  void RefuseUnknownPeer() {
    {
      std::lock_guard<std::mutex> lock(peer_mu);
      if (peer_root == 0) peer_root = -1;
    }
    peer_cv.notify_all();
  }

  void SetPeer(pid_t pid, uid_t uid) {
    {
      std::lock_guard<std::mutex> lock(peer_mu);
      peer_root = pid;
      peer_uid = uid;
    }
    peer_cv.notify_all();
  }

  asio::awaitable<void> Handle(Request& req, Response& res) override {
    const gateway::Peer none;  // outlives the call: Serve starts lazily
    co_await Serve(none, req, res);
  }

  asio::awaitable<void> Serve(const gateway::Peer& peer, Request& req, Response& res) override {
    std::string_view target = req.target();
    if (!target.starts_with(kPrefix)) {
      JsonError(res, http::status::not_found, "NotFound", "unknown path");
      co_return;
    }
    std::string_view route = target.substr(kPrefix.size());
    if (route == "invocation/next" && req.method() == http::verb::get) {
      // (No co_await inside a conditional expression, nor a temporary that owns something in
      // one: gcc 12 destroys such temporaries twice.)
      pool::InvocationPtr inv;
      PipelinedNext* parked = nullptr;
      const bool pipelined = peer.handler_state != nullptr;
      if (pipelined) {
        auto pending = std::static_pointer_cast<PipelinedNext>(peer.handler_state);
        peer.handler_state.reset();
        if (pending->ready) {
          inv = std::move(pending->event);
        } else {
          parked = pending.get();  // the pool's handler owns it, and so the parked GET
        }
      }
      if (parked != nullptr) {
        inv =
            co_await asio::async_initiate<decltype(asio::use_awaitable), void(pool::InvocationPtr)>(
                ParkOn{parked}, asio::use_awaitable);
      } else if (!pipelined) {
        inv = co_await pool->Next(instance_id, asio::use_awaitable);
      }
      if (!inv) {  // the instance is being stopped
        JsonError(res, http::status::gone, "InstanceStopping", "this instance is stopping");
        res.keep_alive(false);
        co_return;
      }
      res.result(http::status::ok);
      res.set(http::field::content_type, "application/json");
      res.set("Lambda-Runtime-Aws-Request-Id", inv->id);
      res.set("Lambda-Runtime-Deadline-Ms", std::to_string(inv->deadline_wall_ms));
      res.set("Lambda-Runtime-Invoked-Function-Arn",
              inv->qualifier.empty() ? invoked_arn : invoked_arn + ":" + inv->qualifier);
      res.set("Lambda-Runtime-Trace-Id", inv->trace_id);
      if (!inv->client_context.empty()) {
        res.set("Lambda-Runtime-Client-Context", inv->client_context);
      }
      if (!inv->cognito_identity.empty()) {
        res.set("Lambda-Runtime-Cognito-Identity", inv->cognito_identity);
      }
      // The event is delivered exactly once; the invocation no longer needs its copy.
      res.body() = std::move(inv->payload);
      co_return;
    }
    if (route == "init/error" && req.method() == http::verb::post) {
      pool->ReportInitError(instance_id, std::move(req.body()),
                            std::string(req["Lambda-Runtime-Function-Error-Type"]));
      res.result(http::status::accepted);
      res.set(http::field::content_type, "application/json");
      res.body() = R"({"status":"OK"})";
      co_return;
    }
    constexpr std::string_view kInvocation = "invocation/";
    if (route.starts_with(kInvocation) && req.method() == http::verb::post) {
      std::string_view rest = route.substr(kInvocation.size());
      auto slash = rest.find('/');
      if (slash != std::string_view::npos) {
        std::string id(rest.substr(0, slash));
        std::string_view verb = rest.substr(slash + 1);
        Status st = Status::Ok();
        if (verb == "response" && IsStreamed(req)) {
          // Streamed, but the whole body came with the headers (or there was none).
          auto sink =
              pool->StreamBegin(instance_id, id, std::string(req[http::field::content_type]));
          st = sink.status();
          if (st.ok() && !req.body().empty()) {
            (void)co_await (*sink)->Write(std::move(req.body()), asio::use_awaitable);
          }
          if (st.ok()) {
            auto [type, body] = TrailerError(req);
            st = pool->StreamEnd(instance_id, id, std::move(body), std::move(type));
          }
        } else if (verb == "response" && peer.handler_state == nullptr &&
                   StartsWithNext(peer.pipelined)) {
          // Its GET /next is here already: the answer and the ask in one go.
          auto pending = std::make_shared<PipelinedNext>();
          peer.handler_state = pending;
          st = pool->RespondAndNext(
              instance_id, id, std::move(req.body()),
              pool::NextHandler(
                  [pending](pool::InvocationPtr inv) { pending->Deliver(std::move(inv)); },
                  ioc.get_executor()));
        } else if (verb == "response") {
          st = pool->Respond(instance_id, id, std::move(req.body()));
        } else if (verb == "error") {
          st = pool->ReportError(instance_id, id, std::move(req.body()),
                                 std::string(req["Lambda-Runtime-Function-Error-Type"]));
        } else {
          JsonError(res, http::status::not_found, "NotFound", "unknown path");
          co_return;
        }
        if (!st.ok()) {
          JsonError(res, http::status::bad_request, "InvalidRequestID", st.message());
          co_return;
        }
        res.result(http::status::accepted);
        res.set(http::field::content_type, "application/json");
        res.body() = R"({"status":"OK"})";
        co_return;
      }
    }
    JsonError(res, http::status::not_found, "NotFound", "unknown path or method");
  }

  asio::strand<asio::io_context::executor_type> strand;
  asio::ip::tcp::acceptor acceptor;
  asio::io_context& ioc;  // its shard's: its connections and its native channel run there
  std::shared_ptr<pool::FunctionPool> pool;
  const uint64_t instance_id;
  const int64_t max_response_bytes;
  const int64_t max_stream_bytes;
  std::string invoked_arn;
  pool::PeerCheck check;  // set before the accept loop starts
  mutable std::mutex peer_mu;
  mutable std::condition_variable peer_cv;
  pid_t peer_root = 0;  // the instance's first process (0: not yet; < 0: none will come)
  uid_t peer_uid = 0;   // kUid: the uid the spawner gave it
  std::mutex drain_mu;
  bool drained = false;              // guarded by drain_mu
  std::function<void()> on_drained;  // guarded by drain_mu
};

// The accept loop's keep-alive, copied into each connection it serves: when the last copy
// goes, the endpoint has nothing left to read (RuntimeServer::Drain).
struct SessionsToken {
  explicit SessionsToken(std::shared_ptr<RuntimeServer::Endpoint> e) : ep(std::move(e)) {}
  ~SessionsToken() { ep->Drained(); }
  std::shared_ptr<RuntimeServer::Endpoint> ep;
};

namespace {

// Waits for `left` parts to end, or the deadline, then calls `done` once.
struct DrainWait {
  DrainWait(std::function<void()> d, int parts) : done(std::move(d)), left(parts) {}
  void One() {
    if (left.fetch_sub(1) == 1) All();
  }
  void All() {
    if (!fired.exchange(true)) done();
  }
  std::function<void()> done;
  std::atomic<int> left;
  std::atomic<bool> fired{false};
};

// Lets the accept loop take every connection waiting in the backlog (it shares the strand),
// then closes the listener, which ends the loop.
asio::awaitable<void> AcceptBacklog(std::shared_ptr<RuntimeServer::Endpoint> ep) {
  for (int turns = 0; turns < 1000 && ep->acceptor.is_open(); ++turns) {
    pollfd pending{ep->acceptor.native_handle(), POLLIN, 0};
    if (::poll(&pending, 1, 0) <= 0) break;
    asio::steady_timer wait(ep->strand, std::chrono::milliseconds(1));
    co_await wait.async_wait(asio::use_awaitable);
  }
  boost::system::error_code ec;
  ep->acceptor.close(ec);
}

}  // namespace

RuntimeServer::~RuntimeServer() { CloseAll(); }

std::optional<LoopbackPeer> FindLoopbackPeer(uint16_t local_port, uint16_t peer_port) {
  // One exact sock_diag lookup of the peer's socket (loopback:peer_port -> loopback:local_port):
  // constant time, unlike scanning /proc/net/tcp, which grows with every TIME_WAIT socket.
  int fd = ::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) return std::nullopt;
  struct {
    nlmsghdr nlh;
    inet_diag_req_v2 req;
  } msg{};
  msg.nlh.nlmsg_len = sizeof(msg);
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST;
  msg.req.sdiag_family = AF_INET;
  msg.req.sdiag_protocol = IPPROTO_TCP;
  msg.req.idiag_states = ~0U;
  msg.req.id.idiag_sport = htons(peer_port);
  msg.req.id.idiag_dport = htons(local_port);
  msg.req.id.idiag_src[0] = htonl(INADDR_LOOPBACK);
  msg.req.id.idiag_dst[0] = htonl(INADDR_LOOPBACK);
  msg.req.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
  msg.req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
  std::optional<LoopbackPeer> found;
  alignas(nlmsghdr) char buf[8192];
  if (::send(fd, &msg, sizeof(msg), 0) == static_cast<ssize_t>(sizeof(msg))) {
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    auto* h = reinterpret_cast<nlmsghdr*>(buf);
    if (n > 0 && NLMSG_OK(h, static_cast<unsigned>(n)) && h->nlmsg_type == SOCK_DIAG_BY_FAMILY) {
      const auto* diag = static_cast<inet_diag_msg*>(NLMSG_DATA(h));
      found = LoopbackPeer{static_cast<uid_t>(diag->idiag_uid), diag->idiag_inode};
    }
  }
  ::close(fd);
  return found;
}

namespace {

// The pids listed in /proc/PID/task/*/children: the children of every thread of `pid`.
std::vector<pid_t> ChildrenOf(pid_t pid) {
  std::vector<pid_t> out;
  const std::string task_dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* tasks = ::opendir(task_dir.c_str());
  if (tasks == nullptr) return out;
  while (dirent* task = ::readdir(tasks)) {
    if (task->d_name[0] == '.') continue;
    std::FILE* f = std::fopen((task_dir + "/" + task->d_name + "/children").c_str(), "re");
    if (f == nullptr) continue;
    int child;
    while (std::fscanf(f, "%d", &child) == 1) out.push_back(child);
    std::fclose(f);
  }
  ::closedir(tasks);
  return out;
}

bool ProcessHoldsSocket(pid_t pid, const std::string& link) {
  const std::string fd_dir = "/proc/" + std::to_string(pid) + "/fd";
  DIR* fds = ::opendir(fd_dir.c_str());
  if (fds == nullptr) return false;
  bool found = false;
  char target[64];
  while (dirent* fd = ::readdir(fds)) {
    if (fd->d_name[0] == '.') continue;
    ssize_t n = ::readlinkat(::dirfd(fds), fd->d_name, target, sizeof(target));
    if (n == static_cast<ssize_t>(link.size()) && link.compare(0, link.size(), target, n) == 0) {
      found = true;
      break;
    }
  }
  ::closedir(fds);
  return found;
}

}  // namespace

bool ProcessTreeHoldsSocket(pid_t root, uint64_t inode) {
  // An instance is a handful of processes; the bound only keeps a fork bomb from making this
  // check expensive (its connections are then refused, which is its own loss).
  constexpr size_t kMaxProcesses = 4096;
  const std::string link = "socket:[" + std::to_string(inode) + "]";
  std::vector<pid_t> todo = {root};
  for (size_t i = 0; i < todo.size() && i < kMaxProcesses; ++i) {
    if (ProcessHoldsSocket(todo[i], link)) return true;
    for (pid_t child : ChildrenOf(todo[i])) todo.push_back(child);
  }
  return false;
}

asio::io_context& RuntimeServer::ShardFor(int shard) {
  if (shard >= 0 && static_cast<size_t>(shard) < shards_.size()) return *shards_[shard];
  return *shards_[next_shard_.fetch_add(1, std::memory_order_relaxed) % shards_.size()];
}

StatusOr<std::string> RuntimeServer::Open(std::shared_ptr<pool::FunctionPool> pool,
                                          uint64_t instance_id, pool::PeerCheck check, int shard) {
  auto ep = std::make_shared<Endpoint>(ShardFor(shard), pool, instance_id, max_response_bytes_,
                                       max_stream_bytes_);
  ep->check = check;
  ep->invoked_arn = pool->arn();
  boost::system::error_code ec;
  asio::ip::tcp::endpoint where(asio::ip::address_v4::loopback(), 0);
  ep->acceptor.open(where.protocol(), ec);
  if (!ec) ep->acceptor.bind(where, ec);
  if (!ec) ep->acceptor.listen(64, ec);
  if (ec) return Internal("failed to listen on the Runtime API address: " + ec.message());
  std::string address = "127.0.0.1:" + std::to_string(ep->acceptor.local_endpoint().port());
  {
    std::lock_guard<std::mutex> lock(mu_);
    endpoints_[address] = ep;
  }
  asio::co_spawn(ep->strand,
                 gateway::AcceptLoop(ep->acceptor, ep->ioc.get_executor(), *ep,
                                     std::make_shared<SessionsToken>(ep), OneThread()),
                 asio::detached);
  return address;
}

void RuntimeServer::SetPeer(const std::string& address, pid_t pid, uid_t uid) {
  std::shared_ptr<Endpoint> ep;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = endpoints_.find(address);
    if (it == endpoints_.end()) return;
    ep = it->second;
  }
  ep->SetPeer(pid, uid);
}

StatusOr<std::string> RuntimeServer::Adopt(std::shared_ptr<pool::FunctionPool> pool,
                                           uint64_t instance_id, UniqueFd listener, int shard) {
  if (!listener.valid()) return Internal("failed to serve the Runtime API: no listener");
  auto ep = std::make_shared<Endpoint>(ShardFor(shard), pool, instance_id, max_response_bytes_,
                                       max_stream_bytes_);
  ep->invoked_arn = pool->arn();
  boost::system::error_code ec;
  ep->acceptor.assign(asio::ip::tcp::v4(), listener.get(), ec);
  if (ec) return Internal("failed to serve the Runtime API listener: " + ec.message());
  listener.release();  // the acceptor owns it now
  std::string key;
  {
    std::lock_guard<std::mutex> lock(mu_);
    key = "private-" + std::to_string(++adopted_);
    endpoints_[key] = ep;
  }
  asio::co_spawn(ep->strand,
                 gateway::AcceptLoop(ep->acceptor, ep->ioc.get_executor(), *ep,
                                     std::make_shared<SessionsToken>(ep), OneThread()),
                 asio::detached);
  return key;
}

Status RuntimeServer::AttachChannel(const std::string& key,
                                    std::shared_ptr<pool::FunctionPool> pool, uint64_t instance_id,
                                    UniqueFd channel) {
  std::shared_ptr<RuntimeChannel> ch;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto ep = endpoints_.find(key);
    if (ep == endpoints_.end()) return Unavailable("the instance is stopping");
    // Beside its endpoint, on the same shard, until its calls come from another.
    const auto home = std::find(shards_.begin(), shards_.end(), &ep->second->ioc);
    ch = std::make_shared<RuntimeChannel>(
        shards_, home == shards_.end() ? -1 : static_cast<int>(home - shards_.begin()),
        std::move(pool), instance_id, max_response_bytes_, std::move(channel));
    channels_[key] = ch;
  }
  ch->Start();
  return Status::Ok();
}

void RuntimeServer::Close(const std::string& key) {
  std::shared_ptr<Endpoint> ep;
  std::shared_ptr<RuntimeChannel> ch;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto c = channels_.find(key); c != channels_.end()) {
      ch = std::move(c->second);
      channels_.erase(c);
    }
    auto it = endpoints_.find(key);
    if (it == endpoints_.end()) return;
    ep = std::move(it->second);
    endpoints_.erase(it);
  }
  if (ch != nullptr) ch->Close();
  ep->RefuseUnknownPeer();
  // The acceptor belongs to the endpoint's strand: close it there.
  asio::post(ep->strand, [ep] {
    boost::system::error_code ec;
    ep->acceptor.close(ec);
  });
}

void RuntimeServer::Drain(const std::string& key, std::function<void()> done) {
  // Bounded: a runtime's orphaned child, or a second connection parked in GET /next, may keep
  // a connection open; the exit is then handled after this long anyway.
  constexpr auto kBound = std::chrono::seconds(1);
  std::shared_ptr<Endpoint> ep;
  std::shared_ptr<RuntimeChannel> ch;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = endpoints_.find(key);
    if (it == endpoints_.end()) return done();
    ep = it->second;
    if (auto c = channels_.find(key); c != channels_.end()) ch = c->second;
  }
  auto wait = std::make_shared<DrainWait>(std::move(done), ch != nullptr ? 2 : 1);
  auto bound = std::make_shared<asio::steady_timer>(ep->ioc, kBound);
  bound->async_wait([wait, bound](const boost::system::error_code&) { wait->All(); });
  if (ch != nullptr) ch->OnEnd([wait] { wait->One(); });
  ep->OnDrained([wait, bound] {
    wait->One();
    if (wait->fired) asio::post(bound->get_executor(), [bound] { bound->cancel(); });
  });
  asio::co_spawn(ep->strand, AcceptBacklog(ep), asio::detached);
}

void RuntimeServer::CloseAll() {
  std::vector<std::string> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [address, _] : endpoints_) all.push_back(address);
  }
  for (const auto& a : all) Close(a);
}

}  // namespace thaw::runtime_api
