#include "cluster/etcd_client.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>

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
  const json::object request{{"key", Base64Encode(prefix)},
                             {"range_end", Base64Encode(PrefixEnd(prefix))}};
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
    if (!item.is_object()) continue;
    const json::object& kv = item.as_object();
    KeyValue entry;
    if (const json::value* k = kv.if_contains("key"); k != nullptr && k->is_string()) {
      entry.key = Base64Decode(k->as_string()).value_or("");
    }
    if (const json::value* v = kv.if_contains("value"); v != nullptr && v->is_string()) {
      entry.value = Base64Decode(v->as_string()).value_or("");
    }
    entry.lease = Int64Field(kv, "lease", 0);
    entry.mod_revision = Int64Field(kv, "mod_revision", 0);
    out.kvs.push_back(std::move(entry));
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

}  // namespace thaw::cluster
