// Shared truth across nodes: two `thaw serve` processes on one PostgreSQL (tests/pg_server.h)
// and one etcd (tests/etcd_server.h), sharing a master key file. A function deployed through A
// runs through B (B fetches its bundle from A by digest and checks it), a model pushed through
// A is fetched by B file by file and checked (a peer sending other bytes is refused, the next
// one asked, and with none left the start fails naming the model and the peers), a new version on A
// replaces B's pools, a key revoked on A is refused by B within a second, a tenant's limits
// changed on A show on B, and B's LISTEN connection, cut, comes back and catches up. Skips
// without PostgreSQL's binaries or etcd.
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <sys/stat.h>

#include <boost/json.hpp>
#include <chrono>
#include <cstdio>

#include "common/files.h"
#include "common/hmac.h"
#include "common/sha256.h"
#include "etcd_server.h"
#include "pg_server.h"
#include "server_fixture.h"

namespace thaw::testing {
namespace {

namespace json = boost::json;
using Clock = std::chrono::steady_clock;

int64_t MsSince(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

constexpr const char* kAdminKey =
    "thaw_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

class SharedTruthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    const std::string skip = StartClusterBackends(store_, etcd_, error);
    if (!skip.empty()) GTEST_SKIP() << skip;
    ASSERT_NE(etcd_, nullptr) << error;
    char tmpl[] = "/tmp/thaw-master-XXXXXX";
    key_dir_ = ::mkdtemp(tmpl);
    master_ = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    ASSERT_TRUE(WriteFileAtomic(key_dir_ + "/master.key", master_ + "\n", 0600).ok());
  }
  void TearDown() override {
    for (auto& d : dirs_) RemoveDir(d);
    if (!key_dir_.empty()) RemoveDir(key_dir_);
  }
  // Every node holds the one admin.key, as docs/cluster.md asks: a call forwarded to a peer
  // (a template or warm instance there) is authenticated again by that peer.
  std::unique_ptr<ThawServer> Node(const std::string& name) {
    char tmpl[] = "/tmp/thaw-node-XXXXXX";
    const std::string dir = ::mkdtemp(tmpl);
    dirs_.push_back(dir);
    EXPECT_TRUE(WriteFileAtomic(dir + "/admin.key", kAdminKey + std::string("\n"), 0600).ok());
    auto node =
        ThawServer::Start({"--store", store_, "--etcd", etcd_->url(), "--node-name", name,
                           "--node-lease-s", "2", "--master-key-file", key_dir_ + "/master.key"},
                          dir);
    EXPECT_NE(node, nullptr);
    return node;
  }
  // Invokes reader on `b` itself: the hop header makes it a call another node forwarded, which
  // runs where it lands (else b would forward it to a, which holds reader's template).
  static HttpResult OnB(const ThawServer& b) {
    return b.Call("POST", "/v1/functions/reader/invoke", "{}", {{"X-Thaw-Forwarded-By", "test"}});
  }
  // Both nodes list each other (B then knows where to fetch bundles from).
  static bool Members(const ThawServer& server, size_t n) {
    auto r = server.Call("GET", "/v1/nodes");
    return r.status == 200 && json::parse(r.body).at("nodes").as_array().size() == n;
  }
  static int WhoAmI(const ThawServer& server, const std::string& secret) {
    return server.Call("GET", "/v1/whoami", "", {{"Authorization", "Bearer " + secret}}, false)
        .status;
  }
  std::string Bundle(const std::string& answer) {
    dirs_.push_back(PythonBundle(
        "hello", "def handler(event, context):\n    return {\"answer\": \"" + answer + "\"}\n"));
    return dirs_.back();
  }

  // Pushes model digits:v1 through `node` (a 3 MiB weights file and a small one in a folder);
  // returns its digest.
  std::string PushModel(const ThawServer& node) {
    for (const auto& [sha, bytes] :
         {std::pair{Sha256Hex(weights_), weights_}, std::pair{Sha256Hex(vocab_), vocab_}}) {
      auto put = node.Call("PUT", "/v1/artifacts/_blobs/" + sha, bytes);
      EXPECT_EQ(put.status / 100, 2) << put.body;
    }
    auto put = node.Call("PUT", "/v1/artifacts/digits/v1",
                         R"({"files":[{"path":"weights.bin","sha256":")" + Sha256Hex(weights_) +
                             R"(","size":)" + std::to_string(weights_.size()) +
                             R"(},{"path":"tok/vocab.json","sha256":")" + Sha256Hex(vocab_) +
                             R"(","size":)" + std::to_string(vocab_.size()) + "}]}");
    EXPECT_EQ(put.status / 100, 2) << put.body;
    const std::string digest = JsonField(put.body, "digest");  // "sha256:HEX"
    return digest.starts_with("sha256:") ? digest.substr(7) : digest;
  }
  // A function `name` that reads digits:v1 and answers its weights' sha256 and its vocabulary.
  std::string ModelReader(const std::string& name) {
    dirs_.push_back(
        PythonBundle(name,
                     "import hashlib, os\n"
                     "def handler(event, context):\n"
                     "    d = os.environ['THAW_MODEL_DIGITS']\n"
                     "    w = open(os.path.join(d, 'weights.bin'), 'rb').read()\n"
                     "    return {'sha': hashlib.sha256(w).hexdigest(),\n"
                     "            'vocab': open(os.path.join(d, 'tok/vocab.json')).read()}\n",
                     "models: [{name: digits, tag: v1, mount: /opt/models/digits}]\n"));
    return dirs_.back();
  }
  // Overwrites `node`'s copy of the weights (its blob and the tree's link to it) with other
  // bytes of the same length, or puts the right ones back.
  void SetWeights(const ThawServer& node, bool corrupt) {
    const std::string blob = node.data_dir() + "/models/blobs/" + Sha256Hex(weights_);
    ASSERT_EQ(::chmod(blob.c_str(), 0644), 0) << blob;
    std::string bytes = weights_;
    if (corrupt) bytes[bytes.size() / 2] ^= 0x5a;
    FILE* f = std::fopen(blob.c_str(), "r+b");
    ASSERT_NE(f, nullptr) << blob;
    ASSERT_EQ(std::fwrite(bytes.data(), 1, bytes.size(), f), bytes.size());
    std::fclose(f);
  }

  std::string store_, key_dir_, master_;
  const std::string weights_ = [] {
    std::string s(3 << 20, '\0');
    uint32_t x = 12345;
    for (char& c : s) {
      x = x * 1103515245u + 12345u;
      c = static_cast<char>(x >> 24);
    }
    return s;
  }();
  const std::string vocab_ = "{\"hello\": 1}";
  std::unique_ptr<EtcdServer> etcd_;
  std::vector<std::string> dirs_;
};

TEST_F(SharedTruthTest, DeployThroughAInvokeThroughB) {
  auto a = Node("a");
  auto b = Node("b");
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(Eventually([&] { return Members(*a, 2) && Members(*b, 2); }, 20000));

  auto deployed = a->Deploy("hello", Bundle("one"));
  ASSERT_EQ(deployed.status, 201) << deployed.body;
  const auto start = Clock::now();
  // B's registry hears of it within a second.
  ASSERT_TRUE(Eventually([&] { return b->Call("GET", "/v1/functions/hello").status == 200; }, 1000))
      << "B did not see the deploy within 1 s";
  std::printf("deploy on A seen on B after %lld ms\n", static_cast<long long>(MsSince(start)));
  const std::string sha = JsonField(a->Call("GET", "/v1/functions/hello").body, "sha256");
  ASSERT_EQ(sha.size(), 64u);

  // B had no bundle: it fetches it from A (at once, for the version's template, or for the
  // call), checks it, and runs it.
  auto r = b->Invoke("hello");
  ASSERT_EQ(r.status, 200) << r.body << b->Output();
  EXPECT_NE(r.body.find("one"), std::string::npos) << r.body;
  EXPECT_TRUE(b->WaitForOutput(
      "bundle " + sha.substr(0, 12) + " of hello:1 fetched from " + a->url(), 1000))
      << b->Output();
  EXPECT_TRUE(PathExists(b->data_dir() + "/bundles/" + sha));
  EXPECT_TRUE(PathExists(b->data_dir() + "/blobs/" + sha));

  // A new version on A: B's pools of the old one drain, and its calls run the new code.
  auto again = a->Deploy("hello", Bundle("two"));
  ASSERT_EQ(again.status, 201) << again.body;
  EXPECT_TRUE(Eventually(
      [&] {
        auto got = b->Invoke("hello");
        return got.status == 200 && got.body.find("two") != std::string::npos;
      },
      10000))
      << b->Output();

  // The internal route wants the cluster token: not an admin key, not nothing.
  const std::string target = "/v1/internal/bundles/" + sha;
  EXPECT_EQ(a->Call("GET", target).status, 403);
  EXPECT_EQ(a->Call("GET", target, "", {}, false).status, 403);
  const std::string token = HmacSha256Hex(master_, "thaw cluster token v1");
  auto fetched = a->Call("GET", target, "", {{"X-Thaw-Cluster-Token", token}}, false);
  EXPECT_EQ(fetched.status, 200);
  EXPECT_EQ(Sha256Hex(fetched.body), sha);
  // Neither node logs the master key.
  EXPECT_EQ(a->Output().find(master_), std::string::npos);
  EXPECT_EQ(b->Output().find(master_), std::string::npos);
}

// A model pushed and deployed through A: B, called cold, fetches the model's files from A (one
// shared fetch for the template and the call), checks them, builds the tree and serves; then
// its node record advertises the model, so placement prefers it for versions that use it.
TEST_F(SharedTruthTest, ModelPushedThroughAIsFetchedByB) {
  auto a = Node("a");
  auto b = Node("b");
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(Eventually([&] { return Members(*a, 2) && Members(*b, 2); }, 20000));
  const std::string digest = PushModel(*a);
  ASSERT_EQ(digest.size(), 64u);
  auto deployed = a->Deploy("reader", ModelReader("reader"));
  ASSERT_EQ(deployed.status, 201) << deployed.body;
  ASSERT_TRUE(
      Eventually([&] { return b->Call("GET", "/v1/functions/reader").status == 200; }, 1000));
  EXPECT_FALSE(PathExists(b->data_dir() + "/models/trees/" + digest));

  auto r = b->Invoke("reader");
  ASSERT_EQ(r.status, 200) << r.body << b->Output();
  EXPECT_EQ(JsonField(r.body, "sha"), Sha256Hex(weights_)) << r.body;
  EXPECT_EQ(JsonField(r.body, "vocab"), vocab_) << r.body;
  EXPECT_TRUE(b->WaitForOutput("model " + digest.substr(0, 12) + " fetched from peers", 1000))
      << b->Output();
  {
    const std::string log = b->Output();
    const size_t at = log.find("model " + digest.substr(0, 12) + " fetched from peers");
    if (at != std::string::npos) {
      std::printf("B: %s\n", log.substr(at, log.find('\n', at) - at).c_str());
    }
  }
  EXPECT_TRUE(b->WaitForOutput("model file " + Sha256Hex(weights_).substr(0, 12) +
                                   " (weights.bin, 3145728 bytes) fetched "
                                   "from " +
                                   a->url(),
                               1000))
      << b->Output();
  EXPECT_TRUE(PathExists(b->data_dir() + "/models/trees/" + digest + "/tok/vocab.json"));
  // Once: the file was fetched a single time however many starts asked for it.
  const std::string out = b->Output();
  const std::string once = "model file " + Sha256Hex(weights_).substr(0, 12);
  EXPECT_EQ(out.find(once), out.rfind(once)) << out;
  // Both records list the model (B's from its disk now), seen through either node.
  EXPECT_TRUE(Eventually(
      [&] {
        auto nodes = json::parse(a->Call("GET", "/v1/nodes").body).at("nodes").as_array();
        int holders = 0;
        for (const auto& n : nodes) {
          for (const auto& m : n.at("models").as_array())
            holders += m.is_string() && m.as_string() == digest;
        }
        return holders == 2;
      },
      5000))
      << a->Call("GET", "/v1/nodes").body;

  // The route wants the cluster token, and a model file's sha256.
  const std::string target = "/v1/internal/models/" + Sha256Hex(weights_);
  EXPECT_EQ(a->Call("GET", target).status, 403);
  const std::string token = HmacSha256Hex(master_, "thaw cluster token v1");
  auto fetched = a->Call("GET", target, "", {{"X-Thaw-Cluster-Token", token}}, false);
  EXPECT_EQ(fetched.status, 200);
  EXPECT_EQ(Sha256Hex(fetched.body), Sha256Hex(weights_));
  EXPECT_EQ(a->Call("GET", "/v1/internal/models/" + std::string(64, '0'), "",
                    {{"X-Thaw-Cluster-Token", token}}, false)
                .status,
            404);
  EXPECT_EQ(a->Call("GET", "/v1/internal/models/nope", "", {{"X-Thaw-Cluster-Token", token}}, false)
                .status,
            400);
}

// Three nodes. A's copy of a model file is corrupt: B refuses A's bytes, C has none, and B's
// start fails naming the model and both peers. With C holding a good copy (fetched from A
// while A's was right, for a function of its own), B refuses A's bytes again and takes C's.
TEST_F(SharedTruthTest, PeerSendingOtherBytesIsRefusedAndTheNextAsked) {
  auto a = Node("a");
  auto b = Node("b");
  auto c = Node("c");
  ASSERT_TRUE(a && b && c);
  ASSERT_TRUE(
      Eventually([&] { return Members(*a, 3) && Members(*b, 3) && Members(*c, 3); }, 20000));
  const std::string digest = PushModel(*a);
  SetWeights(*a, /*corrupt=*/true);
  // `other` first, and B's try for its model (at the deploy, for the template) seen to fail
  // before anything else: a try still on its way when A's copy is put right below would take
  // A's good bytes, and B would have the model before it is meant to.
  ASSERT_EQ(a->Deploy("other", ModelReader("other")).status, 201);
  ASSERT_TRUE(b->WaitForOutput("no peer gave its file weights.bin", 10000)) << b->Output();
  ASSERT_EQ(a->Deploy("reader", ModelReader("reader")).status, 201);
  ASSERT_TRUE(
      Eventually([&] { return b->Call("GET", "/v1/functions/reader").status == 200; }, 1000));

  auto failed = OnB(*b);
  EXPECT_EQ(failed.status, 502) << failed.body;
  EXPECT_EQ(JsonField(failed.body, "errorType"), "Runtime.InitError") << failed.body;
  EXPECT_NE(failed.body.find("model digits:v1 of reader:1: digest " + digest +
                             " is not on this node and no peer gave its file weights.bin"),
            std::string::npos)
      << failed.body;
  EXPECT_NE(failed.body.find(a->url() + ": refused: sha256 mismatch"), std::string::npos)
      << failed.body;
  EXPECT_NE(failed.body.find(c->url() + ": HTTP 404"), std::string::npos) << failed.body;
  EXPECT_FALSE(PathExists(b->data_dir() + "/models/blobs/" + Sha256Hex(weights_)));
  EXPECT_FALSE(PathExists(b->data_dir() + "/models/trees/" + digest));

  SetWeights(*a, /*corrupt=*/false);
  ASSERT_TRUE(
      Eventually([&] { return c->Call("GET", "/v1/functions/other").status == 200; }, 1000));
  // C tried too, at the deploy (for the template): its failed start holds the next one off
  // for a second (init back-off).
  HttpResult on_c;
  ASSERT_TRUE(Eventually(
      [&] {
        on_c = c->Invoke("other");
        return on_c.status == 200;
      },
      15000))
      << on_c.body << c->Output();
  EXPECT_EQ(JsonField(on_c.body, "sha"), Sha256Hex(weights_));
  SetWeights(*a, /*corrupt=*/true);
  // B's record of C lists the model: both holders are asked, A (first by name) refused.
  ASSERT_TRUE(Eventually(
      [&] {
        const json::value nodes = json::parse(b->Call("GET", "/v1/nodes").body);
        for (const auto& n : nodes.at("nodes").as_array()) {
          if (n.at("name") != "c") continue;
          for (const auto& m : n.at("models").as_array()) {
            if (m.is_string() && m.as_string() == digest) return true;
          }
        }
        return false;
      },
      5000));
  // The failed start holds the next one off for a second (init back-off).
  HttpResult r;
  EXPECT_TRUE(Eventually(
      [&] {
        r = OnB(*b);
        return r.status == 200;
      },
      15000))
      << r.body << b->Output();
  EXPECT_EQ(JsonField(r.body, "sha"), Sha256Hex(weights_)) << r.body;
  // A was asked first each time (the holders in name order), and refused each time.
  const std::string out = b->Output(), refused = "from " + a->url() + " refused";
  size_t refusals = 0;
  for (size_t at = out.find(refused); at != std::string::npos; at = out.find(refused, at + 1)) {
    ++refusals;
  }
  EXPECT_GE(refusals, 2u) << out;
  EXPECT_TRUE(b->WaitForOutput("model file " + Sha256Hex(weights_).substr(0, 12) +
                                   " (weights.bin, 3145728 bytes) fetched "
                                   "from " +
                                   c->url(),
                               1000))
      << b->Output();
}

TEST_F(SharedTruthTest, KeyRevokedOnAIsRefusedByBWithinASecond) {
  auto a = Node("a");
  auto b = Node("b");
  ASSERT_TRUE(a && b);
  a->CreateTenant("acme");
  auto [id, secret] = a->CreateKey("acme");
  // The secret is derived from the shared master key: B accepts it once it heard of the key.
  ASSERT_TRUE(Eventually([&] { return WhoAmI(*b, secret) == 200; }, 1000));
  ASSERT_EQ(a->Call("DELETE", "/v1/keys/" + id).status, 204);
  const auto start = Clock::now();
  EXPECT_TRUE(Eventually([&] { return WhoAmI(*b, secret) == 401; }, 1000))
      << "B still accepts a key revoked on A after 1 s";
  std::printf("revocation on A refused by B after %lld ms\n",
              static_cast<long long>(MsSince(start)));
}

TEST_F(SharedTruthTest, TenantLimitChangeOnAIsSeenOnB) {
  auto a = Node("a");
  auto b = Node("b");
  ASSERT_TRUE(a && b);
  a->CreateTenant("acme", R"("concurrency":5)");
  ASSERT_TRUE(Eventually([&] { return b->Call("GET", "/v1/tenants/acme").status == 200; }, 1000));
  ASSERT_EQ(a->Call("PATCH", "/v1/tenants/acme", R"({"concurrency":2,"rate_per_second":7})").status,
            200);
  EXPECT_TRUE(Eventually(
      [&] {
        const json::value t = json::parse(b->Call("GET", "/v1/tenants/acme").body);
        return t.at("concurrency") == 2 && t.at("rate_per_second") == 7;
      },
      1000))
      << b->Call("GET", "/v1/tenants/acme").body;
}

// B's LISTEN connection is cut by the server: B reconnects, reads everything again, and a
// revocation made meanwhile still reaches it.
TEST_F(SharedTruthTest, ListenerReconnectsAndCatchesUp) {
  auto a = Node("a");
  auto b = Node("b");
  ASSERT_TRUE(a && b);
  a->CreateTenant("acme");
  auto [id, secret] = a->CreateKey("acme");
  ASSERT_TRUE(Eventually([&] { return WhoAmI(*b, secret) == 200; }, 1000));
  PGconn* conn = PQconnectdb(store_.c_str());
  ASSERT_EQ(PQstatus(conn), CONNECTION_OK) << PQerrorMessage(conn);
  PGresult* r = PQexec(conn,
                       "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE application_name = 'thaw-listen'");
  EXPECT_EQ(PQresultStatus(r), PGRES_TUPLES_OK) << PQresultErrorMessage(r);
  EXPECT_EQ(PQntuples(r), 2);  // A's and B's
  PQclear(r);
  PQfinish(conn);
  ASSERT_EQ(a->Call("DELETE", "/v1/keys/" + id).status, 204);
  EXPECT_TRUE(Eventually([&] { return WhoAmI(*b, secret) == 401; }, 3000));
  EXPECT_TRUE(b->WaitForOutput("store changes: listening again", 3000)) << b->Output();
}

}  // namespace
}  // namespace thaw::testing
