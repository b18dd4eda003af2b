#include "cluster/etcd_client.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <optional>

#include "common/base64.h"
#include "common/json_text.h"

namespace thaw::cluster {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;

// The gateway writes int64 fields as JSON strings (proto3's JSON mapping).
int64_t Int64Field(const json::object& o, const char* name, int64_t fallback) {
  const json::value* v = o.if_contains(name);
  if (v == nullptr) return fallback;
  if (v->is_int64()) return v->as_int64();
  if (v->is_uint64()) return static_cast<int64_t>(v->as_uint64());
  if (v->is_string()) {
    try {
      return std::stoll(std::string(v->as_string()));
    } catch (...) {
      return fallback;
    }
  }
  return fallback;
}

KeyValue KvOf(const json::object& kv) {
  KeyValue entry;
  if (const json::value* k = kv.if_contains("key"); k != nullptr && k->is_string()) {
    entry.key = Base64Decode(k->as_string()).value_or("");
  }
  if (const json::value* v = kv.if_contains("value"); v != nullptr && v->is_string()) {
    entry.value = Base64Decode(v->as_string()).value_or("");
  }
  entry.lease = Int64Field(kv, "lease", 0);
  entry.mod_revision = Int64Field(kv, "mod_revision", 0);
  return entry;
}

StatusOr<json::object> ParseObject(const std::string& body) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec || !v.is_object()) return Unavailable("etcd answered something not JSON: " + body);
  return std::move(v.as_object());
}

}  // namespace

std::string PrefixEnd(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    if (static_cast<unsigned char>(end.back()) < 0xff) {
      end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

StatusOr<EtcdClient> EtcdClient::Create(const std::string& url, std::chrono::milliseconds timeout) {
  auto parsed = boost::urls::parse_absolute_uri(url);
  if (!parsed || parsed->scheme() != "http" || parsed->host().empty() || !parsed->has_port()) {
    return InvalidArgument("etcd: expected http://HOST:PORT, got '" + url + "'");
  }
  std::string host(parsed->encoded_host());
  if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  return EtcdClient(url, host, std::string(parsed->port()), timeout);
}

asio::awaitable<StatusOr<std::string>> EtcdClient::Post(const std::string& path,
                                                        const std::string& body) const {
  http::request<http::string_body> req{http::verb::post, path, 11};
  req.set(http::field::host, host_ + ":" + port_);
  req.set(http::field::content_type, "application/json");
  req.set(http::field::connection, "close");
  req.body() = body;
  req.prepare_payload();
  auto executor = co_await asio::this_coro::executor;
  try {
    tcp::resolver resolver(executor);
    auto endpoints = co_await resolver.async_resolve(host_, port_, asio::use_awaitable);
    beast::tcp_stream stream(executor);
    stream.expires_after(timeout_);
    co_await stream.async_connect(endpoints, asio::use_awaitable);
    co_await http::async_write(stream, req, asio::use_awaitable);
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 << 20);
    co_await http::async_read(stream, buffer, parser, asio::use_awaitable);
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    if (parser.get().result() != http::status::ok) {
      co_return Unavailable("etcd " + url_ + path + " answered HTTP " +
                            std::to_string(parser.get().result_int()) + ": " +
                            parser.get().body().substr(0, 200));
    }
    co_return std::move(parser.get().body());
  } catch (const boost::system::system_error& e) {
    co_return Unavailable("failed to reach etcd at " + url_ + ": " + e.code().message());
  }
}

asio::awaitable<StatusOr<int64_t>> EtcdClient::GrantLease(int64_t ttl_s) {
  const json::object request{{"TTL", ttl_s}};
  auto body = co_await Post("/v3/lease/grant", JsonText(request));
  if (!body.ok()) co_return body.status();
  auto o = ParseObject(*body);
  if (!o.ok()) co_return o.status();
  const int64_t id = Int64Field(*o, "ID", 0);
  if (id == 0) co_return Unavailable("etcd granted no lease: " + *body);
  co_return id;
}

asio::awaitable<Status> EtcdClient::KeepAlive(int64_t lease) {
  const json::object request{{"ID", std::to_string(lease)}};
  auto body = co_await Post("/v3/lease/keepalive", JsonText(request));
  if (!body.ok()) co_return body.status();
  // A stream of answers, each {"result": {...}}: one request, one answer. A lease that is gone
  // comes back without a TTL.
  auto o = ParseObject(*body);
  if (!o.ok()) co_return o.status();
  const json::value* result = o->if_contains("result");
  if (result == nullptr || !result->is_object()) {
    co_return Unavailable("etcd keepalive answered without a result: " + *body);
  }
  if (Int64Field(result->as_object(), "TTL", 0) <= 0) {
    co_return NotFound("etcd lease " + std::to_string(lease) + " has expired");
  }
  co_return Status::Ok();
}

asio::awaitable<StatusOr<LeaseTtl>> EtcdClient::TimeToLive(int64_t lease) {
  const json::object request{{"ID", std::to_string(lease)}};
  auto body = co_await Post("/v3/lease/timetolive", JsonText(request));
  if (!body.ok()) co_return body.status();
  auto o = ParseObject(*body);
  if (!o.ok()) co_return o.status();
  co_return LeaseTtl{Int64Field(*o, "TTL", -1), Int64Field(*o, "grantedTTL", 0)};
}

asio::awaitable<Status> EtcdClient::Revoke(int64_t lease) {
  const json::object request{{"ID", std::to_string(lease)}};
  auto body = co_await Post("/v3/lease/revoke", JsonText(request));
  co_return body.ok() ? Status::Ok() : body.status();
}

asio::awaitable<Status> EtcdClient::Put(const std::string& key, const std::string& value,
                                        int64_t lease) {
  json::object request{{"key", Base64Encode(key)}, {"value", Base64Encode(value)}};
  if (lease != 0) request["lease"] = std::to_string(lease);
  auto body = co_await Post("/v3/kv/put", JsonText(request));
  co_return body.ok() ? Status::Ok() : body.status();
}

asio::awaitable<StatusOr<std::vector<KeyValue>>> EtcdClient::RangePrefix(
    const std::string& prefix) {
  auto at = co_await RangePrefixAt(prefix);
  if (!at.ok()) co_return at.status();
  co_return std::move(at->kvs);
}

asio::awaitable<StatusOr<RangeAt>> EtcdClient::RangePrefixAt(const std::string& prefix) {
  co_return co_await RangeBetween(prefix, PrefixEnd(prefix));
}

asio::awaitable<StatusOr<RangeAt>> EtcdClient::RangeBetween(const std::string& key,
                                                            const std::string& range_end) {
  json::object request{{"key", Base64Encode(key)}};
  if (!range_end.empty()) request["range_end"] = Base64Encode(range_end);
  auto body = co_await Post("/v3/kv/range", JsonText(request));
  if (!body.ok()) co_return body.status();
  auto o = ParseObject(*body);
  if (!o.ok()) co_return o.status();
  RangeAt out;
  if (const json::value* h = o->if_contains("header"); h != nullptr && h->is_object()) {
    out.revision = Int64Field(h->as_object(), "revision", 0);
  }
  const json::value* kvs = o->if_contains("kvs");
  if (kvs == nullptr) co_return out;  // no keys: the field is left out
  if (!kvs->is_array()) co_return Unavailable("etcd range: kvs is not a list");
  for (const json::value& item : kvs->as_array()) {
    if (item.is_object()) out.kvs.push_back(KvOf(item.as_object()));
  }
  co_return out;
}

asio::awaitable<StatusOr<bool>> EtcdClient::PutIfUnchangedSince(const std::string& prefix,
                                                                int64_t revision,
                                                                const std::string& key,
                                                                const std::string& value,
                                                                int64_t lease) {
  // One compare over the whole prefix: every key in it has mod_revision < revision + 1 (a range
  // with no keys passes).
  json::object compare{{"key", Base64Encode(prefix)},
                       {"range_end", Base64Encode(PrefixEnd(prefix))},
                       {"target", "MOD"},
                       {"result", "LESS"},
                       {"mod_revision", std::to_string(revision + 1)}};
  json::object put{{"key", Base64Encode(key)}, {"value", Base64Encode(value)}};
  if (lease != 0) put["lease"] = std::to_string(lease);
  json::object request;
  request["compare"] = json::array{std::move(compare)};
  request["success"] = json::array{json::object{{"request_put", std::move(put)}}};
  auto body = co_await Post("/v3/kv/txn", JsonText(request));
  if (!body.ok()) co_return body.status();
  auto o = ParseObject(*body);
  if (!o.ok()) co_return o.status();
  const json::value* ok = o->if_contains("succeeded");  // left out when false
  co_return ok != nullptr && ok->is_bool() && ok->as_bool();
}

asio::awaitable<Status> EtcdClient::Delete(const std::string& key) {
  const json::object request{{"key", Base64Encode(key)}};
  auto body = co_await Post("/v3/kv/deleterange", JsonText(request));
  co_return body.ok() ? Status::Ok() : body.status();
}

// The watch's stream: its HTTP answer's head is read, its body is read piece by piece, and
// each piece is appended to `pending` until it holds one whole JSON message.
struct EtcdWatch::Impl {
  explicit Impl(const asio::any_io_executor& executor) : stream(executor) {}
  beast::tcp_stream stream;
  beast::flat_buffer buffer;
  http::response_parser<http::buffer_body> parser;
  std::string pending;  // body bytes read but not yet taken as a message
  std::string url;

  // The next message's "result" object.
  asio::awaitable<StatusOr<json::object>> NextResult() {
    for (;;) {
      const size_t start = pending.find_first_not_of(" \t\r\n");
      pending.erase(0, start == std::string::npos ? pending.size() : start);
      if (!pending.empty()) {
        json::stream_parser message;
        boost::system::error_code ec;
        const size_t used = message.write_some(pending.data(), pending.size(), ec);
        if (ec) co_return Unavailable("etcd watch at " + url + " sent something not JSON");
        if (message.done()) {
          json::value v = message.release();
          pending.erase(0, used);
          if (!v.is_object()) co_return Unavailable("etcd watch sent a message not an object");
          json::object& o = v.as_object();
          if (const json::value* e = o.if_contains("error"); e != nullptr) {
            co_return Unavailable("etcd watch failed: " + JsonText(*e));
          }
          json::value* result = o.if_contains("result");
          if (result == nullptr || !result->is_object()) {
            co_return Unavailable("etcd watch sent a message without a result");
          }
          co_return std::move(result->as_object());
        }
      }
      if (parser.is_done()) co_return Unavailable("etcd ended the watch stream at " + url);
      char buf[16 * 1024];
      parser.get().body().data = buf;
      parser.get().body().size = sizeof(buf);
      boost::system::error_code ec;
      co_await http::async_read_some(stream, buffer, parser,
                                     asio::redirect_error(asio::use_awaitable, ec));
      if (ec == http::error::need_buffer) ec = {};
      pending.append(buf, sizeof(buf) - parser.get().body().size);
      if (ec) co_return Unavailable("etcd watch stream at " + url + " broke: " + ec.message());
    }
  }
};

EtcdWatch::EtcdWatch(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
EtcdWatch::~EtcdWatch() = default;

void EtcdWatch::Close() {
  boost::system::error_code ignored;
  impl_->stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  impl_->stream.socket().close(ignored);
}

asio::awaitable<StatusOr<std::vector<WatchEvent>>> EtcdWatch::Next() {
  for (;;) {
    auto result = co_await impl_->NextResult();
    if (!result.ok()) co_return result.status();
    const json::object& r = *result;
    if (const json::value* c = r.if_contains("canceled");
        c != nullptr && c->is_bool() && c->as_bool()) {
      std::string why = "etcd cancelled the watch";
      if (const json::value* reason = r.if_contains("cancel_reason");
          reason != nullptr && reason->is_string()) {
        why += ": " + std::string(reason->as_string());
      }
      if (const int64_t compacted = Int64Field(r, "compact_revision", 0); compacted != 0) {
        why += " (compacted to revision " + std::to_string(compacted) + ")";
      }
      co_return FailedPrecondition(why);
    }
    std::vector<WatchEvent> events;
    if (const json::value* list = r.if_contains("events"); list != nullptr && list->is_array()) {
      for (const json::value& item : list->as_array()) {
        if (!item.is_object()) continue;
        const json::object& e = item.as_object();
        WatchEvent event;
        // A put is proto3's default enum value, which the gateway leaves out.
        const json::value* type = e.if_contains("type");
        event.deleted = type != nullptr && type->is_string() && type->as_string() == "DELETE";
        if (const json::value* kv = e.if_contains("kv"); kv != nullptr && kv->is_object()) {
          event.kv = KvOf(kv->as_object());
        }
        events.push_back(std::move(event));
      }
    }
    if (!events.empty()) co_return events;
    // A progress notice or the creation's echo: nothing changed.
  }
}

asio::awaitable<StatusOr<std::unique_ptr<EtcdWatch>>> EtcdClient::Watch(
    const std::string& key, const std::string& range_end, int64_t start_revision) {
  json::object create{{"key", Base64Encode(key)}};
  if (!range_end.empty()) create["range_end"] = Base64Encode(range_end);
  if (start_revision > 0) create["start_revision"] = std::to_string(start_revision);
  json::object request;
  request["create_request"] = std::move(create);
  http::request<http::string_body> req{http::verb::post, "/v3/watch", 11};
  req.set(http::field::host, host_ + ":" + port_);
  req.set(http::field::content_type, "application/json");
  req.body() = JsonText(request);
  req.prepare_payload();
  auto executor = co_await asio::this_coro::executor;
  auto impl = std::make_unique<EtcdWatch::Impl>(executor);
  impl->url = url_;
  impl->parser.body_limit(boost::none);  // a stream as long as the watch lives
  boost::system::error_code ec;
  tcp::resolver resolver(executor);
  auto endpoints =
      co_await resolver.async_resolve(host_, port_, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return Unavailable("failed to resolve etcd at " + url_ + ": " + ec.message());
  // Opening it (connect, request, head, the creation's answer) within the call timeout; then
  // the stream waits as long as nothing changes.
  impl->stream.expires_after(timeout_);
  co_await impl->stream.async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
  if (!ec) {
    co_await http::async_write(impl->stream, req, asio::redirect_error(asio::use_awaitable, ec));
  }
  if (!ec) {
    co_await http::async_read_header(impl->stream, impl->buffer, impl->parser,
                                     asio::redirect_error(asio::use_awaitable, ec));
  }
  if (ec) co_return Unavailable("failed to watch etcd at " + url_ + ": " + ec.message());
  if (impl->parser.get().result() != http::status::ok) {
    co_return Unavailable("etcd " + url_ + "/v3/watch answered HTTP " +
                          std::to_string(impl->parser.get().result_int()));
  }
  auto created = co_await impl->NextResult();
  if (!created.ok()) co_return created.status();
  const json::value* ok = created->if_contains("created");
  if (ok == nullptr || !ok->is_bool() || !ok->as_bool()) {
    co_return Unavailable("etcd did not create the watch: " + JsonText(*created));
  }
  impl->stream.expires_never();
  co_return std::unique_ptr<EtcdWatch>(new EtcdWatch(std::move(impl)));
}

}  // namespace thaw::cluster
