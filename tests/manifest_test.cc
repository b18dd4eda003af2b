// ParseManifest (registry/manifest.h): thaw.yaml is untrusted input from an uploaded bundle.
// Valid files parse to the expected values; every malformed one is InvalidArgument naming the
// field. ManifestToJson/ManifestFromJson round-trip what the store keeps.
#include "registry/manifest.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <map>
#include <ostream>
#include <string>
#include <vector>

namespace thaw::registry {
namespace {

constexpr const char* kFallback = "fallback-fn";

StatusOr<Manifest> Parse(const std::string& yaml) { return ParseManifest(yaml, kFallback); }

TEST(ManifestTest, FullValidManifest) {
  auto m = Parse(R"yaml(
name: resize_images-2
runtime: python3.12
handler: app.main.handler
memory_mb: 512
timeout_s: 2.5
concurrency: 4
min_instances: 1
max_instances: 20
idle_timeout_s: 60
environment:
  BUCKET: photos
  RETRIES: 3
  DEBUG: true
  _PRIVATE_1: ""
)yaml");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->name, "resize_images-2");
  EXPECT_EQ(m->runtime, Runtime::kPython3);
  EXPECT_EQ(m->handler, "app.main.handler");
  EXPECT_EQ(m->memory_mb, 512);
  EXPECT_EQ(m->timeout_ms, 2500);
  EXPECT_EQ(m->concurrency, 4);
  EXPECT_EQ(m->min_instances, 1);
  EXPECT_EQ(m->max_instances, 20);
  EXPECT_EQ(m->idle_timeout_s, 60);
  std::map<std::string, std::string> env = {
      {"BUCKET", "photos"}, {"RETRIES", "3"}, {"DEBUG", "true"}, {"_PRIVATE_1", ""}};
  EXPECT_EQ(m->environment, env);
}

TEST(ManifestTest, SchedulesOneOrAListWithCatchUpAndTheirErrors) {
  auto one = Parse("runtime: provided\nschedule: rate(5 minutes)\n");
  ASSERT_TRUE(one.ok()) << one.status().message();
  EXPECT_EQ(one->schedules, std::vector<std::string>{"rate(5 minutes)"});
  EXPECT_TRUE(one->catch_up);
  auto list = Parse(
      "runtime: provided\nschedule:\n  - rate(1 hour)\n  - cron(0 12 ? * MON-FRI *)\n"
      "catch_up: false\n");
  ASSERT_TRUE(list.ok()) << list.status().message();
  EXPECT_EQ(list->schedules,
            (std::vector<std::string>{"rate(1 hour)", "cron(0 12 ? * MON-FRI *)"}));
  EXPECT_FALSE(list->catch_up);
  // Stored and read back.
  auto back = ManifestFromJson(ManifestToJson(*list));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->schedules, list->schedules);
  EXPECT_FALSE(back->catch_up);
  struct Case {
    const char* yaml;
    const char* needle;
  } cases[] = {
      {"runtime: provided\nschedule: every day\n", "field 'schedule': schedule 'every day'"},
      {"runtime: provided\nschedule: [rate(2 minute)]\n", "plural"},
      {"runtime: provided\nschedule: {a: 1}\n", "field 'schedule'"},
      {"runtime: provided\nschedule: [rate(1 day), rate(1 day)]\n", "more than once"},
      {"runtime: provided\ncatch_up: maybe\n", "field 'catch_up': must be true or false"},
  };
  for (const auto& c : cases) {
    auto m = Parse(c.yaml);
    ASSERT_FALSE(m.ok()) << c.yaml;
    EXPECT_NE(m.status().message().find(c.needle), std::string::npos)
        << c.yaml << ": " << m.status().message();
  }
}

TEST(ManifestTest, DefaultsAndFallbackName) {
  auto m = Parse("runtime: provided\n");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  Manifest want;
  EXPECT_EQ(m->name, kFallback);
  EXPECT_EQ(m->runtime, Runtime::kProvided);
  EXPECT_EQ(m->handler, "");
  EXPECT_EQ(m->memory_mb, 128);
  EXPECT_EQ(m->timeout_ms, 3000);
  EXPECT_EQ(m->concurrency, 1);
  EXPECT_EQ(m->min_instances, 0);
  EXPECT_EQ(m->max_instances, 8);
  EXPECT_EQ(m->idle_timeout_s, 300);
  EXPECT_TRUE(m->environment.empty());
  EXPECT_EQ(m->network, Network::kEgress);
  EXPECT_EQ(m->memory_mb, want.memory_mb);
  EXPECT_EQ(m->timeout_ms, want.timeout_ms);
  EXPECT_EQ(m->ephemeral_storage_mb, 512);  // Lambda's default /tmp
}

TEST(ManifestTest, EphemeralStorageIsKeptAndStored) {
  auto m = Parse("runtime: provided\nephemeral_storage_mb: 10240\n");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->ephemeral_storage_mb, 10240);
  auto back = ManifestFromJson(ManifestToJson(*m));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->ephemeral_storage_mb, 10240);
  Manifest bad = *m;
  bad.ephemeral_storage_mb = 100;
  Status st = CheckManifest(bad);
  EXPECT_NE(st.message().find("ephemeral_storage_mb"), std::string::npos) << st.ToString();
}

// keep_alive: adaptive by default; an idle_timeout_s of seconds alone overrides it (fixed);
// beside keep_alive: adaptive it is only the fallback window; `idle_timeout_s: auto` is adaptive.
TEST(ManifestTest, KeepAliveModes) {
  struct Case {
    std::string yaml;
    KeepAlive keep_alive;
    int64_t idle_timeout_s;
  };
  const std::vector<Case> cases = {
      {"", KeepAlive::kAdaptive, 300},
      {"keep_alive: adaptive\n", KeepAlive::kAdaptive, 300},
      {"keep_alive: fixed\n", KeepAlive::kFixed, 300},
      {"idle_timeout_s: 60\n", KeepAlive::kFixed, 60},
      {"idle_timeout_s: 60\nkeep_alive: adaptive\n", KeepAlive::kAdaptive, 60},
      {"keep_alive: fixed\nidle_timeout_s: 0\n", KeepAlive::kFixed, 0},
      {"idle_timeout_s: auto\n", KeepAlive::kAdaptive, 300},
      {"idle_timeout_s: auto\nkeep_alive: adaptive\n", KeepAlive::kAdaptive, 300},
  };
  for (const Case& c : cases) {
    auto m = Parse("runtime: cpp\n" + c.yaml);
    ASSERT_TRUE(m.ok()) << c.yaml << m.status().ToString();
    EXPECT_EQ(m->keep_alive, c.keep_alive) << c.yaml;
    EXPECT_EQ(m->idle_timeout_s, c.idle_timeout_s) << c.yaml;
  }
}

// Versions stored before keep_alive existed kept their idle_timeout_s: they stay fixed.
TEST(ManifestJsonTest, StoredManifestWithoutKeepAliveIsFixed) {
  Manifest m;
  m.name = "old";
  m.runtime = Runtime::kCpp;
  boost::json::object o = ManifestToJsonObject(m);
  ASSERT_EQ(o.at("keep_alive").as_string(), "adaptive");
  o.erase("keep_alive");
  auto back = ManifestFromJson(boost::json::serialize(o));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->keep_alive, KeepAlive::kFixed);
}

TEST(ManifestTest, NameInFileOverridesFallback) {
  auto m = ParseManifest("name: from-file\nruntime: cpp\n", "from-request");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->name, "from-file");
}

TEST(ManifestTest, EmptyEnvironmentIsAllowed) {
  auto m = Parse("runtime: cpp\nenvironment:\n");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_TRUE(m->environment.empty());
}

TEST(ManifestTest, BoundaryValuesAreAccepted) {
  auto low = Parse(
      "runtime: cpp\nmemory_mb: 64\ntimeout_s: 0.001\nconcurrency: 1\nmin_instances: 0\n"
      "max_instances: 1\nidle_timeout_s: 0\n");
  ASSERT_TRUE(low.ok()) << low.status().ToString();
  EXPECT_EQ(low->memory_mb, 64);
  EXPECT_EQ(low->timeout_ms, 1);
  EXPECT_EQ(low->idle_timeout_s, 0);
  auto high = Parse(
      "runtime: cpp\nmemory_mb: 10240\ntimeout_s: 900\nconcurrency: 1000\nmin_instances: 1000\n"
      "max_instances: 1000\nidle_timeout_s: 86400\n");
  ASSERT_TRUE(high.ok()) << high.status().ToString();
  EXPECT_EQ(high->memory_mb, 10240);
  EXPECT_EQ(high->timeout_ms, 900'000);
  EXPECT_EQ(high->concurrency, 1000);
  EXPECT_EQ(high->idle_timeout_s, 86400);
}

// ---------------------------------------------------------------------------------------------
// Runtime names: thaw's own and the Lambda spellings that map onto them.

struct RuntimeCase {
  std::string name;
  std::string yaml_runtime;
  Runtime want;
};

void PrintTo(const RuntimeCase& c, std::ostream* os) { *os << c.yaml_runtime; }

class RuntimeNameTest : public ::testing::TestWithParam<RuntimeCase> {};

TEST_P(RuntimeNameTest, Maps) {
  const RuntimeCase& c = GetParam();
  auto m = Parse("runtime: " + c.yaml_runtime + "\nhandler: app.handler\n");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->runtime, c.want);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, RuntimeNameTest,
    ::testing::Values(RuntimeCase{"Python3", "python3", Runtime::kPython3},
                      RuntimeCase{"LambdaPython311", "python3.11", Runtime::kPython3},
                      RuntimeCase{"LambdaNodejs20", "nodejs20.x", Runtime::kNodejs},
                      RuntimeCase{"LambdaPython313", "python3.13", Runtime::kPython3},
                      RuntimeCase{"Provided", "provided", Runtime::kProvided},
                      RuntimeCase{"LambdaProvidedAl2", "provided.al2", Runtime::kProvided},
                      RuntimeCase{"LambdaProvidedAl2023", "provided.al2023", Runtime::kProvided},
                      RuntimeCase{"Cpp", "cpp", Runtime::kCpp}),
    [](const ::testing::TestParamInfo<RuntimeCase>& info) { return info.param.name; });

TEST(ManifestTest, NetworkIsEgressOrNone) {
  const std::string py = "runtime: python3\nhandler: app.handler\n";
  auto none = Parse(py + "network: none\n");
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_EQ(none->network, Network::kNone);
  auto egress = Parse(py + "network: egress\n");
  ASSERT_TRUE(egress.ok()) << egress.status().ToString();
  EXPECT_EQ(egress->network, Network::kEgress);
  EXPECT_STREQ(NetworkName(Network::kNone), "none");
  EXPECT_STREQ(NetworkName(Network::kEgress), "egress");
}

TEST(ManifestTest, OpenAiModelsAndKind) {
  const std::string py = "runtime: python3\nhandler: app.handler\n";
  auto none = Parse(py);
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_TRUE(none->openai.models.empty());
  auto chat = Parse(py + "openai: {models: [tiny-chat, org/m:1], kind: chat}\n");
  ASSERT_TRUE(chat.ok()) << chat.status().ToString();
  EXPECT_EQ(chat->openai.models, (std::vector<std::string>{"tiny-chat", "org/m:1"}));
  EXPECT_EQ(chat->openai.kind, OpenAiKind::kChat);
  auto embed = Parse(py + "openai:\n  models: [tiny-embed]\n  kind: embeddings\n");
  ASSERT_TRUE(embed.ok()) << embed.status().ToString();
  EXPECT_EQ(embed->openai.kind, OpenAiKind::kEmbeddings);
  EXPECT_EQ(embed->openai.dimensions, 0);
  auto sized = Parse(py + "openai: {models: [e], kind: embeddings, dimensions: 64}\n");
  ASSERT_TRUE(sized.ok()) << sized.status().ToString();
  EXPECT_EQ(sized->openai.dimensions, 64);
  auto sized_back = ManifestFromJson(ManifestToJson(*sized));
  ASSERT_TRUE(sized_back.ok()) << sized_back.status().ToString();
  EXPECT_EQ(sized_back->openai.dimensions, 64);
  auto back = ManifestFromJson(ManifestToJson(*chat));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->openai.models, chat->openai.models);
  EXPECT_EQ(back->openai.kind, OpenAiKind::kChat);
  EXPECT_STREQ(OpenAiKindName(OpenAiKind::kCompletions), "completions");
}

TEST(ManifestTest, GpuAsCountOrMapping) {
  const std::string py = "runtime: python3\nhandler: app.handler\n";
  auto none = Parse(py);
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_EQ(none->gpu.count, 0);
  auto zero = Parse(py + "gpu: 0\n");  // the form thaw.yaml had before GPUs were scheduled
  ASSERT_TRUE(zero.ok()) << zero.status().ToString();
  EXPECT_EQ(zero->gpu.count, 0);
  auto two = Parse(py + "gpu: 2\n");
  ASSERT_TRUE(two.ok()) << two.status().ToString();
  EXPECT_EQ(two->gpu.count, 2);
  EXPECT_EQ(two->gpu.memory_gb, 0);
  EXPECT_EQ(two->gpu.kind, "");
  auto full = Parse(py + "gpu: {count: 1, memory_gb: 80, kind: \"H200\"}\n");
  ASSERT_TRUE(full.ok()) << full.status().ToString();
  EXPECT_EQ(full->gpu.count, 1);
  EXPECT_EQ(full->gpu.memory_gb, 80);
  EXPECT_EQ(full->gpu.kind, "H200");
}

TEST(ManifestTest, BatchSizeAndWait) {
  const std::string py = "runtime: python3\nhandler: app.handler\n";
  auto none = Parse(py);
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_EQ(none->batch.max_size, 1);
  EXPECT_FALSE(none->batch.enabled());
  auto batch = Parse(py + "batch: {max_size: 16, max_wait_ms: 5}\n");
  ASSERT_TRUE(batch.ok()) << batch.status().ToString();
  EXPECT_EQ(batch->batch.max_size, 16);
  EXPECT_EQ(batch->batch.max_wait_ms, 5);
  EXPECT_TRUE(batch->batch.enabled());
  auto no_wait = Parse(py + "batch:\n  max_size: 8\n");
  ASSERT_TRUE(no_wait.ok()) << no_wait.status().ToString();
  EXPECT_EQ(no_wait->batch.max_wait_ms, 0);
  auto back = ManifestFromJson(ManifestToJson(*batch));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->batch.max_size, 16);
  EXPECT_EQ(back->batch.max_wait_ms, 5);
  Manifest bad = *batch;
  bad.batch.max_size = 0;
  EXPECT_FALSE(CheckManifest(bad).ok());
}

TEST(ManifestTest, RuntimeNamesRoundTripThroughRuntimeName) {
  EXPECT_STREQ(RuntimeName(Runtime::kPython3), "python3");
  EXPECT_STREQ(RuntimeName(Runtime::kProvided), "provided");
  EXPECT_STREQ(RuntimeName(Runtime::kCpp), "cpp");
}

// ---------------------------------------------------------------------------------------------
// Errors: each is InvalidArgument and names the field (and, where useful, the reason).

struct ErrorCase {
  std::string name;
  std::string yaml;
  std::string field;   // must appear as 'field' in the message
  std::string reason;  // a further substring of the message; empty: not checked
  std::string fallback_name = kFallback;
};

void PrintTo(const ErrorCase& c, std::ostream* os) { *os << c.name << ": " << c.yaml; }

// An `environment:` block of `n` variables V0..V(n-1), each "xxxxx".
std::string ManyVariables(int n) {
  std::string yaml = "environment:\n";
  for (int i = 0; i < n; ++i) yaml += "  V" + std::to_string(i) + ": xxxxx\n";
  return yaml;
}

std::vector<ErrorCase> ErrorCases() {
  const std::string py = "runtime: python3\nhandler: app.handler\n";
  return {
      {"UnknownKey", py + "colour: blue\n", "colour", "unknown key"},
      {"MisspelledKey", py + "memory: 256\n", "memory", "unknown key"},
      {"MemoryNotANumber", py + "memory_mb: lots\n", "memory_mb", "must be an integer"},
      {"MemoryFraction", py + "memory_mb: 128.5\n", "memory_mb", "must be an integer"},
      {"MemoryIsAList", py + "memory_mb: [128]\n", "memory_mb", "must be an integer"},
      {"MemoryIsAMap", py + "memory_mb: {a: 1}\n", "memory_mb", "must be an integer"},
      {"MemoryTooSmall", py + "memory_mb: 10\n", "memory_mb", "between 64 and 10240"},
      {"MemoryTooLarge", py + "memory_mb: 10241\n", "memory_mb", "between 64 and 10240"},
      {"EphemeralTooSmall", py + "ephemeral_storage_mb: 511\n", "ephemeral_storage_mb",
       "between 512 and 10240"},
      {"EphemeralTooLarge", py + "ephemeral_storage_mb: 10241\n", "ephemeral_storage_mb",
       "between 512 and 10240"},
      {"EphemeralNotANumber", py + "ephemeral_storage_mb: big\n", "ephemeral_storage_mb",
       "must be an integer"},
      {"MemoryHuge", py + "memory_mb: 99999999999999999999999\n", "memory_mb", ""},
      {"TimeoutZero", py + "timeout_s: 0\n", "timeout_s", "between 0.001 and 900"},
      {"TimeoutNegative", py + "timeout_s: -1\n", "timeout_s", "between 0.001 and 900"},
      {"TimeoutOverFifteenMinutes", py + "timeout_s: 901\n", "timeout_s", "between 0.001"},
      {"TimeoutNotANumber", py + "timeout_s: soon\n", "timeout_s", "number of seconds"},
      {"TimeoutInfinite", py + "timeout_s: .inf\n", "timeout_s", ""},
      {"TimeoutNaN", py + "timeout_s: .nan\n", "timeout_s", ""},
      {"TimeoutIsAList", py + "timeout_s: [3]\n", "timeout_s", ""},
      {"ConcurrencyZero", py + "concurrency: 0\n", "concurrency", "between 1 and 1000"},
      {"ConcurrencyTooLarge", py + "concurrency: 1001\n", "concurrency", "between 1 and 1000"},
      {"MinInstancesNegative", py + "min_instances: -1\n", "min_instances", "between 0"},
      {"MaxInstancesZero", py + "max_instances: 0\n", "max_instances", "between 1 and 1000"},
      {"MinAboveMax", py + "min_instances: 5\nmax_instances: 2\n", "min_instances",
       "must not exceed max_instances"},
      {"MinAboveDefaultMax", py + "min_instances: 9\n", "min_instances", "(8)"},
      {"KeepAliveUnknown", py + "keep_alive: forever\n", "keep_alive",
       "must be adaptive or fixed, got 'forever'"},
      {"KeepAliveIsAList", py + "keep_alive: [fixed]\n", "keep_alive", "must be a string"},
      {"IdleTimeoutAutoButFixed", py + "keep_alive: fixed\nidle_timeout_s: auto\n",
       "idle_timeout_s", "'auto' is the adaptive keep-alive, but keep_alive says fixed"},
      {"FixedButIdleTimeoutAuto", py + "idle_timeout_s: auto\nkeep_alive: fixed\n", "keep_alive",
       "'fixed' contradicts idle_timeout_s: auto"},
      {"IdleTimeoutWord", py + "idle_timeout_s: never\n", "idle_timeout_s", "must be an integer"},
      {"IdleTimeoutTooLarge", py + "idle_timeout_s: 86401\n", "idle_timeout_s", "between 0"},
      {"IdleTimeoutNegative", py + "idle_timeout_s: -5\n", "idle_timeout_s", "between 0"},
      {"MissingRuntime", "handler: app.handler\n", "runtime", "is required"},
      {"UnknownRuntime", "runtime: cobol\n", "runtime", "unknown runtime 'cobol'"},
      {"NodejsHandlerWithoutDot", "runtime: nodejs20.x\nhandler: index\n", "handler",
       "module.function"},
      {"RuntimeIsAList", "runtime: [python3]\n", "runtime", "must be a string"},
      {"PythonHandlerWithoutDot", "runtime: python3\nhandler: app\n", "handler", "module.function"},
      {"PythonHandlerMissing", "runtime: python3.11\n", "handler", "module.function"},
      {"PythonHandlerTrailingDot", "runtime: python3\nhandler: app.\n", "handler", ""},
      {"PythonHandlerLeadingDot", "runtime: python3\nhandler: .handler\n", "handler", ""},
      {"ReservedEnvRuntimeApi", py + "environment:\n  AWS_LAMBDA_RUNTIME_API: evil:80\n",
       "environment.AWS_LAMBDA_RUNTIME_API", "reserved"},
      {"ReservedEnvHandler", py + "environment:\n  _HANDLER: x.y\n", "environment._HANDLER",
       "reserved"},
      {"EnvNameWithDash", py + "environment:\n  BAD-NAME: x\n", "environment.BAD-NAME",
       "not a valid variable name"},
      {"EnvNameStartsWithDigit", py + "environment:\n  1ST: x\n", "environment.1ST",
       "not a valid variable name"},
      {"EnvNameWithEquals", py + "environment:\n  \"A=B\": x\n", "environment.A=B",
       "not a valid variable name"},
      {"EnvNotAMapping", py + "environment: [A, B]\n", "environment", "mapping"},
      {"EnvValueIsAMap", py + "environment:\n  A: {b: c}\n", "environment.A", "must be a"},
      {"EnvValueIsNull", py + "environment:\n  A:\n", "environment.A", "must be a"},
      // Regression: these deployed fine and then failed every invoke ("malformed spawn request",
      // "spawn request too large").
      {"EnvValueWithNul", py + "environment:\n  A: \"x\\0y\"\n", "environment.A", "NUL byte"},
      {"EnvOver4096Bytes", py + "environment:\n  A: " + std::string(4096, 'v') + "\n",
       "environment", "4097 bytes, over the 4096-byte limit"},
      {"EnvManyVariablesOver4096Bytes", py + ManyVariables(1000), "environment",
       "over the 4096-byte limit"},
      {"InvalidName", "name: has space\n" + py, "name", "has space"},
      {"NameTooLong", "name: " + std::string(65, 'a') + "\n" + py, "name", "1-64"},
      {"NameIsNull", "name:\n" + py, "name", "must be a string"},
      {"InvalidFallbackName", py, "name", "bad/name", "bad/name"},
      {"EmptyFallbackName", py, "name", "1-64", ""},
      {"GpuCountTooLarge", py + "gpu: 9\n", "gpu", "between 0 and 8"},
      {"GpuNegative", py + "gpu: -1\n", "gpu", "between 0 and 8"},
      {"GpuIsAList", py + "gpu: [1]\n", "gpu", "count or {count"},
      {"GpuMapWithoutCount", py + "gpu: {memory_gb: 80}\n", "gpu.count", "is required"},
      {"GpuMapCountTooLarge", py + "gpu: {count: 9}\n", "gpu.count", "between 0 and 8"},
      {"GpuMapCountNotInt", py + "gpu: {count: one}\n", "gpu.count", "must be an integer"},
      {"GpuMemoryNegative", py + "gpu: {count: 1, memory_gb: -1}\n", "gpu.memory_gb", "between 0"},
      {"GpuKindEmpty", py + "gpu: {count: 1, kind: \"\"}\n", "gpu.kind", "1-64"},
      {"GpuKindIsAMap", py + "gpu: {count: 1, kind: {a: b}}\n", "gpu.kind", "must be a string"},
      {"GpuUnknownKey", py + "gpu: {count: 1, vram: 80}\n", "gpu.vram", "unknown key"},
      {"GpuKindWithoutCount", py + "gpu: {count: 0, kind: H200}\n", "gpu.count", "at least 1"},
      {"BatchIsAScalar", py + "batch: true\n", "batch", "must be {max_size"},
      {"BatchWithoutMaxSize", py + "batch: {max_wait_ms: 5}\n", "batch.max_size", "is required"},
      {"BatchMaxSizeZero", py + "batch: {max_size: 0}\n", "batch.max_size", "between 1 and 1024"},
      {"BatchMaxSizeTooLarge", py + "batch: {max_size: 1025}\n", "batch.max_size",
       "between 1 and 1024"},
      {"BatchMaxWaitNegative", py + "batch: {max_size: 4, max_wait_ms: -1}\n", "batch.max_wait_ms",
       "between 0 and 10000"},
      {"BatchMaxWaitNotInt", py + "batch: {max_size: 4, max_wait_ms: soon}\n", "batch.max_wait_ms",
       "must be an integer"},
      {"BatchUnknownKey", py + "batch: {max_size: 4, timeout_ms: 5}\n", "batch.timeout_ms",
       "unknown key"},
      {"OpenAiIsAList", py + "openai: [tiny-chat]\n", "openai", "must be {models"},
      {"OpenAiWithoutModels", py + "openai: {kind: chat}\n", "openai.models", "is required"},
      {"OpenAiModelsEmpty", py + "openai: {models: [], kind: chat}\n", "openai.models",
       "non-empty list"},
      {"OpenAiModelBadName", py + "openai: {models: [\"a b\"], kind: chat}\n", "openai.models[0]",
       "got 'a b'"},
      {"OpenAiModelRepeated", py + "openai: {models: [m, m], kind: chat}\n", "openai.models[1]",
       "repeats"},
      {"OpenAiDimensionsForChat", py + "openai: {models: [m], kind: chat, dimensions: 8}\n",
       "openai.dimensions", "embeddings only"},
      {"OpenAiDimensionsZero", py + "openai: {models: [m], kind: embeddings, dimensions: 0}\n",
       "openai.dimensions", "between 1"},
      {"OpenAiWithoutKind", py + "openai: {models: [m]}\n", "openai.kind", "is required"},
      {"OpenAiUnknownKind", py + "openai: {models: [m], kind: images}\n", "openai.kind",
       "must be chat, completions or embeddings, got 'images'"},
      {"OpenAiUnknownKey", py + "openai: {models: [m], kind: chat, owner: me}\n", "openai.owner",
       "unknown key"},
      {"UnknownNetwork", py + "network: host\n", "network", "must be egress or none, got 'host'"},
      {"NetworkIsAMap", py + "network: {mode: none}\n", "network", "must be a string"},
  };
}

class ManifestErrorTest : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(ManifestErrorTest, NamesTheField) {
  const ErrorCase& c = GetParam();
  auto m = ParseManifest(c.yaml, c.fallback_name);
  ASSERT_FALSE(m.ok()) << "accepted: " << c.yaml;
  EXPECT_EQ(m.status().code(), StatusCode::kInvalidArgument) << m.status().ToString();
  EXPECT_NE(m.status().message().find("'" + c.field + "'"), std::string::npos)
      << m.status().message();
  EXPECT_NE(m.status().message().find(c.reason), std::string::npos) << m.status().message();
}

INSTANTIATE_TEST_SUITE_P(Cases, ManifestErrorTest, ::testing::ValuesIn(ErrorCases()),
                         [](const ::testing::TestParamInfo<ErrorCase>& info) {
                           return info.param.name;
                         });

// Whole-document errors have no field to name; they say what is wrong with the file.
struct DocumentErrorCase {
  std::string name;
  std::string yaml;
  std::string reason;
};

void PrintTo(const DocumentErrorCase& c, std::ostream* os) { *os << c.name; }

class ManifestDocumentErrorTest : public ::testing::TestWithParam<DocumentErrorCase> {};

TEST_P(ManifestDocumentErrorTest, IsRejected) {
  const DocumentErrorCase& c = GetParam();
  auto m = Parse(c.yaml);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(m.status().message().find("thaw.yaml"), std::string::npos) << m.status().message();
  EXPECT_NE(m.status().message().find(c.reason), std::string::npos) << m.status().message();
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ManifestDocumentErrorTest,
    ::testing::Values(
        DocumentErrorCase{"UnclosedFlowSequence", "runtime: [python3\n", "not valid YAML"},
        DocumentErrorCase{"BadIndentation", "runtime: cpp\n  memory_mb: 1\n bad: [", "not valid"},
        DocumentErrorCase{"RootIsAList", "- runtime\n- cpp\n", "must be a mapping"},
        DocumentErrorCase{"RootIsAScalar", "just some text\n", "must be a mapping"},
        DocumentErrorCase{"EmptyFile", "", "must be a mapping"},
        DocumentErrorCase{"OnlyAComment", "# nothing here\n", "must be a mapping"}),
    [](const ::testing::TestParamInfo<DocumentErrorCase>& info) { return info.param.name; });

// Regression: a non-scalar mapping key (`? [a, b]`) made yaml-cpp throw TypedBadConversion out
// of ParseManifest (kv.first.as<std::string>()), which escaped Deploy on the gateway.
TEST(ManifestTest, ComplexKeyIsRejectedNotThrown) {
  const std::vector<std::string> docs = {
      "runtime: cpp\n? [a, b]\n: 1\n",
      "runtime: cpp\n? {x: y}\n: 1\n",
      "runtime: cpp\nenvironment:\n  ? [A, B]\n  : c\n",
  };
  for (const std::string& yaml : docs) {
    SCOPED_TRACE(yaml);
    StatusOr<Manifest> m;
    EXPECT_NO_THROW(m = Parse(yaml));
    EXPECT_FALSE(m.ok());
    EXPECT_EQ(m.status().code(), StatusCode::kInvalidArgument) << m.status().ToString();
  }
}

// Regression: a key given twice was silently resolved to the last value, against the promise
// that nothing in thaw.yaml is silently ignored (YAML also requires unique keys).
TEST(ManifestTest, DuplicateKeyIsRejected) {
  auto m = Parse("runtime: cpp\nmemory_mb: 128\nmemory_mb: 4096\n");
  ASSERT_FALSE(m.ok()) << "memory_mb resolved to " << m->memory_mb;
  EXPECT_EQ(m.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(m.status().message().find("'memory_mb'"), std::string::npos) << m.status().message();
}

TEST(ManifestTest, HandlerNotCheckedForProvidedOrCpp) {
  for (const char* rt : {"provided", "cpp"}) {
    auto m = Parse(std::string("runtime: ") + rt + "\nhandler: bootstrap\n");
    ASSERT_TRUE(m.ok()) << rt << ": " << m.status().ToString();
    EXPECT_EQ(m->handler, "bootstrap");
  }
}

TEST(ManifestTest, EnvironmentOfExactly4096BytesIsAccepted) {
  auto m = Parse("runtime: cpp\nenvironment:\n  A: " + std::string(4095, 'v') + "\n");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->environment["A"].size(), 4095u);
}

// The Lambda API builds manifests from JSON (CreateFunction, UpdateFunctionConfiguration): the
// same checks, naming the same fields.
TEST(ManifestTest, CheckManifestRefusesTheSameEnvironments) {
  Manifest m;
  m.name = "f";
  m.runtime = Runtime::kCpp;
  EXPECT_TRUE(CheckManifest(m).ok());
  m.environment = {{"A", std::string("x\0y", 3)}};
  Status st = CheckManifest(m);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("'environment.A'"), std::string::npos) << st.message();
  m.environment.clear();
  for (int i = 0; i < 50'000; ++i) m.environment["V" + std::to_string(i)] = "x";
  st = CheckManifest(m);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("'environment'"), std::string::npos) << st.message();
  m.environment = {{"BIG", std::string(3 << 20, 'v')}};
  EXPECT_FALSE(CheckManifest(m).ok());
}

// Regression: an admin deploying "default.x" beside "x" made a second function that tenant
// default also saw as "x". The default tenant's functions are stored bare only.
TEST(ManifestTest, DefaultTenantPrefixIsNotAStoredName) {
  EXPECT_TRUE(IsValidInternalFunctionName("x"));
  EXPECT_TRUE(IsValidInternalFunctionName("acme.x"));
  EXPECT_FALSE(IsValidInternalFunctionName("default.x"));
}

TEST(ManifestTest, IsValidFunctionName) {
  EXPECT_TRUE(IsValidFunctionName("a"));
  EXPECT_TRUE(IsValidFunctionName("Hello_World-42"));
  EXPECT_TRUE(IsValidFunctionName(std::string(64, 'x')));
  EXPECT_FALSE(IsValidFunctionName(""));
  EXPECT_FALSE(IsValidFunctionName(std::string(65, 'x')));
  EXPECT_FALSE(IsValidFunctionName("a.b"));
  EXPECT_FALSE(IsValidFunctionName("../etc"));
  EXPECT_FALSE(IsValidFunctionName("a b"));
}

// ---------------------------------------------------------------------------------------------
// JSON round trip, as the registry stores a version's manifest.

TEST(ManifestJsonTest, RoundTripKeepsEveryField) {
  Manifest m;
  m.name = "thumbs";
  m.runtime = Runtime::kPython3;
  m.handler = "app.handler";
  m.memory_mb = 1024;
  m.timeout_ms = 12'345;
  m.concurrency = 10;
  m.min_instances = 2;
  m.max_instances = 30;
  m.idle_timeout_s = 45;
  m.keep_alive = KeepAlive::kFixed;
  m.environment = {{"A", "1"}, {"QUOTE", "say \"hi\"\n"}, {"EMPTY", ""}};
  m.network = Network::kNone;
  m.gpu = GpuSpec{2, 80, "H200"};

  auto back = ManifestFromJson(ManifestToJson(m));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->name, m.name);
  EXPECT_EQ(back->runtime, m.runtime);
  EXPECT_EQ(back->handler, m.handler);
  EXPECT_EQ(back->memory_mb, m.memory_mb);
  EXPECT_EQ(back->timeout_ms, m.timeout_ms);
  EXPECT_EQ(back->concurrency, m.concurrency);
  EXPECT_EQ(back->min_instances, m.min_instances);
  EXPECT_EQ(back->max_instances, m.max_instances);
  EXPECT_EQ(back->idle_timeout_s, m.idle_timeout_s);
  EXPECT_EQ(back->keep_alive, m.keep_alive);
  EXPECT_EQ(back->environment, m.environment);
  EXPECT_EQ(back->network, m.network);
  EXPECT_EQ(back->gpu.count, 2);
  EXPECT_EQ(back->gpu.memory_gb, 80);
  EXPECT_EQ(back->gpu.kind, "H200");
}

// Rows stored before `network` existed read back as the default, egress.
TEST(ManifestJsonTest, StoredManifestWithoutNetworkIsEgress) {
  Manifest m;
  m.name = "old";
  m.network = Network::kNone;
  boost::json::object o = ManifestToJsonObject(m);
  o.erase("network");
  auto back = ManifestFromJson(boost::json::serialize(o));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->network, Network::kEgress);
}

TEST(ManifestJsonTest, RoundTripOfParsedManifest) {
  auto parsed = Parse("runtime: provided.al2023\nmemory_mb: 256\nenvironment:\n  K: v\n");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  std::string json = ManifestToJson(*parsed);
  auto back = ManifestFromJson(json);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(ManifestToJson(*back), json);
  EXPECT_EQ(back->runtime, Runtime::kProvided);
  EXPECT_NE(json.find("\"runtime\":\"provided\""), std::string::npos) << json;
}

TEST(ManifestJsonTest, MalformedStoredJsonIsAnError) {
  for (const char* text :
       {"", "not json", "[1,2]", "{}", R"({"name":"x"})", R"({"name":1,"runtime":"cpp"})"}) {
    auto m = ManifestFromJson(text);
    EXPECT_FALSE(m.ok()) << text;
    EXPECT_EQ(m.status().code(), StatusCode::kInternal) << text;
  }
}

}  // namespace
}  // namespace thaw::registry
