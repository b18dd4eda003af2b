// The gateway against hostile and careless HTTP (issue 10): credentials never reach a
// function URL's code, sourceIp is the real peer, bodies wait for authentication, uploads in
// flight are capped, slow and idle connections time out, connection caps answer clearly,
// descriptor exhaustion is survived, and bad framing gets a 400 before the connection closes.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <thread>

#include "server_fixture.h"

namespace thaw::testing {
namespace {

namespace json = boost::json;

int PortOf(const std::string& url) { return std::stoi(url.substr(url.rfind(':') + 1)); }

// One client connection with blocking reads that give up after `timeout_s`.
class RawConn {
 public:
  RawConn(const std::string& url, const char* from = "127.0.0.1", int timeout_s = 10) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{timeout_s, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    sockaddr_in local{};
    local.sin_family = AF_INET;
    ::inet_pton(AF_INET, from, &local.sin_addr);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof(local));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(PortOf(url)));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~RawConn() { ::close(fd_); }
  RawConn(const RawConn&) = delete;
  RawConn& operator=(const RawConn&) = delete;

  bool connected() const { return connected_; }
  void Send(const std::string& bytes) {
    (void)!::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  }
  // Reads one response whose body is Content-Length long (enough for the gateway's answers).
  // Empty if the connection closed or the read timed out first.
  std::string ReadResponse() {
    for (;;) {
      auto end = buf_.find("\r\n\r\n");
      if (end != std::string::npos) {
        size_t length = 0;
        auto cl = buf_.find("Content-Length: ");
        if (cl != std::string::npos && cl < end) length = std::stoul(buf_.substr(cl + 16));
        if (buf_.size() >= end + 4 + length) {
          std::string out = buf_.substr(0, end + 4 + length);
          buf_.erase(0, out.size());
          return out;
        }
      }
      if (!Fill()) return "";
    }
  }
  // Whether the server closes the connection (reads until EOF) before the read timeout.
  bool ClosedByServer() {
    while (Fill()) {
    }
    return eof_;
  }

 private:
  bool Fill() {
    char buf[4096];
    ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
    if (n > 0) {
      buf_.append(buf, static_cast<size_t>(n));
      return true;
    }
    eof_ = n == 0 || errno == ECONNRESET;
    return false;
  }
  int fd_ = -1;
  bool connected_ = false;
  bool eof_ = false;
  std::string buf_;
};

std::string Get(const std::string& path, const std::string& extra = "") {
  return "GET " + path + " HTTP/1.1\r\nHost: t\r\n" + extra + "\r\n";
}

const std::string kEcho =
    "import json\n"
    "def handler(event, context):\n"
    "    return {'statusCode': 200, 'body': json.dumps(event)}\n";

json::object EventFrom(const HttpResult& r) {
  EXPECT_EQ(r.status, 200) << r.body;
  boost::system::error_code ec;
  json::value v = json::parse(r.body, ec);
  return ec || !v.is_object() ? json::object{} : v.as_object();
}

// ---- 1: function URL events carry no thaw credentials, and say who called ----

class FunctionUrlCredentialsTest : public ServerTest {
 protected:
  void SetUp() override { server_ = ThawServer::Start(); }
};

TEST_F(FunctionUrlCredentialsTest, AdminKeyNeverReachesTheFunction) {
  server_->CreateTenant("acme");
  dirs_.push_back(PythonBundle("web", kEcho));
  ASSERT_EQ(server_->Deploy("acme.web", dirs_.back()).status, 201);
  auto r = server_->Call("GET", "/fn/acme.web/x", "",
                         {{"X-Amz-Date", "20240101T000000Z"}, {"X-Custom", "kept"}});
  EXPECT_EQ(r.body.find(server_->key()), std::string::npos) << "admin key leaked: " << r.body;
  json::object e = EventFrom(r);
  json::object& headers = e["headers"].as_object();
  EXPECT_FALSE(headers.contains("authorization"));
  EXPECT_FALSE(headers.contains("x-amz-date"));
  EXPECT_EQ(headers["x-custom"].as_string(), "kept");
  json::object& context = e["requestContext"].as_object();
  json::object& thaw = context["authorizer"].as_object()["thaw"].as_object();
  EXPECT_EQ(thaw["role"].as_string(), "admin");
  EXPECT_EQ(thaw["keyId"].as_string(), "admin.key");
  EXPECT_EQ(thaw["tenant"].as_string(), "default");
  EXPECT_NE(context["accountId"].as_string(), "anonymous");
}

TEST_F(FunctionUrlCredentialsTest, TenantCallerIsNamedWithoutItsSecret) {
  server_->CreateTenant("acme");
  auto [id, secret] = server_->CreateKey("acme");
  dirs_.push_back(PythonBundle("web", kEcho));
  ASSERT_EQ(server_->Deploy("acme.web", dirs_.back()).status, 201);
  auto r = server_->Call("GET", "/fn/acme.web/x", "", {{"Authorization", "Bearer " + secret}},
                         /*auth=*/false);
  EXPECT_EQ(r.body.find(secret), std::string::npos) << "tenant key leaked: " << r.body;
  json::object e = EventFrom(r);
  json::object& context = e["requestContext"].as_object();
  json::object& iam = context["authorizer"].as_object()["iam"].as_object();
  EXPECT_EQ(iam["accessKey"].as_string(), id);
  EXPECT_EQ(iam["accountId"].as_string(), context["accountId"].as_string());
  EXPECT_NE(context["accountId"].as_string(), "anonymous");
  EXPECT_EQ(context["authorizer"].as_object()["thaw"].as_object()["role"].as_string(), "tenant");
}

TEST_F(FunctionUrlCredentialsTest, PublicUrlDropsThawKeysButKeepsTheFunctionsOwn) {
  DeployPython("pub", kEcho, "url_auth: none\n");
  auto with_key = server_->Call("GET", "/fn/pub/x");  // the fixture sends the admin key
  EXPECT_EQ(with_key.body.find(server_->key()), std::string::npos) << with_key.body;
  json::object e = EventFrom(with_key);
  EXPECT_FALSE(e["headers"].as_object().contains("authorization"));
  EXPECT_EQ(e["requestContext"].as_object()["accountId"].as_string(), "anonymous");
  EXPECT_FALSE(e["requestContext"].as_object().contains("authorizer"));

  auto own = server_->Call("GET", "/fn/pub/x", "", {{"Authorization", "Bearer app-token"}}, false);
  EXPECT_EQ(EventFrom(own)["headers"].as_object()["authorization"].as_string(), "Bearer app-token");
}

// ---- 2: sourceIp is the peer; X-Forwarded-For is believed only from trusted proxies ----

TEST(FunctionUrlSourceIpTest, PeerAddressAndForwardedHeaders) {
  auto server = ThawServer::Start();
  std::string dir = PythonBundle("pub", kEcho, "url_auth: none\n");
  ASSERT_EQ(server->Deploy("pub", dir).status, 201);
  auto r = server->Call("GET", "/fn/pub/x", "",
                        {{"X-Forwarded-For", "6.6.6.6"}, {"X-Forwarded-Proto", "https"}}, false);
  json::object e = EventFrom(r);
  json::object& headers = e["headers"].as_object();
  EXPECT_EQ(e["requestContext"].as_object()["http"].as_object()["sourceIp"].as_string(),
            "127.0.0.1");
  EXPECT_EQ(headers["x-forwarded-for"].as_string(), "127.0.0.1");
  EXPECT_EQ(headers["x-forwarded-proto"].as_string(), "http");
  EXPECT_EQ(headers["x-forwarded-port"].as_string(), std::to_string(PortOf(server->url())));
  RemoveDir(dir);
}

TEST(FunctionUrlSourceIpTest, TrustedProxyForwardsTheClient) {
  auto server = ThawServer::Start({"--trusted-proxies=10.0.0.0/8, 127.0.0.1"});
  std::string dir = PythonBundle("pub", kEcho, "url_auth: none\n");
  ASSERT_EQ(server->Deploy("pub", dir).status, 201);
  auto r = server->Call("GET", "/fn/pub/x", "",
                        {{"X-Forwarded-For", "6.6.6.6, 10.1.2.3"}, {"X-Forwarded-Proto", "https"}},
                        false);
  json::object e = EventFrom(r);
  json::object& headers = e["headers"].as_object();
  EXPECT_EQ(e["requestContext"].as_object()["http"].as_object()["sourceIp"].as_string(), "6.6.6.6");
  EXPECT_EQ(headers["x-forwarded-for"].as_string(), "6.6.6.6, 10.1.2.3, 127.0.0.1");
  EXPECT_EQ(headers["x-forwarded-proto"].as_string(), "https");
  RemoveDir(dir);
}

// ---- 4: authentication before the body; uploads in flight are capped ----

TEST(UploadTest, UnauthenticatedUploadIsRefusedBeforeItsBody) {
  auto server = ThawServer::Start();
  const std::string big = "Content-Length: 200000000\r\n";
  // No body follows: the answer must come from the headers alone.
  RawConn native(server->url());
  native.Send("PUT /v1/functions/x HTTP/1.1\r\nHost: t\r\n" + big + "\r\n");
  std::string r = native.ReadResponse();
  EXPECT_TRUE(r.starts_with("HTTP/1.1 401")) << r;

  RawConn lambda(server->url());
  lambda.Send("POST /2015-03-31/functions HTTP/1.1\r\nHost: t\r\n" + big + "\r\n");
  r = lambda.ReadResponse();
  EXPECT_TRUE(r.starts_with("HTTP/1.1 403")) << r;
  EXPECT_NE(r.find("MissingAuthenticationTokenException"), std::string::npos) << r;

  RawConn unknown_key(server->url());
  unknown_key.Send(
      "POST /2015-03-31/functions HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n" + big +
      "Authorization: AWS4-HMAC-SHA256 Credential=AKTH0000000000000000/20240101/us-east-1/"
      "lambda/aws4_request, SignedHeaders=host, Signature=" +
      std::string(64, '0') + "\r\n\r\n");
  r = unknown_key.ReadResponse();
  EXPECT_TRUE(r.starts_with("HTTP/1.1 403")) << r;  // and no 100 Continue before it
  EXPECT_NE(r.find("UnrecognizedClientException"), std::string::npos) << r;
}

TEST(UploadTest, UploadBytesInFlightAreCapped) {
  auto server = ThawServer::Start({"--max-upload-bytes-in-flight=1000000"});
  const std::string auth = "Authorization: Bearer " + server->key() + "\r\n";
  RawConn first(server->url());
  // The server answers 100 Continue only once it has reserved the first upload's 900,000
  // bytes; a second upload then does not fit beside it.
  first.Send("PUT /v1/functions/a HTTP/1.1\r\nHost: t\r\n" + auth +
             "Expect: 100-continue\r\nContent-Length: 900000\r\n\r\n");
  ASSERT_TRUE(first.ReadResponse().starts_with("HTTP/1.1 100"));
  first.Send(std::string(1000, 'x'));
  RawConn second(server->url());
  second.Send("PUT /v1/functions/b HTTP/1.1\r\nHost: t\r\n" + auth +
              "Content-Length: 200000\r\n\r\n");
  std::string r = second.ReadResponse();
  EXPECT_TRUE(r.starts_with("HTTP/1.1 503")) << r;
  EXPECT_NE(r.find("max_upload_bytes_in_flight"), std::string::npos) << r;
  EXPECT_NE(r.find("Retry-After"), std::string::npos) << r;
  first.Send(std::string(899000, 'x'));  // complete: a bad bundle, answered 400
  r = first.ReadResponse();
  EXPECT_TRUE(r.starts_with("HTTP/1.1 400")) << r;
  auto third = server->Call("PUT", "/v1/functions/c", std::string(200000, 'x'));
  EXPECT_EQ(third.status, 400) << third.body;
}

TEST(UploadTest, UploadsStillDeploy) {
  auto server = ThawServer::Start({"--max-upload-bytes-in-flight=1000000"});
  std::string dir = PythonBundle("up", kEcho);
  EXPECT_EQ(server->Deploy("up", dir).status, 201);
  EXPECT_EQ(server->Invoke("up").status, 200);
  RemoveDir(dir);
}

// ---- 5: timeouts, connection caps, descriptor exhaustion ----

TEST(ConnectionTest, SlowHeadersAndIdleKeepAliveTimeOut) {
  auto server = ThawServer::Start({"--header-timeout-ms=200", "--idle-timeout-ms=200"});
  const auto start = std::chrono::steady_clock::now();
  RawConn slow(server->url());
  slow.Send("GET /healthz HTTP/1.1\r\nHost: t\r\n");  // and never the blank line
  EXPECT_TRUE(slow.ClosedByServer());

  RawConn idle(server->url());
  idle.Send(Get("/healthz"));
  EXPECT_TRUE(idle.ReadResponse().starts_with("HTTP/1.1 200"));
  EXPECT_TRUE(idle.ClosedByServer());

  RawConn silent(server->url());  // connects and sends nothing
  EXPECT_TRUE(silent.ClosedByServer());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(8));
}

// `n` connections that each got one 200 and stay open (fewer if one was not served).
std::vector<std::unique_ptr<RawConn>> HoldServedConnections(const ThawServer& server, int n) {
  std::vector<std::unique_ptr<RawConn>> held;
  for (int i = 0; i < n; ++i) {
    auto conn = std::make_unique<RawConn>(server.url());
    conn->Send(Get("/healthz"));
    if (!conn->ReadResponse().starts_with("HTTP/1.1 200")) break;
    held.push_back(std::move(conn));
  }
  return held;
}

// The answer to a health check on one more connection.
std::string OneMoreHealthz(const ThawServer& server) {
  RawConn over(server.url());
  over.Send(Get("/healthz"));
  return over.ReadResponse();
}

TEST(ConnectionTest, ConnectionCapRefusesClearly) {
  auto server = ThawServer::Start({"--max-connections=3"});
  std::vector<std::unique_ptr<RawConn>> held = HoldServedConnections(*server, 3);
  ASSERT_EQ(held.size(), 3u);
  std::string r = OneMoreHealthz(*server);
  EXPECT_TRUE(r.starts_with("HTTP/1.1 503")) << r;
  EXPECT_NE(r.find("max_connections"), std::string::npos) << r;
  held.pop_back();
  EXPECT_TRUE(Eventually(
      [&] {
        RawConn again(server->url());
        again.Send(Get("/healthz"));
        return again.ReadResponse().starts_with("HTTP/1.1 200");
      },
      5000));
}

TEST(ConnectionTest, PerAddressCapLeavesOtherAddressesServed) {
  auto server = ThawServer::Start({"--max-connections-per-ip=2"});
  std::vector<std::unique_ptr<RawConn>> held = HoldServedConnections(*server, 2);
  ASSERT_EQ(held.size(), 2u);
  std::string r = OneMoreHealthz(*server);
  EXPECT_TRUE(r.starts_with("HTTP/1.1 429")) << r;
  EXPECT_NE(r.find("max_connections_per_ip"), std::string::npos) << r;
  RawConn elsewhere(server->url(), "127.0.0.2");
  ASSERT_TRUE(elsewhere.connected());
  elsewhere.Send(Get("/healthz"));
  EXPECT_TRUE(elsewhere.ReadResponse().starts_with("HTTP/1.1 200"));
}

TEST(ConnectionTest, OutOfDescriptorsAnswers503AndRecovers) {
  auto server = ThawServer::Start();
  // Leave the server a few descriptors above the ones it holds once settled: counted while it
  // was still opening (or closing) its own at start, the limit once left it 64 spare.
  auto count_fds = [&] {
    int n = 0;
    for ([[maybe_unused]] const auto& e :
         std::filesystem::directory_iterator("/proc/" + std::to_string(server->pid()) + "/fd")) {
      ++n;
    }
    return n;
  };
  int open_fds = count_fds();
  ASSERT_TRUE(Eventually(
      [&] {
        const int now = count_fds();
        const bool same = now == open_fds;
        open_fds = now;
        return same;
      },
      5000));
  rlimit was{};
  ASSERT_EQ(::prlimit(server->pid(), RLIMIT_NOFILE, nullptr, &was), 0);
  rlimit low = was;
  low.rlim_cur = static_cast<rlim_t>(open_fds + 4);
  ASSERT_EQ(::prlimit(server->pid(), RLIMIT_NOFILE, &low, nullptr), 0) << std::strerror(errno);
  std::vector<std::unique_ptr<RawConn>> held;
  std::string r;
  for (int i = 0; i < 64; ++i) {
    held.push_back(std::make_unique<RawConn>(server->url(), "127.0.0.1", 5));
    held.back()->Send(Get("/healthz"));
    r = held.back()->ReadResponse();
    if (!r.starts_with("HTTP/1.1 200")) break;
  }
  EXPECT_TRUE(r.starts_with("HTTP/1.1 503")) << "got: '" << r << "'";
  EXPECT_NE(r.find("out of file descriptors"), std::string::npos) << r;
  held.clear();
  EXPECT_TRUE(Eventually([&] { return server->Call("GET", "/healthz").status == 200; }, 5000));
  ASSERT_EQ(::prlimit(server->pid(), RLIMIT_NOFILE, &was, nullptr), 0);
}

// ---- 9: Transfer-Encoding other than a final chunked, and bad chunk sizes ----

class FramingTest : public ServerTest {
 protected:
  void SetUp() override { server_ = ThawServer::Start(); }
  std::string Post(const std::string& framing, const std::string& body) {
    return RawExchange(server_->url(), "POST /v1/functions/none/invoke HTTP/1.1\r\nHost: t\r\n" +
                                           std::string("Authorization: Bearer ") + server_->key() +
                                           "\r\n" + framing + "\r\n" + body);
  }
};

TEST_F(FramingTest, TransferEncodingMustEndWithChunked) {
  const std::string chunked_body = "5\r\nhello\r\n0\r\n\r\n";
  for (const char* te : {"xchunked", "chunked, identity", "identity", "chunked, chunked"}) {
    std::string r = Post(std::string("Transfer-Encoding: ") + te + "\r\n", chunked_body);
    EXPECT_TRUE(r.starts_with("HTTP/1.1 400")) << te << ": " << r;
    EXPECT_EQ(r.find("HTTP/1.1", 1), std::string::npos) << te << ": a second response: " << r;
  }
  std::string gzip = Post("Transfer-Encoding: gzip, chunked\r\n", chunked_body);
  EXPECT_TRUE(gzip.starts_with("HTTP/1.1 501")) << gzip;
  std::string split =
      Post("Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n", chunked_body);
  EXPECT_TRUE(split.starts_with("HTTP/1.1 400")) << split;
  // A well-formed chunked body still works (404: no such function).
  std::string fine = Post("Transfer-Encoding: chunked\r\n", chunked_body);
  EXPECT_TRUE(fine.starts_with("HTTP/1.1 404")) << fine;
}

TEST_F(FramingTest, BadChunkSizesAnswer400) {
  for (const char* size : {"zz", "123456789012345678", "-5"}) {
    std::string r =
        Post("Transfer-Encoding: chunked\r\n", std::string(size) + "\r\nhello\r\n0\r\n\r\n");
    EXPECT_TRUE(r.starts_with("HTTP/1.1 400")) << size << ": " << r;
    EXPECT_EQ(r.find("HTTP/1.1", 1), std::string::npos) << size << ": " << r;
  }
}

// ---- 10: the lean wire path (gateway/http_wire) and its hand-over to Beast's ----

TEST_F(FramingTest, PipelinedRequestsAreAnsweredInOrder) {
  RawConn conn(server_->url());
  const std::string auth = "Authorization: Bearer " + server_->key() + "\r\n";
  // In one write: a health check, an invoke with a body, one Beast parses (a chunked body),
  // and a last health check that closes.
  conn.Send(Get("/healthz") + "POST /v1/functions/none/invoke HTTP/1.1\r\nHost: t\r\n" + auth +
            "Content-Length: 5\r\n\r\nhello" +
            "POST /v1/functions/none/invoke HTTP/1.1\r\nHost: t\r\n" + auth +
            "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" +
            Get("/healthz", "Connection: close\r\n"));
  EXPECT_TRUE(conn.ReadResponse().starts_with("HTTP/1.1 200"));
  EXPECT_TRUE(conn.ReadResponse().starts_with("HTTP/1.1 404"));
  EXPECT_TRUE(conn.ReadResponse().starts_with("HTTP/1.1 404"));
  const std::string last = conn.ReadResponse();
  EXPECT_TRUE(last.starts_with("HTTP/1.1 200")) << last;
  EXPECT_NE(last.find("Connection: close\r\n"), std::string::npos) << last;
  EXPECT_TRUE(conn.ClosedByServer());
}

TEST_F(FramingTest, RequestsSplitAcrossWritesAreServed) {
  RawConn conn(server_->url());
  const std::string request =
      "POST /v1/functions/none/invoke HTTP/1.1\r\nHost: t\r\n"
      "Authorization: Bearer " +
      server_->key() + "\r\nContent-Length: 11\r\n\r\nhello world";
  // Split in a field, then in the body. The pauses give the server a chance to read each
  // piece on its own (nothing to await: its reads are not visible); the answer is the same
  // either way.
  for (size_t cut : {size_t{30}, request.size() - 4}) {
    conn.Send(request.substr(0, cut));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    conn.Send(request.substr(cut));
    const std::string r = conn.ReadResponse();
    EXPECT_TRUE(r.starts_with("HTTP/1.1 404")) << cut << ": " << r;
  }
  conn.Send(Get("/healthz"));
  EXPECT_TRUE(conn.ReadResponse().starts_with("HTTP/1.1 200"));
}

TEST_F(FramingTest, MalformedHeadsStillAnswer400AndBodiesOverTheLimit413) {
  const std::string dup = Post("Content-Length: 1\r\nContent-Length: 2\r\n", "ab");
  EXPECT_TRUE(dup.starts_with("HTTP/1.1 400")) << dup;
  const std::string space =
      RawExchange(server_->url(), "GET /healthz HTTP/1.1\r\nHost : t\r\n\r\n");
  EXPECT_TRUE(space.starts_with("HTTP/1.1 400")) << space;
  const std::string big = Post("Content-Length: 100000000\r\n", "");
  EXPECT_TRUE(big.starts_with("HTTP/1.1 413")) << big;
  // Credentials are checked on the head: no key, no body read.
  const std::string no_key = RawExchange(
      server_->url(),
      "POST /v1/functions/none/invoke HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n");
  EXPECT_TRUE(no_key.starts_with("HTTP/1.1 401")) << no_key;
}

}  // namespace
}  // namespace thaw::testing
