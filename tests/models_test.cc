// The model store against a real server: `thaw models push|ls|rm`, /v1/artifacts, dedup on
// disk, tenant scoping, bad digests, quota and size limits, and thaw.yaml's `models:` seen by
// real instances (read-only at the mount path, absent for functions that do not declare it,
// pinned to the digest a version was deployed with), prefetch in the deploy answer, and 8
// instances holding a mapped model file's pages once.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <boost/json.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>

#include "common/sha256.h"
#include "server_fixture.h"

namespace thaw::testing {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;

struct CliResult {
  int exit_code = -1;
  std::string out;  // stdout and stderr together
};

std::string Deterministic(size_t n, char seed) {
  std::string s(n, '\0');
  uint32_t x = static_cast<unsigned char>(seed) * 2654435761u + 1;
  for (char& c : s) {
    x = x * 1103515245u + 12345u;
    c = static_cast<char>(x >> 24);
  }
  return s;
}

class ModelsTest : public ServerTest {
 protected:
  void Start(std::vector<std::string> flags = {}) { server_ = ThawServer::Start(std::move(flags)); }

  // Runs the CLI with `key` (empty: the admin key from the data dir).
  CliResult Thaw(const std::string& args, const std::string& key = "") {
    std::string cmd = "THAW_SERVER=" + server_->url() + " THAW_DATA_DIR=" + server_->data_dir() +
                      (key.empty() ? "" : " THAW_API_KEY=" + key) + " " + THAW_BINARY + " " + args +
                      " 2>&1";
    CliResult r;
    FILE* p = ::popen(cmd.c_str(), "r");
    std::array<char, 4096> buf;
    size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
    int status = ::pclose(p);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
  }

  // A folder holding `files` (path -> content), removed after the test.
  std::string Folder(const std::map<std::string, std::string>& files) {
    dirs_.push_back(MakeBundle(files));
    return dirs_.back();
  }

  size_t Blobs() const {
    size_t n = 0;
    for (auto it = fs::directory_iterator(server_->data_dir() + "/models/blobs"); it != fs::end(it);
         ++it) {
      ++n;
    }
    return n;
  }

  HttpResult PutBlob(const std::string& sha, const std::string& bytes, const std::string& key = "",
                     const std::string& query = "") {
    Headers h;
    if (!key.empty()) h.emplace_back("Authorization", "Bearer " + key);
    return server_->Call("PUT", "/v1/artifacts/_blobs/" + sha + query, bytes, h, key.empty());
  }

  bool Jailed() const {
    return JsonField(server_->Call("GET", "/v1/node").body, "isolation").starts_with("jail");
  }
};

TEST_F(ModelsTest, PushDedupsAcrossTagsAndTenantsWithoutSharingNames) {
  Start();
  const std::string weights = Deterministic(300'000, 'w');
  const std::string dir = Folder({{"model.bin", weights}, {"tokenizer/vocab.json", "{\"a\": 1}"}});
  auto v1 = Thaw("models push digits:v1 " + dir);
  ASSERT_EQ(v1.exit_code, 0) << v1.out;
  EXPECT_NE(v1.out.find("pushed digits:v1 sha256:"), std::string::npos) << v1.out;
  EXPECT_NE(v1.out.find("model.bin: uploaded"), std::string::npos) << v1.out;
  EXPECT_EQ(Blobs(), 2u);
  // The same files again under another tag: nothing is sent, nothing stored twice.
  auto v2 = Thaw("models push digits:v2 " + dir);
  ASSERT_EQ(v2.exit_code, 0) << v2.out;
  EXPECT_NE(v2.out.find("already in the store"), std::string::npos) << v2.out;
  EXPECT_NE(v2.out.find("0 B uploaded"), std::string::npos) << v2.out;
  EXPECT_EQ(Blobs(), 2u);
  auto one = json::parse(server_->Call("GET", "/v1/artifacts/digits/v1").body).as_object();
  auto two = json::parse(server_->Call("GET", "/v1/artifacts/digits/v2").body).as_object();
  EXPECT_EQ(one.at("digest"), two.at("digest"));
  ASSERT_EQ(one.at("files").as_array().size(), 2u);
  EXPECT_EQ(one.at("files").as_array()[0].as_object().at("path"), "model.bin");
  EXPECT_EQ(one.at("files").as_array()[1].as_object().at("path"), "tokenizer/vocab.json");
  // A single file keeps its name.
  const std::string single = Folder({{"solo.onnx", "onnx bytes"}});
  ASSERT_EQ(Thaw("models push solo " + single + "/solo.onnx").exit_code, 0);
  auto ls = Thaw("models ls");
  EXPECT_NE(ls.out.find("digits"), std::string::npos) << ls.out;
  EXPECT_NE(ls.out.find("latest"), std::string::npos) << ls.out;  // solo's default tag

  // Tenant acme: its own names; the same bytes are stored once on disk.
  server_->CreateTenant("acme");
  const std::string acme = server_->CreateKey("acme").second;
  auto theirs = Thaw("models push digits:prod " + dir, acme);
  ASSERT_EQ(theirs.exit_code, 0) << theirs.out;
  // It had to send the bytes: it cannot learn that another tenant holds them.
  EXPECT_NE(theirs.out.find("model.bin: uploaded"), std::string::npos) << theirs.out;
  EXPECT_EQ(Blobs(), 3u);  // + solo.onnx; digits' two files shared
  Headers as_acme = {{"Authorization", "Bearer " + acme}};
  auto list = json::parse(server_->Call("GET", "/v1/artifacts", "", as_acme, false).body);
  ASSERT_EQ(list.at("models").as_array().size(), 1u) << list;
  EXPECT_EQ(list.at("models").as_array()[0].at("tag"), "prod");
  EXPECT_EQ(server_->Call("GET", "/v1/artifacts/solo", "", as_acme, false).status, 404);
  EXPECT_EQ(server_->Call("GET", "/v1/artifacts/digits/v1", "", as_acme, false).status, 404);
  EXPECT_EQ(server_->Call("GET", "/v1/artifacts/default.solo/latest", "", as_acme, false).status,
            404);
  EXPECT_EQ(
      server_->Call("HEAD", "/v1/artifacts/_blobs/" + Sha256Hex("onnx bytes"), "", as_acme, false)
          .status,
      404);
  // Naming a blob it never uploaded (another tenant's) in a model is refused.
  auto steal = server_->Call(
      "PUT", "/v1/artifacts/stolen/v1",
      R"({"files":[{"path":"x","sha256":")" + Sha256Hex("onnx bytes") + R"(","size":10}]})",
      {{"Authorization", "Bearer " + acme}}, false);
  EXPECT_EQ(steal.status, 400) << steal.body;
  // The admin sees acme's model by its full name.
  auto admin = server_->Call("GET", "/v1/artifacts/acme.digits/prod");
  EXPECT_EQ(admin.status, 200) << admin.body;
  // Bad input: clear errors, non-zero exits.
  auto bad = Thaw("models push 'bad name' " + dir);
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.out.find("NAME[:TAG]"), std::string::npos) << bad.out;
  auto missing = Thaw("models push x /nonexistent/path");
  EXPECT_NE(missing.exit_code, 0);
  auto nomodel = Thaw("models rm nothing:here");
  EXPECT_NE(nomodel.exit_code, 0);
  EXPECT_NE(nomodel.out.find("no model nothing:here"), std::string::npos) << nomodel.out;
}

TEST_F(ModelsTest, BadDigestQuotaAndSizeLimitsLeaveNothing) {
  Start({"--models-quota-bytes", "200000", "--max-model-file-bytes", "150000"});
  const std::string bytes = Deterministic(100'000, 'b');
  auto wrong = PutBlob(Sha256Hex("other bytes"), bytes);
  EXPECT_EQ(wrong.status, 400) << wrong.body;
  EXPECT_NE(wrong.body.find("sha256 mismatch"), std::string::npos) << wrong.body;
  EXPECT_EQ(Blobs(), 0u);
  EXPECT_TRUE(fs::is_empty(server_->data_dir() + "/models/tmp"));
  EXPECT_EQ(server_->Call("HEAD", "/v1/artifacts/_blobs/" + Sha256Hex("other bytes")).status, 404);
  EXPECT_EQ(PutBlob("XYZ", bytes).status, 400);
  // The CLI declares the sha256 it computed: a file that changes under it is refused too.
  auto list = json::parse(server_->Call("GET", "/v1/artifacts").body);
  EXPECT_EQ(list.at("used_bytes").as_int64(), 0);

  ASSERT_EQ(PutBlob(Sha256Hex(bytes), bytes).status, 201);
  EXPECT_EQ(PutBlob(Sha256Hex(bytes), bytes).status, 201);  // held already: adds nothing
  const std::string more = Deterministic(120'000, 'm');
  auto over = PutBlob(Sha256Hex(more), more);
  EXPECT_EQ(over.status, 507) << over.body;
  EXPECT_NE(over.body.find("models_quota_bytes"), std::string::npos) << over.body;
  const std::string huge = Deterministic(160'000, 'h');
  auto too_big = PutBlob(Sha256Hex(huge), huge);
  EXPECT_EQ(too_big.status, 413) << too_big.body;
  EXPECT_EQ(Blobs(), 1u);
  // A file list naming what was never uploaded, or malformed, is refused; nothing is tagged.
  auto unknown = server_->Call(
      "PUT", "/v1/artifacts/m/v1",
      R"({"files":[{"path":"a","sha256":")" + Sha256Hex(more) + R"(","size":120000}]})");
  EXPECT_EQ(unknown.status, 400) << unknown.body;
  auto escape = server_->Call(
      "PUT", "/v1/artifacts/m/v1",
      R"({"files":[{"path":"../a","sha256":")" + Sha256Hex(bytes) + R"(","size":100000}]})");
  EXPECT_EQ(escape.status, 400) << escape.body;
  EXPECT_EQ(server_->Call("PUT", "/v1/artifacts/m/v1", "not json").status, 400);
  EXPECT_EQ(server_->Call("GET", "/v1/artifacts/m").status, 404);
  auto cli = Thaw("models push big " + Folder({{"big.bin", huge}}));
  EXPECT_NE(cli.exit_code, 0);
  EXPECT_NE(cli.out.find("max_model_file_bytes"), std::string::npos) << cli.out;
}

// Instances see the files read-only at the mount, a function without `models:` does not, a
// version keeps the files it was deployed with when the tag moves, and removal waits.
TEST_F(ModelsTest, MountsAreReadOnlyPinnedAndOnlyForDeclarers) {
  Start();
  const std::string v1 = Folder({{"weights.txt", "first"}, {"sub/info.txt", "nested"}});
  ASSERT_EQ(Thaw("models push digits:v3 " + v1).exit_code, 0);
  const std::string reader =
      "import os\n"
      "def handler(event, context):\n"
      "    d = os.environ['THAW_MODEL_DIGITS']\n"
      "    out = {'dir': d, 'weights': open(os.path.join(d, 'weights.txt')).read(),\n"
      "           'info': open(os.path.join(d, 'sub/info.txt')).read()}\n"
      "    try:\n"
      "        open(os.path.join(d, 'weights.txt'), 'w').write('changed')\n"
      "        out['write'] = 'allowed'\n"
      "    except OSError as e:\n"
      "        out['write'] = e.strerror\n"
      "    try:\n"
      "        open(os.path.join(d, 'new.txt'), 'w').write('x')\n"
      "        out['create'] = 'allowed'\n"
      "    except OSError as e:\n"
      "        out['create'] = e.strerror\n"
      "    return out\n";
  const std::string reader_dir = PythonBundle(
      "reader", reader, "models: [{name: digits, tag: v3, mount: /opt/models/digits}]\n");
  dirs_.push_back(reader_dir);
  auto deployed = server_->Deploy("reader", reader_dir);
  ASSERT_EQ(deployed.status, 201) << deployed.body;
  auto d = json::parse(deployed.body).as_object();
  ASSERT_TRUE(d.contains("prefetch_ms")) << deployed.body;
  const auto& m = d.at("models").as_array()[0].as_object();
  EXPECT_EQ(m.at("bytes").as_int64(), 11);  // "first" + "nested"
  EXPECT_EQ(m.at("files").as_int64(), 2);
  EXPECT_EQ(m.at("mount"), "/opt/models/digits");
  auto r = server_->Invoke("reader");
  ASSERT_EQ(r.status, 200) << r.body;
  auto got = json::parse(r.body).as_object();
  EXPECT_EQ(got.at("weights"), "first");
  EXPECT_EQ(got.at("info"), "nested");
  const bool jailed = Jailed();
  if (jailed) {
    EXPECT_EQ(got.at("dir"), "/opt/models/digits");
    EXPECT_EQ(got.at("write"), "Read-only file system") << r.body;
    EXPECT_EQ(got.at("create"), "Read-only file system") << r.body;
  } else {
    std::printf("not jailed: the model is the store's folder %s\n",
                std::string(got.at("dir").as_string()).c_str());
  }
  DeployPython("other",
               "import os\n"
               "def handler(event, context):\n"
               "    return {'mounted': os.path.exists('/opt/models/digits'),\n"
               "            'env': [k for k in os.environ if k.startswith('THAW_MODEL_')]}\n");
  auto o = json::parse(server_->Invoke("other").body).as_object();
  EXPECT_EQ(o.at("env").as_array().size(), 0u);
  if (jailed) {
    EXPECT_EQ(o.at("mounted"), false);
  }

  // The tag moves: version 1 keeps its files; a new deploy gets the new ones.
  ASSERT_EQ(Thaw("models push digits:v3 " +
                 Folder({{"weights.txt", "second"}, {"sub/info.txt", "nested"}}))
                .exit_code,
            0);
  EXPECT_EQ(JsonField(server_->Invoke("reader").body, "weights"), "first");
  ASSERT_EQ(server_->Deploy("reader", reader_dir).status, 201);
  EXPECT_EQ(JsonField(server_->Invoke("reader").body, "weights"), "second");
  EXPECT_EQ(JsonField(server_->Invoke("reader", "{}", "1").body, "weights"), "first");

  // Removal waits for the versions that use the tag.
  auto busy = Thaw("models rm digits:v3");
  EXPECT_NE(busy.exit_code, 0);
  EXPECT_NE(busy.out.find("HTTP 409"), std::string::npos) << busy.out;
  EXPECT_NE(busy.out.find("reader version 1"), std::string::npos) << busy.out;
  ASSERT_EQ(server_->Call("DELETE", "/v1/functions/reader").status, 204);
  auto rm = Thaw("models rm digits:v3");
  EXPECT_EQ(rm.exit_code, 0) << rm.out;
  EXPECT_EQ(Blobs(), 0u);  // nothing else names those files

  // A model that is not in the store is a 400 naming the field; nothing is deployed.
  dirs_.push_back(
      PythonBundle("ghost", reader, "models: [{name: nothing, tag: v9, mount: /opt/models/x}]\n"));
  auto ghost = server_->Deploy("ghost", dirs_.back());
  EXPECT_EQ(ghost.status, 400) << ghost.body;
  EXPECT_NE(ghost.body.find("models[0]"), std::string::npos) << ghost.body;
  EXPECT_EQ(server_->Call("GET", "/v1/functions/ghost").status, 404);
}

// 8 instances that map the same model file hold its pages once: each instance's mapping is
// Shared_Clean and their proportional shares (Pss) add up to about one copy.
TEST_F(ModelsTest, EightInstancesHoldTheModelPagesOnce) {
  Start();
  constexpr int64_t kSize = 32 << 20;
  ASSERT_EQ(
      Thaw("models push blob:v1 " + Folder({{"model.bin", Deterministic(kSize, 's')}})).exit_code,
      0);
  // Each call maps the model, touches every page, then waits (up to 60 s) until 8 processes
  // map it (its Pss for the mapping falls to about an eighth), and reports the mapping's
  // smaps figures in KiB.
  DeployPython("share",
               "import mmap, os, time\n"
               "PATH = os.path.join(os.environ['THAW_MODEL_BLOB'], 'model.bin')\n"
               "f = open(PATH, 'rb')\n"
               "M = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)\n"
               "def mapping():\n"
               "    out, inside = {}, False\n"
               "    for line in open('/proc/self/smaps'):\n"
               "        parts = line.split()\n"
               "        if not parts[0].endswith(':'):\n"
               "            inside = parts[-1].endswith('model.bin')\n"
               "        elif inside and len(parts) > 1 and parts[1].isdigit():\n"
               "            out[parts[0][:-1]] = out.get(parts[0][:-1], 0) + int(parts[1])\n"
               "    return out\n"
               "def handler(event, context):\n"
               "    total = 0\n"
               "    for off in range(0, len(M), 4096): total += M[off]\n"
               "    deadline = time.time() + 60\n"
               "    m = mapping()\n"
               "    while time.time() < deadline and m.get('Pss', 0) * 7 > m.get('Rss', 1):\n"
               "        time.sleep(0.02)\n"
               "        m = mapping()\n"
               "    return m\n",
               "memory_mb: 256\ntimeout_s: 120\nmax_instances: 8\n"
               "models: [{name: blob, tag: v1, mount: /opt/models/blob}]\n");
  std::vector<std::future<HttpResult>> calls;
  for (int i = 0; i < 8; ++i) {
    calls.push_back(std::async(std::launch::async, [&] { return server_->Invoke("share"); }));
  }
  int64_t pss_kb = 0;
  for (auto& c : calls) {
    HttpResult r = c.get();
    ASSERT_EQ(r.status, 200) << r.body;
    auto m = json::parse(r.body).as_object();
    ASSERT_TRUE(m.contains("Rss")) << r.body;
    EXPECT_GE(m.at("Rss").as_int64(), kSize / 1024 * 9 / 10) << r.body;
    EXPECT_GE(m.at("Shared_Clean").as_int64(), kSize / 1024 * 9 / 10) << r.body;
    EXPECT_EQ(m.at("Private_Dirty").as_int64(), 0) << r.body;
    pss_kb += m.at("Pss").as_int64();
  }
  std::printf("8 instances: the model's Pss adds up to %.1f MiB for a %.1f MiB file\n",
              pss_kb / 1024.0, kSize / 1048576.0);
  EXPECT_LE(pss_kb, kSize / 1024 * 13 / 10);
}

}  // namespace
}  // namespace thaw::testing
