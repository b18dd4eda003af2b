#include "gateway/http_server.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/file_body.hpp>
#include <cerrno>
#include <mutex>
#include <sstream>
#include <unordered_map>
#include <utility>
#include <vector>

#include "auth/keys.h"
#include "common/ids.h"
#include "common/unique_fd.h"
#include "gateway/http_wire.h"

namespace thaw::gateway {

// One listener's connection and upload accounting, shared by its connections (and by its
// acceptors, one per shard). Thread-safe.
class ListenerState {
 public:
  explicit ListenerState(HttpOptions options) : options(std::move(options)) {}

  enum class Verdict { kAdmitted, kTooMany, kTooManyFromPeer };
  Verdict Open(const std::string& peer) {
    std::lock_guard<std::mutex> lock(mu_);
    if (options.max_connections > 0 && open_ >= options.max_connections) return Verdict::kTooMany;
    int64_t& from_peer = per_peer_[peer];
    if (options.max_connections_per_ip > 0 && from_peer >= options.max_connections_per_ip) {
      return Verdict::kTooManyFromPeer;
    }
    ++from_peer;
    ++open_;
    return Verdict::kAdmitted;
  }
  void Close(const std::string& peer) {
    std::lock_guard<std::mutex> lock(mu_);
    --open_;
    auto it = per_peer_.find(peer);
    if (it != per_peer_.end() && --it->second == 0) per_peer_.erase(it);
  }
  bool ReserveUpload(uint64_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    if (upload_bytes_ + bytes > static_cast<uint64_t>(options.max_upload_bytes_in_flight)) {
      return false;
    }
    upload_bytes_ += bytes;
    return true;
  }
  void ReleaseUpload(uint64_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    upload_bytes_ -= bytes;
  }

  const HttpOptions options;

 private:
  std::mutex mu_;
  int64_t open_ = 0;                                   // admitted connections not yet closed
  std::unordered_map<std::string, int64_t> per_peer_;  // the same, by address; no zeros kept
  uint64_t upload_bytes_ = 0;                          // reserved by uploads in flight
};

std::shared_ptr<ListenerState> NewListenerState(HttpOptions options) {
  return std::make_shared<ListenerState>(std::move(options));
}

namespace {

using namespace asio::experimental::awaitable_operators;
namespace beast = boost::beast;

// An admitted connection's place in its listener's counts, given back when it ends.
class ConnectionSlot {
 public:
  ConnectionSlot(std::shared_ptr<ListenerState> state, std::string peer)
      : state_(std::move(state)), peer_(std::move(peer)) {}
  ConnectionSlot(ConnectionSlot&& other) noexcept
      : state_(std::move(other.state_)), peer_(std::move(other.peer_)) {}
  ConnectionSlot(const ConnectionSlot&) = delete;
  ConnectionSlot& operator=(const ConnectionSlot&) = delete;
  ~ConnectionSlot() {
    if (state_) state_->Close(peer_);
  }
  ListenerState& state() const { return *state_; }

 private:
  std::shared_ptr<ListenerState> state_;
  std::string peer_;
};

// Upload bytes reserved for one request, given back when the request is done.
class UploadTicket {
 public:
  UploadTicket() = default;
  UploadTicket(ListenerState* state, uint64_t bytes) : state_(state), bytes_(bytes) {}
  UploadTicket(const UploadTicket&) = delete;
  UploadTicket& operator=(UploadTicket&& other) noexcept {
    std::swap(state_, other.state_);
    std::swap(bytes_, other.bytes_);
    return *this;
  }
  ~UploadTicket() {
    if (state_ != nullptr) state_->ReleaseUpload(bytes_);
  }

 private:
  ListenerState* state_ = nullptr;
  uint64_t bytes_ = 0;
};

asio::awaitable<void> Discard(asio::ip::tcp::socket& socket, size_t max_bytes) {
  char buf[16384];
  size_t total = 0;
  boost::system::error_code ec;
  while (total < max_bytes) {
    total += co_await socket.async_read_some(asio::buffer(buf),
                                             asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
  }
}

asio::awaitable<void> Sleep(std::chrono::milliseconds how_long) {
  asio::steady_timer timer(co_await asio::this_coro::executor, how_long);
  boost::system::error_code ec;
  co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
}

// Sends an error response and closes without losing it: a client still uploading a body we
// refused would get a reset (and no response) if we closed with its bytes unread, so read and
// drop them for a bounded time first, as nginx's lingering close does.
asio::awaitable<void> RejectAndClose(asio::ip::tcp::socket& socket, Response& res,
                                     std::chrono::milliseconds linger = std::chrono::seconds(2)) {
  boost::system::error_code ec;
  res.keep_alive(false);
  res.prepare_payload();
  co_await http::async_write(socket, res, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return;
  socket.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  co_await (Discard(socket, 64 << 20) || Sleep(linger));
}

// A refusal as bytes on the wire, for answering before a request is read.
std::string Refusal(const HttpHandler& handler, http::status status, const std::string& why) {
  Response res;
  res.version(11);
  handler.Reject(status, why, res);
  res.set(http::field::retry_after, "1");
  res.keep_alive(false);
  res.prepare_payload();
  std::ostringstream out;
  out << res;
  return out.str();
}

asio::awaitable<void> RefuseConnection(asio::ip::tcp::socket socket, Response res) {
  co_await RejectAndClose(socket, res, std::chrono::milliseconds(500));
}

void Expire(beast::tcp_stream& stream, int64_t timeout_ms) {
  if (timeout_ms > 0) {
    stream.expires_after(std::chrono::milliseconds(timeout_ms));
  } else {
    stream.expires_never();
  }
}

// RFC 9112 §6.3: a request whose final transfer coding is not chunked has no reliable length,
// and thaw decodes no other coding (§6.1: 501). Empty when the request's framing is fine.
std::pair<http::status, std::string> TransferEncodingProblem(const http::request_header<>& h) {
  std::vector<std::string> codings;
  bool present = false;
  for (auto it = h.find(http::field::transfer_encoding);
       it != h.end() && it->name() == http::field::transfer_encoding; ++it) {
    present = true;
    std::string_view v = it->value();
    size_t start = 0;
    while (start <= v.size()) {
      size_t end = std::min(v.find(',', start), v.size());
      std::string_view token = v.substr(start, end - start);
      while (!token.empty() && (token.front() == ' ' || token.front() == '\t')) {
        token.remove_prefix(1);
      }
      while (!token.empty() && (token.back() == ' ' || token.back() == '\t'))
        token.remove_suffix(1);
      if (!token.empty()) {
        std::string lower(token);
        for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        codings.push_back(std::move(lower));
      }
      start = end + 1;
    }
  }
  if (!present) return {http::status::ok, ""};
  if (codings.empty() || codings.back() != "chunked") {
    return {http::status::bad_request,
            "Transfer-Encoding must end with chunked (RFC 9112 section 6.3)"};
  }
  if (codings.size() > 1) {
    const bool twice = std::count(codings.begin(), codings.end(), "chunked") > 1;
    return {twice ? http::status::bad_request : http::status::not_implemented,
            twice ? "Transfer-Encoding applies chunked more than once"
                  : "only the chunked transfer coding is supported"};
  }
  return {http::status::ok, ""};
}

// Errors in the request's framing (bad chunk sizes and the like), as opposed to the peer
// going away or the socket failing.
bool IsFramingError(const boost::system::error_code& ec) {
  return ec.category() == http::make_error_code(http::error::bad_chunk).category() &&
         ec != http::error::partial_message && ec != http::error::end_of_stream &&
         ec != http::error::body_limit;
}

// Reads the body of the request whose headers `header_parser` holds into an unlinked file
// under `dir` as it arrives, then into `out` once it is complete. `status` is set to 500 if the
// file could not be written.
asio::awaitable<void> ReadSpooled(beast::tcp_stream& stream, beast::flat_buffer& buffer,
                                  http::request_parser<http::string_body>& header_parser,
                                  const std::string& dir, Request& out,
                                  boost::system::error_code& ec, std::string& failure) {
  http::request_parser<http::file_body> parser(std::move(header_parser));
  const std::string path = dir + "/upload-" + RandomHex(8);
  beast::error_code fec;
  parser.get().body().open(path.c_str(), beast::file_mode::write_new, fec);
  if (fec) {
    failure = "failed to open " + path + ": " + fec.message();
    co_return;
  }
  ::unlink(path.c_str());  // the open file is all we need; nothing is left behind on a crash
  co_await http::async_read(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return;
  auto& file = parser.get().body().file();
  const uint64_t size = file.size(fec);
  std::string body(fec ? 0 : size, '\0');
  if (!fec) file.seek(0, fec);
  for (size_t done = 0; !fec && done < body.size();) {
    size_t n = file.read(body.data() + done, body.size() - done, fec);
    if (n == 0 && !fec) break;
    done += n;
  }
  if (fec) {
    failure = "failed to read back the upload: " + fec.message();
    co_return;
  }
  out = Request(std::move(parser.get().base()));
  out.body() = std::move(body);
}

bool SpoolHasRoom(const std::string& dir, const http::request_parser<http::string_body>& parser) {
  struct statvfs fs;
  if (::statvfs(dir.c_str(), &fs) != 0) return false;
  const uint64_t free_bytes = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
  const uint64_t want = parser.content_length().value_or(64ULL << 20);
  return free_bytes > want + (16ULL << 20);
}
// Sends a whole response with one write: its head is built by hand into `wire` (the
// connection's, reused from one response to the next), followed by the body, copied in when
// small and sent from where it is (gathered) when not. The same bytes Beast's serializer sends.
asio::awaitable<void> WriteWhole(beast::tcp_stream& stream, Response& res, std::string& wire,
                                 boost::system::error_code& ec) {
  res.prepare_payload();
  if (res.chunked()) {  // a body of unknown length: Beast frames it
    co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
    co_return;
  }
  constexpr size_t kCopyBodyMax = 16 * 1024;
  constexpr size_t kKeepWireMax = 64 * 1024;
  if (wire.capacity() > kKeepWireMax) std::string().swap(wire);
  wire.clear();
  AppendResponseHead(res.base(), wire);
  const std::string& body = res.body();
  // Past the headers the stream has no deadline, so the socket is written directly.
  if (body.size() <= kCopyBodyMax) {
    wire.append(body);
    co_await asio::async_write(stream.socket(), asio::buffer(wire),
                               asio::redirect_error(asio::use_awaitable, ec));
  } else {
    const std::array<asio::const_buffer, 2> pieces = {asio::buffer(wire), asio::buffer(body)};
    co_await asio::async_write(stream.socket(), pieces,
                               asio::redirect_error(asio::use_awaitable, ec));
  }
}

class ChunkedWriter final : public ResponseWriter {
 public:
  explicit ChunkedWriter(beast::tcp_stream& stream) : stream_(stream) {}

  asio::awaitable<bool> Begin(Response& head) override {
    http::response<http::empty_body> msg(head.base());
    msg.chunked(true);
    begun_ = true;
    http::response_serializer<http::empty_body> sr(msg);
    boost::system::error_code ec;
    co_await http::async_write_header(stream_, sr, asio::redirect_error(asio::use_awaitable, ec));
    failed_ = failed_ || ec;
    co_return !failed_;
  }
  asio::awaitable<bool> Write(std::string_view bytes) override {
    if (failed_ || bytes.empty()) co_return !failed_;
    boost::system::error_code ec;
    co_await asio::async_write(stream_, http::make_chunk(asio::buffer(bytes)),
                               asio::redirect_error(asio::use_awaitable, ec));
    failed_ = failed_ || ec;
    co_return !failed_;
  }
  asio::awaitable<bool> End(const http::fields& trailers) override {
    if (failed_) co_return false;
    boost::system::error_code ec;
    co_await asio::async_write(stream_, http::make_chunk_last(trailers),
                               asio::redirect_error(asio::use_awaitable, ec));
    failed_ = failed_ || ec;
    ended_ = !failed_;
    co_return ended_;
  }
  bool begun() const override { return begun_; }
  bool ended() const { return ended_; }
  void Reset() { begun_ = ended_ = failed_ = false; }

 private:
  beast::tcp_stream& stream_;
  bool begun_ = false, ended_ = false, failed_ = false;
};

class ParserBodyReader final : public BodyReader {
 public:
  ParserBodyReader(beast::tcp_stream& stream, beast::flat_buffer& buffer,
                   http::request_parser<http::buffer_body>& parser)
      : stream_(stream), buffer_(buffer), parser_(parser) {}

  asio::awaitable<std::string> Read() override {
    char buf[64 * 1024];
    while (!failed_ && !parser_.is_done()) {
      parser_.get().body().data = buf;
      parser_.get().body().size = sizeof(buf);
      co_await http::async_read_some(stream_, buffer_, parser_,
                                     asio::redirect_error(asio::use_awaitable, ec_));
      if (ec_ == http::error::need_buffer) ec_ = {};
      failed_ = static_cast<bool>(ec_);
      const size_t n = sizeof(buf) - parser_.get().body().size;
      if (n > 0) co_return std::string(buf, n);
    }
    co_return std::string();
  }
  const boost::system::error_code& error() const override { return ec_; }
  const http::request_header<>& header() const override { return parser_.get().base(); }
  bool complete() const { return !failed_ && parser_.is_done(); }

 private:
  beast::tcp_stream& stream_;
  beast::flat_buffer& buffer_;
  http::request_parser<http::buffer_body>& parser_;
  boost::system::error_code ec_;
  bool failed_ = false;
};

constexpr size_t kHeaderLimit = 64 * 1024;

std::string OverLimit(uint64_t length, uint64_t limit) {
  return "request body of " + std::to_string(length) + " bytes is over the limit of " +
         std::to_string(limit) + " bytes";
}

// Serves a request whose head ParseRequestHead took (in `req`, its bytes consumed from
// `buffer`): the route's body limit and credentials are checked on the head, then its
// Content-Length body is read (what `buffer` holds of it first, the rest straight into the
// body) and the response written. False when the connection is done with.
asio::awaitable<bool> ServeLean(beast::tcp_stream& stream, beast::flat_buffer& buffer,
                                HttpHandler& handler, Peer& peer, ChunkedWriter& writer,
                                std::string& wire, Request& req, uint64_t length) {
  Response res;
  res.version(11);
  std::optional<auth::Caller> caller;
  const uint64_t limit = handler.BodyLimit(req.base());
  if (length > limit) {
    handler.OnBodyTooLarge(req.base(), limit);
    handler.Reject(http::status::payload_too_large, OverLimit(length, limit), res);
    co_await RejectAndClose(stream.socket(), res);
    co_return false;
  }
  if (!handler.Screen(req.base(), res, caller)) {
    co_await RejectAndClose(stream.socket(), res);
    co_return false;
  }
  boost::system::error_code ec;
  if (length > 0) {
    std::string& body = req.body();
    const size_t buffered = static_cast<size_t>(std::min<uint64_t>(buffer.size(), length));
    body.resize(static_cast<size_t>(length));
    asio::buffer_copy(asio::buffer(body), buffer.data(), buffered);
    buffer.consume(buffered);
    if (buffered < length) {
      co_await asio::async_read(stream.socket(),
                                asio::buffer(body.data() + buffered, length - buffered),
                                asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return false;  // the peer went away mid-body
    }
  }
  res.keep_alive(req.keep_alive());
  // The caller and the pipelined bytes are this request's alone; `handler_state` stays with
  // the connection. `buffer` is left alone until the handler returns: the view stays valid.
  peer.caller = caller ? &*caller : nullptr;
  peer.pipelined =
      std::string_view(static_cast<const char*>(buffer.data().data()), buffer.data().size());
  co_await handler.Serve(peer, req, res);
  peer.caller = nullptr;
  peer.pipelined = {};
  if (writer.begun()) {
    // Answered in pieces already; a body cut short leaves the connection unusable.
    if (!writer.ended() || !res.keep_alive()) co_return false;
    writer.Reset();
    co_return true;
  }
  co_await WriteWhole(stream, res, wire, ec);
  co_return !ec && res.keep_alive();
}

asio::awaitable<void> ServeConnection(asio::ip::tcp::socket socket, HttpHandler& handler,
                                      ConnectionSlot slot) {
  boost::system::error_code ec;
  if (!handler.Admit(socket)) {
    socket.close(ec);
    co_return;
  }
  socket.set_option(asio::ip::tcp::no_delay(true), ec);
  Peer peer;
  if (auto remote = socket.remote_endpoint(ec); !ec) {
    peer.address = remote.address();
    peer.port = remote.port();
  }
  if (auto local = socket.local_endpoint(ec); !ec) peer.local_port = local.port();
  const HttpOptions& options = slot.state().options;
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  ChunkedWriter writer(stream);
  peer.writer = &writer;
  std::string wire;  // the bytes of each whole response, reused across keep-alive requests
  for (bool first = true;; first = false) {
    if (buffer.size() == 0) {
      // The first request's headers are timed from accept; a keep-alive connection waits for
      // the next request's first byte for at most the idle timeout.
      Expire(stream, first ? options.header_timeout_ms : options.idle_timeout_ms);
      size_t n = co_await stream.async_read_some(buffer.prepare(16384),
                                                 asio::redirect_error(asio::use_awaitable, ec));
      buffer.commit(n);
      if (ec) break;
    }
    if (!first) Expire(stream, options.header_timeout_ms);
    // The common request, whole head already read, takes the lean path; anything else (and
    // every malformed head) is parsed by Beast from the same bytes, as it always was.
    {
      Request req;
      const std::string_view bytes(static_cast<const char*>(buffer.data().data()), buffer.size());
      const RequestHead head = ParseRequestHead(bytes, kHeaderLimit, req.base());
      if (head.outcome == RequestHead::Outcome::kComplete && !handler.StreamsBody(req.base()) &&
          !handler.IsUpload(req.base())) {
        buffer.consume(head.head_bytes);
        stream.expires_never();
        if (!co_await ServeLean(stream, buffer, handler, peer, writer, wire, req,
                                head.content_length)) {
          break;
        }
        continue;
      }
    }
    http::request_parser<http::string_body> parser;
    parser.header_limit(kHeaderLimit);
    // Beast checks Content-Length against the body limit while parsing the headers, before we
    // know the route: lift it here and apply the route's limit right after.
    parser.body_limit(boost::none);
    co_await http::async_read_header(stream, buffer, parser,
                                     asio::redirect_error(asio::use_awaitable, ec));
    // Past the headers nothing is timed: bodies and handlers (invocations) take what they take.
    stream.expires_never();
    if (ec == http::error::end_of_stream || ec == asio::error::eof ||
        ec == asio::error::connection_reset || ec == asio::error::operation_aborted ||
        ec == beast::error::timeout) {
      break;
    }
    Response res;
    res.version(11);
    if (ec) {
      handler.Reject(http::status::bad_request, "malformed HTTP request: " + ec.message(), res);
      co_await RejectAndClose(stream.socket(), res);
      co_return;
    }
    const http::request_header<>& header = parser.get().base();
    if (auto [status, why] = TransferEncodingProblem(header); status != http::status::ok) {
      handler.Reject(status, why, res);
      co_await RejectAndClose(stream.socket(), res);
      co_return;
    }
    const uint64_t limit = handler.BodyLimit(header);
    parser.body_limit(limit);
    if (parser.content_length() && *parser.content_length() > limit) {
      handler.OnBodyTooLarge(parser.get().base(), limit);
      handler.Reject(http::status::payload_too_large, OverLimit(*parser.content_length(), limit),
                     res);
      co_await RejectAndClose(stream.socket(), res);
      co_return;
    }
    std::optional<auth::Caller> caller;
    if (!handler.Screen(header, res, caller)) {
      co_await RejectAndClose(stream.socket(), res);
      co_return;
    }
    const bool upload = handler.IsUpload(header) && !parser.is_done();
    UploadTicket ticket;
    if (upload && options.max_upload_bytes_in_flight > 0) {
      const uint64_t bytes = parser.content_length().value_or(limit);
      if (!slot.state().ReserveUpload(bytes)) {
        handler.Reject(http::status::service_unavailable,
                       "too many upload bytes in flight (max_upload_bytes_in_flight " +
                           std::to_string(options.max_upload_bytes_in_flight) +
                           "): try again shortly",
                       res);
        res.set(http::field::retry_after, "1");
        co_await RejectAndClose(stream.socket(), res);
        co_return;
      }
      ticket = UploadTicket(&slot.state(), bytes);
    }
    if (boost::beast::iequals(parser.get()[http::field::expect], "100-continue")) {
      static constexpr char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
      co_await asio::async_write(stream, asio::buffer(kContinue, sizeof(kContinue) - 1),
                                 asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
    }
    if (handler.StreamsBody(header) && !parser.is_done()) {
      http::request_parser<http::buffer_body> body_parser(std::move(parser));
      body_parser.body_limit(limit);
      ParserBodyReader body(stream, buffer, body_parser);
      res.keep_alive(body_parser.get().keep_alive());
      peer.caller = caller ? &*caller : nullptr;
      co_await handler.ServeBody(peer, body, res);
      peer.caller = nullptr;
      // Unread body bytes would be taken for the next request.
      if (!body.complete()) res.keep_alive(false);
      co_await WriteWhole(stream, res, wire, ec);
      if (ec || !res.keep_alive()) break;
      continue;
    }
    Request req;
    std::string failure;
    // Spooled only where the disk has room for it: a spool that fills the disk would end in a
    // reset mid-upload, where reading it into memory lets the deploy answer 507 with the cause.
    if (upload && !options.spool_dir.empty() && SpoolHasRoom(options.spool_dir, parser)) {
      co_await ReadSpooled(stream, buffer, parser, options.spool_dir, req, ec, failure);
    } else {
      co_await http::async_read(stream, buffer, parser,
                                asio::redirect_error(asio::use_awaitable, ec));
      if (!ec) req = parser.release();
    }
    if (!failure.empty()) {
      spdlog::error("{}", failure);
      handler.Reject(http::status::internal_server_error, "the upload could not be stored", res);
      co_await RejectAndClose(stream.socket(), res);
      co_return;
    }
    if (ec == http::error::body_limit) {
      handler.OnBodyTooLarge(parser.get().base(), limit);
      handler.Reject(http::status::payload_too_large,
                     "request body is over the limit of " + std::to_string(limit) + " bytes", res);
      co_await RejectAndClose(stream.socket(), res);
      co_return;
    }
    if (IsFramingError(ec)) {
      handler.Reject(http::status::bad_request, "malformed request body: " + ec.message(), res);
      co_await RejectAndClose(stream.socket(), res);
      co_return;
    }
    if (ec) break;
    res.keep_alive(req.keep_alive());
    peer.caller = caller ? &*caller : nullptr;
    co_await handler.Serve(peer, req, res);
    peer.caller = nullptr;
    // The upload is done with: its bytes may go to the next one before this answer is written.
    req = Request();
    ticket = UploadTicket();
    if (writer.begun()) {
      // Answered in pieces already; a body cut short leaves the connection unusable.
      if (!writer.ended() || !res.keep_alive()) break;
      writer.Reset();
      continue;
    }
    co_await WriteWhole(stream, res, wire, ec);
    if (ec || !res.keep_alive()) break;
  }
  stream.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ec);
}

UniqueFd OpenReserveFd() {
  // SAFETY: a plain open of /dev/null, kept only to be closed when accept runs out of fds.
  return UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
}

// Out of descriptors: gives up the spare one to accept the oldest waiting connection, tells it
// why in plain bytes and closes it, so clients learn at once instead of waiting in the backlog.
void RefuseWithReserve(asio::ip::tcp::acceptor& acceptor, UniqueFd& reserve,
                       const std::string& refusal) {
  reserve.reset();
  // SAFETY: accept4 on the listening socket we own; the acceptor is non-blocking, so with
  // nothing waiting this fails with EAGAIN instead of blocking the loop.
  UniqueFd conn(::accept4(acceptor.native_handle(), nullptr, nullptr, SOCK_CLOEXEC));
  if (conn.valid()) {
    // SAFETY: a fresh socket's send buffer takes these few hundred bytes without blocking.
    (void)!::send(conn.get(), refusal.data(), refusal.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    ::shutdown(conn.get(), SHUT_WR);
    // Unread request bytes would turn the close into a reset that can lose the answer.
    char drain[4096];
    while (::recv(conn.get(), drain, sizeof(drain), MSG_DONTWAIT) > 0) {
    }
  }
  conn.reset();
  reserve = OpenReserveFd();
}

bool OutOfResources(const boost::system::error_code& ec) {
  return ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space ||
         ec == asio::error::no_memory ||
         (ec.category() == boost::system::system_category() && ec.value() == ENFILE);
}

}  // namespace

asio::awaitable<void> AcceptLoop(asio::ip::tcp::acceptor& acceptor,
                                 asio::any_io_executor connections, HttpHandler& handler,
                                 std::shared_ptr<void> keep_alive, HttpOptions options) {
  return AcceptLoop(acceptor, std::move(connections), handler, std::move(keep_alive),
                    NewListenerState(std::move(options)));
}

asio::awaitable<void> AcceptLoop(asio::ip::tcp::acceptor& acceptor,
                                 asio::any_io_executor connections, HttpHandler& handler,
                                 std::shared_ptr<void> keep_alive,
                                 std::shared_ptr<ListenerState> state) {
  const HttpOptions& o = state->options;
  UniqueFd reserve = o.reserve_fd ? OpenReserveFd() : UniqueFd();
  const std::string out_of_fds =
      Refusal(handler, http::status::service_unavailable, "the server is out of file descriptors");
  bool backing_off = false;
  for (;;) {
    boost::system::error_code ec;
    // On a shard (one thread) the connection needs no strand, and a completion dispatched to
    // it from that thread (the runtime's answer) runs inline instead of being queued.
    asio::any_io_executor strand = o.strand_per_connection
                                       ? asio::any_io_executor(asio::make_strand(connections))
                                       : connections;
    asio::ip::tcp::socket socket =
        co_await acceptor.async_accept(strand, asio::redirect_error(asio::use_awaitable, ec));
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) break;
    if (ec) {
      // Retrying at once would spin: the waiting connection keeps the acceptor readable.
      if (OutOfResources(ec)) {
        if (!backing_off) spdlog::warn("accept failed: {}: backing off", ec.message());
        backing_off = true;
        if (reserve.valid()) RefuseWithReserve(acceptor, reserve, out_of_fds);
        co_await Sleep(std::chrono::milliseconds(std::max<int64_t>(1, o.accept_backoff_ms)));
      }
      continue;
    }
    backing_off = false;
    if (!reserve.valid() && o.reserve_fd) reserve = OpenReserveFd();
    auto remote = socket.remote_endpoint(ec);
    if (ec) continue;  // already gone
    std::string peer = remote.address().to_string();
    switch (state->Open(peer)) {
      case ListenerState::Verdict::kAdmitted:
        break;
      case ListenerState::Verdict::kTooMany: {
        Response res;
        res.version(11);
        handler.Reject(http::status::service_unavailable,
                       "too many connections (max_connections " +
                           std::to_string(o.max_connections) + "): try again shortly",
                       res);
        res.set(http::field::retry_after, "1");
        asio::co_spawn(strand, RefuseConnection(std::move(socket), std::move(res)), asio::detached);
        continue;
      }
      case ListenerState::Verdict::kTooManyFromPeer: {
        Response res;
        res.version(11);
        handler.Reject(http::status::too_many_requests,
                       "too many connections from " + peer + " (max_connections_per_ip " +
                           std::to_string(o.max_connections_per_ip) + ")",
                       res);
        res.set(http::field::retry_after, "1");
        asio::co_spawn(strand, RefuseConnection(std::move(socket), std::move(res)), asio::detached);
        continue;
      }
    }
    asio::co_spawn(
        strand,
        [&handler, keep_alive, s = std::move(socket),
         slot = ConnectionSlot(state, std::move(peer))]() mutable {
          return ServeConnection(std::move(s), handler, std::move(slot));
        },
        asio::detached);
  }
}

}  // namespace thaw::gateway
