// thaw_gpu, the model loader shipped with the python3 runtime (runtimes/python3/lib): its own
// tests (tests/python/thaw_gpu_test.py) under Debian's python3 and torch, and a real function
// that loads a model from the store by name, with no plumbing of its own, from files this
// test writes byte by byte after the safetensors spec (not with the module it tests). On the
// CPU: the CUDA path is measured by scripts/gpu-check.sh on a GPU machine.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "server_fixture.h"

namespace thaw::testing {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;

constexpr char kPython[] = "/usr/bin/python3";

// Why thaw_gpu cannot run here (no python3 or no torch in it), or "".
std::string NoTorch() {
  if (!fs::exists(kPython)) return std::string(kPython) + " is missing";
  const std::vector<std::string> env = {"PATH=/usr/bin:/bin"};
  ProcessResult r = RunProcess({kPython, "-c", "import torch"}, &env);
  return r.exit_code == 0 ? "" : std::string(kPython) + " has no torch: " + r.err;
}

template <typename T>
std::string Bytes(std::initializer_list<T> values) {
  std::string out(values.size() * sizeof(T), '\0');
  std::memcpy(out.data(), std::data(values), out.size());  // little-endian host, as the spec
  return out;
}

// A safetensors file: u64 LE header length, the JSON header padded with spaces to 8 bytes,
// then the data. `entries`: {name, dtype, shape JSON, bytes}, laid out in this order.
struct Entry {
  std::string name, dtype, shape, bytes;
};
std::string SafetensorsFile(const std::vector<Entry>& entries) {
  std::string header = "{\"__metadata__\":{\"format\":\"pt\"}", data;
  for (const Entry& e : entries) {
    header += ",\"" + e.name + "\":{\"dtype\":\"" + e.dtype + "\",\"shape\":" + e.shape +
              ",\"data_offsets\":[" + std::to_string(data.size()) + "," +
              std::to_string(data.size() + e.bytes.size()) + "]}";
    data += e.bytes;
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');
  uint64_t n = header.size();
  return Bytes<uint64_t>({n}) + header + data;
}

TEST(ThawGpuModule, PassesItsPythonTestsOnTheCpu) {
  if (std::string why = NoTorch(); !why.empty()) GTEST_SKIP() << why;
  const std::vector<std::string> env = {
      "PATH=/usr/bin:/bin", "HOME=/tmp", "PYTHONDONTWRITEBYTECODE=1",
      "THAW_GPU_LIB=" + std::string(THAW_SOURCE_DIR) + "/runtimes/python3/lib"};
  ProcessResult r = RunProcess({kPython, "-W", "error::ResourceWarning",
                                std::string(THAW_SOURCE_DIR) + "/tests/python/thaw_gpu_test.py"},
                               &env);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  // unittest reports on stderr; a run that found no test must not pass.
  EXPECT_NE(r.err.find("\nOK"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("Ran 0 tests"), std::string::npos) << r.err;
}

TEST(ThawGpuModule, FunctionLoadsAStoreModelByName) {
  if (std::string why = NoTorch(); !why.empty()) GTEST_SKIP() << why;
  auto server = ThawServer::Start({"--init-timeout-ms", "120000", "--queue-timeout-ms", "120000"});
  // Two shards, one in a subfolder; the F32 after a 3-byte BOOL sits unaligned (a copy).
  const std::string model = MakeBundle(
      {{"model-1.safetensors",
        SafetensorsFile({{"mask", "BOOL", "[3]", std::string("\1\0\1", 3)},
                         {"w", "F32", "[2,3]", Bytes<float>({0, 0.5, 1, 1.5, 2, -2.5})},
                         {"ids", "I64", "[4]", Bytes<int64_t>({-1, 0, 7, int64_t{1} << 40})},
                         {"half", "F16", "[2]", Bytes<uint16_t>({0x3C00, 0xC000})},
                         {"scalar", "I32", "[]", Bytes<int32_t>({-9})}})},
       {"more/model-2.safetensors",
        SafetensorsFile({{"extra", "U8", "[1,5]", Bytes<uint8_t>({1, 2, 3, 4, 255})}})},
       {"config.json", "{}"}});
  const std::vector<std::string> env = {"THAW_SERVER=" + server->url(),
                                        "THAW_API_KEY=" + server->key(), "PATH=/usr/bin:/bin"};
  auto push = RunProcess({THAW_BINARY, "models", "push", "my-weights:v1", model}, &env);
  ASSERT_EQ(push.exit_code, 0) << push.out << push.err;

  const std::string code =
      "import thaw_gpu\n"
      "def handler(event, context):\n"
      "    stats = {}\n"
      "    t = thaw_gpu.load(event.get('name', 'my-weights'), device='cpu',\n"
      "                      chunk_bytes=event.get('chunk', 1 << 20), stats=stats)\n"
      "    return {'module': thaw_gpu.__file__, 'stats': stats,\n"
      "            'tensors': {k: [str(v.dtype), list(v.shape), v.flatten().tolist()]\n"
      "                        for k, v in t.items()}}\n";
  const std::string bundle =
      PythonBundle("loader", code,
                   "memory_mb: 1024\ntimeout_s: 60\n"
                   "models: [{name: my-weights, tag: v1, mount: /opt/models/weights}]\n");
  auto d = server->Deploy("loader", bundle);
  ASSERT_EQ(d.status, 201) << d.body;
  const bool jailed =
      JsonField(server->Call("GET", "/v1/node").body, "isolation").starts_with("jail");
  for (int chunk : {5, 1 << 20}) {
    auto r = server->Invoke("loader", "{\"chunk\": " + std::to_string(chunk) + "}");
    ASSERT_EQ(r.status, 200) << r.body;
    json::object got = json::parse(r.body).as_object();
    // The runtime's copy, whether jailed (the runtimes folder at /opt/thaw) or not.
    EXPECT_TRUE(std::string(got.at("module").as_string())
                    .ends_with(jailed ? "/opt/thaw/python3/lib/thaw_gpu.py"
                                      : "/runtimes/python3/lib/thaw_gpu.py"))
        << got.at("module");
    const json::object& stats = got.at("stats").as_object();
    EXPECT_EQ(stats.at("files").as_int64(), 2);
    EXPECT_EQ(stats.at("bytes").as_int64(), 3 + 24 + 32 + 4 + 4 + 5);
    EXPECT_EQ(stats.at("chunks").as_int64(), chunk == 5 ? 14 + 1 : 2) << chunk;
    EXPECT_EQ(got.at("tensors"), json::parse(R"({
                "mask": ["torch.bool", [3], [true, false, true]],
                "w": ["torch.float32", [2, 3], [0.0, 0.5, 1.0, 1.5, 2.0, -2.5]],
                "ids": ["torch.int64", [4], [-1, 0, 7, 1099511627776]],
                "half": ["torch.float16", [2], [1.0, -2.0]],
                "scalar": ["torch.int32", [], [-9]],
                "extra": ["torch.uint8", [1, 5], [1, 2, 3, 4, 255]]})"))
        << r.body;
  }
  // A name the function did not declare: a clear error naming the variable.
  auto bad = server->Invoke("loader", R"({"name": "other"})");
  EXPECT_EQ(bad.status, 502);
  EXPECT_EQ(JsonField(bad.body, "errorType"), "FileNotFoundError") << bad.body;
  EXPECT_NE(bad.body.find("THAW_MODEL_OTHER is unset"), std::string::npos) << bad.body;
  RemoveDir(bundle);
  RemoveDir(model);
}

// scripts/gpu-check.sh cannot run here past finding a GPU, but it must parse, refuse what it
// does not know, and its CPU part (--loader-cpu: both loaders on the same weights, results
// compared tensor by tensor) must run.
TEST(GpuCheckScript, ParsesAndItsCpuPartRuns) {
  const std::string script = std::string(THAW_SOURCE_DIR) + "/scripts/gpu-check.sh";
  // No __pycache__ left in the source tree.
  const std::vector<std::string> env = {"PATH=/usr/bin:/bin", "HOME=/tmp",
                                        "PYTHONDONTWRITEBYTECODE=1"};
  ProcessResult syntax = RunProcess({"/bin/bash", "-n", script}, &env);
  EXPECT_EQ(syntax.exit_code, 0) << syntax.err;
  ProcessResult bad = RunProcess({"/bin/bash", script, "--nope"}, &env);
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("unknown argument --nope"), std::string::npos) << bad.err;
  if (std::string why = NoTorch(); !why.empty()) GTEST_SKIP() << why;
  std::vector<std::string> small = env;
  small.push_back("GPU_CHECK_LOAD_GB=0.01");  // one 32 MiB matrix and its norm vector
  ProcessResult cpu = RunProcess({"/bin/bash", script, "--loader-cpu"}, &small);
  ASSERT_EQ(cpu.exit_code, 0) << cpu.out << cpu.err;
  const std::string line = cpu.out.substr(cpu.out.find('{'));
  json::object got = json::parse(line).as_object();
  EXPECT_EQ(got.at("device"), "cpu");
  EXPECT_EQ(got.at("equal"), true) << line;
  EXPECT_EQ(got.at("tensors").as_int64(), 2) << line;
  EXPECT_EQ(got.at("bytes").as_int64(), (4096 * 4096 + 4096) * 2) << line;
  EXPECT_GT(got.at("thaw_gbps").as_double(), 0) << line;
  EXPECT_GT(got.at("torch_load_gbps").as_double(), 0) << line;
}

}  // namespace
}  // namespace thaw::testing
