// The hand serializer of whole responses (gateway/http_wire.h) against Beast's own serializer:
// the same bytes for every shape of response the gateway sends.
#include "gateway/http_wire.h"

#include <gtest/gtest.h>

#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <functional>
#include <sstream>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

namespace thaw::gateway {
namespace {

namespace http = boost::beast::http;
using Response = http::response<http::string_body>;

std::string ByBeast(const Response& res) {
  std::ostringstream out;
  out << res;
  return out.str();
}

std::string ByHand(const Response& res) {
  std::string out = "left over from the last response";
  out.clear();
  AppendResponseHead(res.base(), out);
  out += res.body();
  return out;
}

struct Case {
  const char* name;
  std::function<void(Response&)> fill;
};

TEST(HttpWireTest, WholeResponsesMatchBeastByteForByte) {
  const std::vector<Case> cases = {
      {"json 200 keep-alive",
       [](Response& r) {
         r.result(http::status::ok);
         r.set(http::field::content_type, "application/json");
         r.set("X-Amz-Executed-Version", "$LATEST");
         r.body() = R"({"hello":"world"})";
         r.keep_alive(true);
         r.prepare_payload();
       }},
      {"404 close",
       [](Response& r) {
         r.result(http::status::not_found);
         r.body() = "no such function";
         r.keep_alive(false);
         r.prepare_payload();
       }},
      {"204 without body",
       [](Response& r) {
         r.result(http::status::no_content);
         r.prepare_payload();
       }},
      {"304 without body",
       [](Response& r) {
         r.result(http::status::not_modified);
         r.set(http::field::etag, "\"abc\"");
         r.prepare_payload();
       }},
      {"101 informational",
       [](Response& r) {
         r.result(http::status::switching_protocols);
         r.set(http::field::upgrade, "websocket");
         r.prepare_payload();
       }},
      {"HEAD answer: length without body",
       [](Response& r) {
         r.result(http::status::ok);
         r.content_length(1234);
       }},
      {"custom reason",
       [](Response& r) {
         r.result(http::status::too_many_requests);
         r.reason("Slow Down");
         r.set(http::field::retry_after, "1");
         r.body() = "{}";
         r.prepare_payload();
       }},
      {"unknown status code",
       [](Response& r) {
         r.result(299);
         r.body() = "x";
         r.prepare_payload();
       }},
      {"repeated fields, odd names",
       [](Response& r) {
         r.insert(http::field::set_cookie, "a=1");
         r.insert("x-custom-thing", "  spaced  ");
         r.insert(http::field::set_cookie, "b=2");
         r.set(http::field::server, "thaw");
         r.prepare_payload();
       }},
      {"HTTP/1.0 client",
       [](Response& r) {
         r.version(10);
         r.result(http::status::ok);
         r.body() = "old";
         r.keep_alive(true);
         r.prepare_payload();
       }},
      {"large body",
       [](Response& r) {
         r.result(http::status::ok);
         r.body() = std::string(300000, 'z');
         r.prepare_payload();
       }},
  };
  for (const Case& c : cases) {
    Response res;
    res.version(11);
    c.fill(res);
    EXPECT_EQ(ByHand(res), ByBeast(res)) << c.name;
  }
}

TEST(HttpWireTest, AppendsAfterWhatTheBufferHolds) {
  Response res;
  res.version(11);
  res.result(http::status::ok);
  res.prepare_payload();
  std::string out = "prefix";
  AppendResponseHead(res.base(), out);
  EXPECT_EQ(out, "prefixHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
}

constexpr size_t kHeaderLimit = 64 * 1024;

// What Beast's parser (as the connection configures it) makes of the head at the start of
// `bytes`: its error (need_more while incomplete), the request, and how many bytes the head was.
struct ByBeastParser {
  boost::system::error_code ec;
  http::request<http::string_body> req;
  size_t head_bytes = 0;
  uint64_t content_length = 0;
};
ByBeastParser ParseByBeast(std::string_view bytes) {
  http::request_parser<http::string_body> parser;
  parser.header_limit(kHeaderLimit);
  parser.body_limit(boost::none);
  parser.eager(false);
  ByBeastParser out;
  out.head_bytes = parser.put(boost::asio::buffer(bytes.data(), bytes.size()), out.ec);
  if (!out.ec && !parser.is_header_done()) out.ec = http::error::need_more;
  out.content_length = parser.content_length().value_or(0);
  if (!out.ec) out.req = parser.release();
  return out;
}

std::vector<std::pair<std::string, std::string>> Fields(const http::request_header<>& h) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& f : h) out.emplace_back(f.name_string(), f.value());
  return out;
}

// Every head the lean parser takes, it takes exactly as Beast's parser does; every head Beast
// refuses, it declines (so Beast refuses it on the connection, as before).
void ExpectAgreesWithBeast(const std::string& bytes, RequestHead::Outcome want,
                           const std::string& name) {
  SCOPED_TRACE(name);
  http::request_header<> lean;
  const RequestHead head = ParseRequestHead(bytes, kHeaderLimit, lean);
  EXPECT_EQ(static_cast<int>(head.outcome), static_cast<int>(want));
  const ByBeastParser beast = ParseByBeast(bytes);
  switch (head.outcome) {
    case RequestHead::Outcome::kComplete:
      ASSERT_FALSE(beast.ec) << beast.ec.message();
      EXPECT_EQ(head.head_bytes, beast.head_bytes);
      EXPECT_EQ(lean.method(), beast.req.method());
      EXPECT_EQ(lean.method_string(), beast.req.method_string());
      EXPECT_EQ(lean.target(), beast.req.target());
      EXPECT_EQ(lean.version(), beast.req.version());
      EXPECT_EQ(Fields(lean), Fields(beast.req.base()));
      EXPECT_EQ(http::request<http::empty_body>(lean).keep_alive(), beast.req.keep_alive());
      EXPECT_EQ(head.content_length, beast.content_length);
      break;
    case RequestHead::Outcome::kIncomplete:
      EXPECT_EQ(beast.ec, http::error::need_more);
      break;
    case RequestHead::Outcome::kDecline:
      break;
  }
}

TEST(HttpWireTest, ParsesPlainHeadsAsBeastDoes) {
  using O = RequestHead::Outcome;
  const std::vector<std::tuple<std::string, std::string, O>> cases = {
      {"GET", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", O::kComplete},
      {"no fields", "GET /a?b=c HTTP/1.0\r\n\r\n", O::kComplete},
      {"invoke",
       "POST /2015-03-31/functions/hello/invocations HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
       "Authorization: Bearer k\r\nContent-Type: application/json\r\n"
       "Content-Length: 17\r\n\r\n{\"hello\":\"world\"}",
       O::kComplete},
      {"ows trimmed, empty value, odd case",
       "PUT /x HTTP/1.1\r\ncOnTeNt-LeNgTh:\t 3 \t\r\nX-Empty:\r\nX-Sp:  a b  \r\n\r\nabc",
       O::kComplete},
      {"connection close", "GET / HTTP/1.1\r\nConnection: close\r\n\r\n", O::kComplete},
      {"1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", O::kComplete},
      {"unknown method", "BREW /pot HTTP/1.1\r\n\r\n", O::kComplete},
      {"runtime next", "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: r\r\n\r\n",
       O::kComplete},
      {"split in the request line", "GET /2018-06-01/run", O::kIncomplete},
      {"split in a field", "GET / HTTP/1.1\r\nHost: x\r\nAccept: *", O::kIncomplete},
      {"split before the blank line", "GET / HTTP/1.1\r\nHost: x\r\n", O::kIncomplete},
      {"obs-fold", "GET / HTTP/1.1\r\nX-A: one\r\n two\r\n\r\n", O::kDecline},
      {"NUL in a value", std::string("GET / HTTP/1.1\r\nX-A: a\0b\r\n\r\n", 29), O::kDecline},
      {"bare LF", "GET / HTTP/1.1\nHost: x\r\n\r\n", O::kDecline},
      {"bare CR in a value", "GET / HTTP/1.1\r\nX-A: a\rb\r\n\r\n", O::kDecline},
      {"space before the colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", O::kDecline},
      {"bad version", "GET / HTTP/2.0\r\n\r\n", O::kDecline},
      {"no target", "GET  HTTP/1.1\r\n\r\n", O::kDecline},
      {"lower-case version", "GET / http/1.1\r\n\r\n", O::kDecline},
      {"duplicate Content-Length",
       "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", O::kDecline},
      {"equal Content-Lengths (Beast takes them)",
       "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na", O::kDecline},
      {"signed Content-Length", "POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\na", O::kDecline},
      {"Content-Length list", "POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\na", O::kDecline},
      {"Transfer-Encoding",
       "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n", O::kDecline},
      {"Expect", "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
       O::kDecline},
      {"Upgrade", "GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
       O::kDecline},
      {"Connection list", "GET / HTTP/1.1\r\nConnection: keep-alive, TE\r\n\r\n", O::kDecline},
      {"high bytes in a value", "GET / HTTP/1.1\r\nX-A: caf\xc3\xa9\r\n\r\n", O::kDecline},
      {"head over the limit",
       "GET / HTTP/1.1\r\nX-Big: " + std::string(kHeaderLimit, 'a') + "\r\n\r\n", O::kDecline},
      {"unfinished head over the limit",
       "GET / HTTP/1.1\r\nX-Big: " + std::string(kHeaderLimit, 'a'), O::kDecline},
  };
  for (const auto& [name, bytes, want] : cases) ExpectAgreesWithBeast(bytes, want, name);
}

TEST(HttpWireTest, BeastRefusesWhatIsMalformed) {
  // The declined heads that are malformed: Beast's path answers them 400 as before. (It
  // unfolds obs-fold, so that stays its to take.)
  EXPECT_FALSE(ParseByBeast("GET / HTTP/1.1\r\nX-A: one\r\n two\r\n\r\n").ec);
  for (const std::string bytes :
       {"GET / HTTP/1.1\nHost: x\r\n\r\n", "GET / HTTP/1.1\r\nHost : x\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"}) {
    EXPECT_TRUE(ParseByBeast(bytes).ec) << bytes;
  }
}

TEST(HttpWireTest, PipelinedHeadsParseOneAfterAnother) {
  const std::string first = "POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\n";
  const std::string second = "GET /b HTTP/1.1\r\nHost: x\r\n\r\n";
  const std::string bytes = first + "abc" + second + "GET /c HT";
  http::request_header<> h;
  RequestHead head = ParseRequestHead(bytes, kHeaderLimit, h);
  ASSERT_EQ(head.outcome, RequestHead::Outcome::kComplete);
  EXPECT_EQ(head.head_bytes, first.size());
  EXPECT_EQ(head.content_length, 3u);
  EXPECT_EQ(h.target(), "/a");
  const std::string_view rest = std::string_view(bytes).substr(first.size() + 3);
  head = ParseRequestHead(rest, kHeaderLimit, h);
  ASSERT_EQ(head.outcome, RequestHead::Outcome::kComplete);
  EXPECT_EQ(head.head_bytes, second.size());
  EXPECT_EQ(head.content_length, 0u);
  EXPECT_EQ(h.target(), "/b");
  EXPECT_EQ(ParseRequestHead(rest.substr(second.size()), kHeaderLimit, h).outcome,
            RequestHead::Outcome::kIncomplete);
}

TEST(HttpWireTest, EveryPrefixOfAHeadIsIncomplete) {
  const std::string bytes =
      "POST /2015-03-31/functions/f/invocations HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n";
  http::request_header<> h;
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_EQ(ParseRequestHead(std::string_view(bytes).substr(0, n), kHeaderLimit, h).outcome,
              RequestHead::Outcome::kIncomplete)
        << n;
  }
  EXPECT_EQ(ParseRequestHead(bytes, kHeaderLimit, h).outcome, RequestHead::Outcome::kComplete);
}

}  // namespace
}  // namespace thaw::gateway
