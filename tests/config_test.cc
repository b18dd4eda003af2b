// Server configuration (server/config.h): every knob parses from its text form, each malformed
// value is rejected by name, and the environment parser picks THAW_* variables only.
#include "server/config.h"

#include <gtest/gtest.h>

#include <map>
#include <ostream>
#include <set>
#include <string>
#include <vector>

namespace thaw::server {
namespace {

// ---------------------------------------------------------------------------------------------
// Every knob parses.

struct IntKnobCase {
  std::string knob;
  std::string text;
  int64_t Config::*field;
  int64_t want;
};

void PrintTo(const IntKnobCase& c, std::ostream* os) { *os << c.knob << "=" << c.text; }

class IntKnobTest : public ::testing::TestWithParam<IntKnobCase> {};

TEST_P(IntKnobTest, Parses) {
  const IntKnobCase& c = GetParam();
  Config config;
  Status st = ApplyConfigValues({{c.knob, c.text}}, config);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(config.*c.field, c.want);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, IntKnobTest,
    ::testing::Values(
        IntKnobCase{"threads", "0", &Config::threads, 0},
        IntKnobCase{"threads", "256", &Config::threads, 256},
        IntKnobCase{"max_payload_bytes", "1024", &Config::max_payload_bytes, 1024},
        IntKnobCase{"max_payload_bytes", "1073741824", &Config::max_payload_bytes, 1LL << 30},
        IntKnobCase{"max_bundle_bytes", "17179869184", &Config::max_bundle_bytes, 1LL << 34},
        IntKnobCase{"max_unpacked_bytes", "68719476736", &Config::max_unpacked_bytes, 1LL << 36},
        IntKnobCase{"max_queue", "0", &Config::max_queue, 0},
        IntKnobCase{"max_queue", "1000000", &Config::max_queue, 1'000'000},
        IntKnobCase{"queue_timeout_ms", "1", &Config::queue_timeout_ms, 1},
        IntKnobCase{"init_timeout_ms", "3600000", &Config::init_timeout_ms, 3'600'000},
        IntKnobCase{"shutdown_grace_ms", "0", &Config::shutdown_grace_ms, 0},
        IntKnobCase{"log_lines", "10", &Config::log_lines, 10},
        IntKnobCase{"log_lines", "10000000", &Config::log_lines, 10'000'000},
        IntKnobCase{"pids_max", "64", &Config::pids_max, 64},
        IntKnobCase{"log_ring_bytes", "65536", &Config::log_ring_bytes, 65536},
        IntKnobCase{"log_queue_bytes", "1048576", &Config::log_queue_bytes, 1 << 20},
        IntKnobCase{"log_file_bytes", "1099511627776", &Config::log_file_bytes, 1LL << 40},
        IntKnobCase{"log_files_kept", "0", &Config::log_files_kept, 0},
        IntKnobCase{"price_gpu_second_pico", "0", &Config::price_gpu_second_pico, 0},
        IntKnobCase{"price_gpu_second_pico", "2000000000", &Config::price_gpu_second_pico,
                    2'000'000'000},
        IntKnobCase{"max_stream_bytes", "1024", &Config::max_stream_bytes, 1024},
        IntKnobCase{"max_stream_bytes", "4294967296", &Config::max_stream_bytes, 1LL << 32},
        IntKnobCase{"models_quota_bytes", "0", &Config::models_quota_bytes, 0},
        IntKnobCase{"max_model_file_bytes", "17592186044416", &Config::max_model_file_bytes,
                    1LL << 44},
        IntKnobCase{"node_lease_s", "2", &Config::node_lease_s, 2},
        IntKnobCase{"node_lease_s", "600", &Config::node_lease_s, 600},
        IntKnobCase{"event_lease_s", "1", &Config::event_lease_s, 1},
        IntKnobCase{"event_lease_s", "600", &Config::event_lease_s, 600}),
    [](const ::testing::TestParamInfo<IntKnobCase>& info) {
      return info.param.knob + "_" + std::to_string(info.index);
    });

struct StringKnobCase {
  std::string knob;
  std::string text;
  std::string Config::*field;
};

void PrintTo(const StringKnobCase& c, std::ostream* os) { *os << c.knob << "=" << c.text; }

class StringKnobTest : public ::testing::TestWithParam<StringKnobCase> {};

TEST_P(StringKnobTest, Parses) {
  const StringKnobCase& c = GetParam();
  Config config;
  Status st = ApplyConfigValues({{c.knob, c.text}}, config);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(config.*c.field, c.text);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, StringKnobTest,
    ::testing::Values(StringKnobCase{"listen", "0.0.0.0:9000", &Config::listen},
                      StringKnobCase{"listen", "[::1]:0", &Config::listen},
                      StringKnobCase{"data_dir", "/var/lib/thaw", &Config::data_dir},
                      StringKnobCase{"store", "postgres://thaw@db:5432/thaw", &Config::store},
                      StringKnobCase{"store", "postgresql://u@h/d?sslmode=require", &Config::store},
                      StringKnobCase{"store", "", &Config::store},
                      StringKnobCase{"master_key_file", "/k/m", &Config::master_key_file},
                      StringKnobCase{"master_key_file", "", &Config::master_key_file},
                      StringKnobCase{"etcd", "http://127.0.0.1:2379", &Config::etcd},
                      StringKnobCase{"node_name", "node-a", &Config::node_name},
                      StringKnobCase{"advertise", "[::1]:8080", &Config::advertise},
                      StringKnobCase{"log_level", "trace", &Config::log_level},
                      StringKnobCase{"log_level", "debug", &Config::log_level},
                      StringKnobCase{"log_level", "info", &Config::log_level},
                      StringKnobCase{"log_level", "warn", &Config::log_level},
                      StringKnobCase{"log_level", "error", &Config::log_level},
                      StringKnobCase{"runtimes_dir", "/opt/thaw/runtimes", &Config::runtimes_dir},
                      StringKnobCase{"python", "/usr/local/bin/python3.12", &Config::python},
                      StringKnobCase{"node", "/usr/local/bin/node", &Config::node},
                      StringKnobCase{"region", "eu-west-3", &Config::region},
                      StringKnobCase{"gpus", "0,1", &Config::gpus},
                      StringKnobCase{"gpus", "0:H200:141", &Config::gpus},
                      StringKnobCase{"gpus", "none", &Config::gpus},
                      StringKnobCase{"gpu_device_dir", "/tmp/fake-dev", &Config::gpu_device_dir},
                      StringKnobCase{"ephemeral_storage_dir", "/srv/thaw-tmp",
                                     &Config::ephemeral_storage_dir}),
    [](const ::testing::TestParamInfo<StringKnobCase>& info) {
      return info.param.knob + "_" + std::to_string(info.index);
    });

TEST(ConfigTest, AuthTrueAndFalse) {
  Config config;
  ASSERT_TRUE(config.auth);
  ASSERT_TRUE(ApplyConfigValues({{"auth", "false"}}, config).ok());
  EXPECT_FALSE(config.auth);
  ASSERT_TRUE(ApplyConfigValues({{"auth", "true"}}, config).ok());
  EXPECT_TRUE(config.auth);
}

TEST(ConfigTest, NoValuesKeepsDefaults) {
  Config config;
  ASSERT_TRUE(ApplyConfigValues({}, config).ok());
  Config defaults;
  EXPECT_EQ(config.listen, "127.0.0.1:8080");
  EXPECT_EQ(config.data_dir, defaults.data_dir);
  EXPECT_EQ(config.log_level, "info");
  EXPECT_EQ(config.max_payload_bytes, 6 * 1024 * 1024);
  EXPECT_EQ(config.max_stream_bytes, 20 * 1024 * 1024);
  EXPECT_EQ(config.max_queue, 256);
  EXPECT_TRUE(config.auth);
}

TEST(ConfigTest, PinKnobs) {
  Config config;
  EXPECT_FALSE(config.pin_shards);
  EXPECT_FALSE(config.pin_instances);
  Status st = ApplyConfigValues({{"pin_shards", "true"}, {"pin_instances", "true"}}, config);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_TRUE(config.pin_shards);
  EXPECT_TRUE(config.pin_instances);
}

TEST(ConfigTest, SeveralKnobsAtOnce) {
  Config config;
  Status st = ApplyConfigValues(
      {{"listen", "127.0.0.1:0"}, {"threads", "4"}, {"auth", "false"}, {"max_queue", "7"}}, config);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(config.listen, "127.0.0.1:0");
  EXPECT_EQ(config.threads, 4);
  EXPECT_FALSE(config.auth);
  EXPECT_EQ(config.max_queue, 7);
}

// Every knob the table documents is one ApplyConfigValues accepts, and the reverse.
TEST(ConfigTest, KnobTableMatchesParser) {
  const std::map<std::string, std::string> valid = {
      {"listen", "127.0.0.1:1"},
      {"data_dir", "/d"},
      {"store", "postgres://u@h/d"},
      {"master_key_file", "/k"},
      {"log_level", "warn"},
      {"threads", "1"},
      {"pin_shards", "true"},
      {"pin_instances", "true"},
      {"runtimes_dir", "/r"},
      {"python", "/p"},
      {"region", "r"},
      {"max_payload_bytes", "2048"},
      {"max_stream_bytes", "4096"},
      {"max_bundle_bytes", "2048"},
      {"max_unpacked_bytes", "2048"},
      {"max_queue", "1"},
      {"queue_timeout_ms", "1"},
      {"init_timeout_ms", "1"},
      {"shutdown_grace_ms", "1"},
      {"log_lines", "10"},
      {"ephemeral_storage_dir", "/srv/thaw-tmp"},
      {"pids_max", "64"},
      {"auth", "true"},
      {"sandbox", "false"},
      {"templates", "false"},
      {"runtime_channel", "false"},
      {"price_init_gb_second_pico", "0"},
      {"metering", "false"},
      {"node", "/usr/bin/node"},
      {"price_request_micro_per_million", "200000"},
      {"price_gb_second_pico", "16666700"},
      {"price_cpu_second_pico", "0"},
      {"price_peak_gb_second_pico", "2500000"},
      {"price_instance_hour_micro", "20800"},
      {"price_prompt_tokens_micro_per_million", "150000"},
      {"price_completion_tokens_micro_per_million", "600000"},
      {"header_timeout_ms", "0"},
      {"idle_timeout_ms", "75000"},
      {"max_connections", "100000"},
      {"max_connections_per_ip", "0"},
      {"max_upload_bytes_in_flight", "1073741824"},
      {"trusted_proxies", "10.0.0.0/8, ::1, 192.0.2.7"},
      {"log_ring_bytes", "4194304"},
      {"log_queue_bytes", "16777216"},
      {"log_file_bytes", "67108864"},
      {"log_files_kept", "3"},
      {"instance_uids", "1000"},
      {"ready_shells", "100"},
      {"async_queue_events", "100"},
      {"max_queued_events", "100000"},
      {"async_retry_base_ms", "60000"},
      {"job_retention_hours", "48"},
      {"durable_events", "false"},
      {"webhook_private_addresses", "true"},
      {"webhook_ca_file", "/etc/thaw/webhook-ca.pem"},
      {"node_memory_mb", "0"},
      {"log_rate_bytes", "1048576"},
      {"gpus", "0,1"},
      {"gpu_device_dir", "/dev"},
      {"price_gpu_second_pico", "1097000000"},
      {"models_quota_bytes", "1073741824"},
      {"max_model_file_bytes", "1048576"},
      {"etcd", "http://127.0.0.1:2379"},
      {"node_name", "node-a.1"},
      {"advertise", "10.0.0.5:8080"},
      {"node_lease_s", "5"},
      {"event_lease_s", "5"},
  };
  std::set<std::string> documented;
  for (const Knob& k : kKnobs) {
    documented.insert(k.name);
    EXPECT_NE(std::string(k.help), "") << k.name;
    auto it = valid.find(k.name);
    ASSERT_NE(it, valid.end()) << "knob without a test value: " << k.name;
    Config config;
    Status st = ApplyConfigValues({{it->first, it->second}}, config);
    EXPECT_TRUE(st.ok()) << k.name << ": " << st.ToString();
  }
  for (const auto& [name, value] : valid) EXPECT_EQ(documented.count(name), 1u) << name;
}

// ---------------------------------------------------------------------------------------------
// Bad values are rejected by name.

struct BadValueCase {
  std::string name;
  std::string knob;
  std::string text;
  std::string message;  // substring of the error
};

void PrintTo(const BadValueCase& c, std::ostream* os) { *os << c.knob << "=" << c.text; }

std::vector<BadValueCase> BadValueCases() {
  return {
      {"ThreadsNotANumber", "threads", "many", "config threads: expected an integer"},
      {"RuntimeChannelNotABool", "runtime_channel", "maybe", "config runtime_channel"},
      {"PinShardsNotABool", "pin_shards", "1x", "config pin_shards"},
      {"PinInstancesNotABool", "pin_instances", "cpu0", "config pin_instances"},
      {"GpusNotAList", "gpus", "all", "config gpus: entry 'all'"},
      {"GpusRepeated", "gpus", "0,0", "given more than once"},
      {"GpuDeviceDirRelative", "gpu_device_dir", "dev", "config gpu_device_dir"},
      {"GpuPriceNegative", "price_gpu_second_pico", "-1", "config price_gpu_second_pico"},
      {"ThreadsEmpty", "threads", "", "config threads"},
      {"ThreadsTrailingGarbage", "threads", "4x", "got '4x'"},
      {"ThreadsFraction", "threads", "1.5", "config threads"},
      {"ThreadsHex", "threads", "0x10", "config threads"},
      {"ThreadsNegative", "threads", "-1", "between 0 and 256"},
      {"ThreadsTooMany", "threads", "257", "between 0 and 256"},
      {"ThreadsOverflowsInt64", "threads", "99999999999999999999", "config threads"},
      {"PayloadTooSmall", "max_payload_bytes", "1023", "config max_payload_bytes"},
      {"PayloadTooLarge", "max_payload_bytes", "1073741825", "config max_payload_bytes"},
      {"StreamTooSmall", "max_stream_bytes", "1023", "config max_stream_bytes"},
      {"StreamTooLarge", "max_stream_bytes", "4294967297", "config max_stream_bytes"},
      {"BundleTooSmall", "max_bundle_bytes", "0", "config max_bundle_bytes"},
      {"UnpackedTooLarge", "max_unpacked_bytes", "68719476737", "config max_unpacked_bytes"},
      {"QueueNegative", "max_queue", "-1", "config max_queue"},
      {"QueueTooLarge", "max_queue", "1000001", "config max_queue"},
      {"QueueTimeoutZero", "queue_timeout_ms", "0", "config queue_timeout_ms"},
      {"InitTimeoutZero", "init_timeout_ms", "0", "config init_timeout_ms"},
      {"InitTimeoutOverAnHour", "init_timeout_ms", "3600001", "config init_timeout_ms"},
      {"GraceNegative", "shutdown_grace_ms", "-5", "config shutdown_grace_ms"},
      {"LogLinesTooFew", "log_lines", "9", "config log_lines"},
      {"EphemeralStorageDirEmpty", "ephemeral_storage_dir", "", "config ephemeral_storage_dir"},
      {"PidsMaxTooFew", "pids_max", "7", "config pids_max"},
      {"ReadyShellsNegative", "ready_shells", "-1", "between 0 and 1000"},
      {"ReadyShellsTooMany", "ready_shells", "1001", "between 0 and 1000"},
      {"LogRingBytesTooFew", "log_ring_bytes", "65535", "config log_ring_bytes"},
      {"LogQueueBytesTooFew", "log_queue_bytes", "0", "config log_queue_bytes"},
      {"LogFileBytesTooFew", "log_file_bytes", "1", "config log_file_bytes"},
      {"LogFilesKeptNegative", "log_files_kept", "-1", "config log_files_kept"},
      {"LogLevelUnknown", "log_level", "verbose", "config log_level"},
      {"LogLevelUppercase", "log_level", "INFO", "got 'INFO'"},
      {"LogLevelEmpty", "log_level", "", "config log_level"},
      {"AuthYes", "auth", "yes", "config auth: expected true or false"},
      {"AuthOne", "auth", "1", "config auth"},
      {"AuthUppercase", "auth", "TRUE", "config auth"},
      {"AuthEmpty", "auth", "", "config auth"},
      {"MeteringMaybe", "metering", "maybe", "config metering: expected true or false"},
      {"SandboxYes", "sandbox", "yes", "config sandbox: expected true or false"},
      {"ListenWithoutPort", "listen", "localhost", "config listen: expected ADDRESS:PORT"},
      {"DataDirEmpty", "data_dir", "", "config data_dir"},
      {"StoreNotAUrl", "store", "/var/lib/thaw/thaw.db", "config store: expected a postgres://"},
      {"StoreOtherScheme", "store", "mysql://u@h/d", "config store"},
      {"MasterKeyRelative", "master_key_file", "master.key", "config master_key_file: expected"},
      {"PriceNegative", "price_gb_second_pico", "-1", "config price_gb_second_pico"},
      {"PriceFraction", "price_request_micro_per_million", "0.2",
       "config price_request_micro_per_million"},
      {"PriceDollars", "price_instance_hour_micro", "$0.02", "config price_instance_hour_micro"},
      {"PriceTooLarge", "price_cpu_second_pico", "1000000000001", "config price_cpu_second_pico"},
      {"HeaderTimeoutNegative", "header_timeout_ms", "-1", "config header_timeout_ms"},
      {"MaxConnectionsWord", "max_connections", "lots", "config max_connections"},
      {"TrustedProxiesHostName", "trusted_proxies", "proxy.local", "config trusted_proxies"},
      {"TrustedProxiesPrefixTooLong", "trusted_proxies", "10.0.0.0/33", "prefix length"},
      {"TrustedProxiesPrefixEmpty", "trusted_proxies", "10.0.0.0/", "config trusted_proxies"},
      {"EtcdHttps", "etcd", "https://etcd:2379", "config etcd: expected http://HOST:PORT"},
      {"EtcdNoPort", "etcd", "http://etcd", "config etcd"},
      {"EtcdBadPort", "etcd", "http://etcd:23x9", "config etcd"},
      {"EtcdPath", "etcd", "http://etcd:2379/v3", "config etcd"},
      {"NodeNameEmpty", "node_name", "", "config node_name"},
      {"NodeNameSlash", "node_name", "a/b", "got 'a/b'"},
      {"NodeNameTooLong", "node_name", std::string(64, 'n'), "config node_name"},
      {"AdvertiseNoPort", "advertise", "10.0.0.5", "config advertise: expected HOST:PORT"},
      {"AdvertiseEmptyPort", "advertise", "10.0.0.5:", "config advertise"},
      {"NodeLeaseTooShort", "node_lease_s", "1", "config node_lease_s"},
      {"NodeLeaseTooLong", "node_lease_s", "601", "between 2 and 600"},
      {"EventLeaseZero", "event_lease_s", "0", "config event_lease_s"},
      {"EventLeaseTooLong", "event_lease_s", "601", "between 1 and 600"},
      {"UnknownKnob", "thread", "4", "unknown setting 'thread'"},
      {"UnknownKnobWithDash", "log-level", "info", "unknown setting 'log-level'"},
      {"ClientOnlyServerKnob", "server", "http://x", "unknown setting 'server'"},
  };
}

class BadValueTest : public ::testing::TestWithParam<BadValueCase> {};

TEST_P(BadValueTest, IsRejectedByName) {
  const BadValueCase& c = GetParam();
  Config config;
  Status st = ApplyConfigValues({{c.knob, c.text}}, config);
  ASSERT_FALSE(st.ok()) << c.knob << "=" << c.text << " was accepted";
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find(c.message), std::string::npos) << st.message();
}

INSTANTIATE_TEST_SUITE_P(Cases, BadValueTest, ::testing::ValuesIn(BadValueCases()),
                         [](const ::testing::TestParamInfo<BadValueCase>& info) {
                           return info.param.name;
                         });

TEST(ConfigTest, RejectedValueDoesNotChangeThatKnob) {
  Config config;
  ASSERT_FALSE(ApplyConfigValues({{"threads", "300"}}, config).ok());
  EXPECT_EQ(config.threads, 0);
  ASSERT_FALSE(ApplyConfigValues({{"log_level", "loud"}}, config).ok());
  EXPECT_EQ(config.log_level, "info");
  ASSERT_FALSE(ApplyConfigValues({{"auth", "no"}}, config).ok());
  EXPECT_TRUE(config.auth);
}

// ---------------------------------------------------------------------------------------------
// The environment parser.

TEST(ConfigEnvTest, CollectsThawVariablesLowercased) {
  std::vector<std::string> vars = {
      "PATH=/usr/bin",
      "THAW_LISTEN=0.0.0.0:9000",
      "THAW_LOG_LEVEL=debug",
      "THAW_DATA_DIR=/srv/a=b",  // only the first '=' separates the value
      "THAW_AUTH=false",
      "THAWED=1",             // not THAW_
      "thaw_threads=3",       // prefix is case-sensitive
      "THAW_NO_EQUALS_SIGN",  // malformed: skipped
      "THAW_REGION=",
  };
  std::vector<char*> envp;
  for (std::string& v : vars) envp.push_back(v.data());
  envp.push_back(nullptr);

  std::map<std::string, std::string> want = {{"listen", "0.0.0.0:9000"},
                                             {"log_level", "debug"},
                                             {"data_dir", "/srv/a=b"},
                                             {"auth", "false"},
                                             {"region", ""}};
  auto values = ConfigValuesFromEnv(envp.data());
  EXPECT_EQ(values, want);

  Config config;
  Status st = ApplyConfigValues(values, config);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(config.listen, "0.0.0.0:9000");
  EXPECT_EQ(config.log_level, "debug");
  EXPECT_EQ(config.data_dir, "/srv/a=b");
  EXPECT_FALSE(config.auth);
  EXPECT_EQ(config.region, "");
}

TEST(ConfigEnvTest, ClientVariablesAreIgnored) {
  std::vector<std::string> vars = {"THAW_SERVER=http://127.0.0.1:8080", "THAW_API_KEY=sk-secret",
                                   "THAW_THREADS=2"};
  std::vector<char*> envp;
  for (std::string& v : vars) envp.push_back(v.data());
  envp.push_back(nullptr);

  auto values = ConfigValuesFromEnv(envp.data());
  std::map<std::string, std::string> want = {{"threads", "2"}};
  EXPECT_EQ(values, want);
  Config config;
  EXPECT_TRUE(ApplyConfigValues(values, config).ok());
}

TEST(ConfigEnvTest, UnknownThawVariableIsPassedOnAndRejected) {
  std::string var = "THAW_TREADS=4";
  char* envp[] = {var.data(), nullptr};
  auto values = ConfigValuesFromEnv(envp);
  ASSERT_EQ(values.count("treads"), 1u);
  Config config;
  Status st = ApplyConfigValues(values, config);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("'treads'"), std::string::npos) << st.message();
}

TEST(ConfigEnvTest, NullOrEmptyEnvironment) {
  EXPECT_TRUE(ConfigValuesFromEnv(nullptr).empty());
  char* empty[] = {nullptr};
  EXPECT_TRUE(ConfigValuesFromEnv(empty).empty());
}

}  // namespace
}  // namespace thaw::server
