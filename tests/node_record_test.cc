// The node record's JSON (cluster/node_record.h), etcd's prefix range end, and the order peers
// are asked for an artifact (cluster/artifact_fetcher.h).
#include "cluster/node_record.h"

#include <gtest/gtest.h>

#include "cluster/artifact_fetcher.h"
#include "cluster/etcd_client.h"

namespace thaw::cluster {
namespace {

TEST(NodeRecordTest, RoundTrips) {
  NodeRecord r;
  r.name = "a";
  r.advertise = "10.0.0.1:8080";
  r.cores = 8;
  r.memory_mb = 16000;
  r.free_memory_mb = 15000;
  r.gpus = 2;
  r.inflight = 3;
  r.warm = {"default.f:1", "default.g:4"};
  r.templates = {"default.f:1"};
  r.models = {"ab12"};
  r.draining = true;
  r.started_us = 1234;
  auto parsed = ParseNodeRecord(NodeRecordJson(r));
  ASSERT_TRUE(parsed.ok()) << parsed.status().message();
  EXPECT_EQ(*parsed, r);
  dispatch::NodeView v = ViewOf(*parsed);
  EXPECT_EQ(v.name, "a");
  EXPECT_TRUE(v.draining);
  EXPECT_EQ(v.warm, r.warm);
  EXPECT_EQ(v.free_memory_mb, 15000);
}

TEST(NodeRecordTest, MissingFieldsTakeDefaults) {
  auto parsed = ParseNodeRecord(R"({"name":"b"})");
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->name, "b");
  EXPECT_FALSE(parsed->draining);
  EXPECT_TRUE(parsed->warm.empty());
}

TEST(NodeRecordTest, RejectsBadRecordsByField) {
  const std::pair<const char*, const char*> cases[] = {
      {"not json", "not a JSON object"},
      {"[1]", "not a JSON object"},
      {R"({})", "name: required"},
      {R"({"name":""})", "name: required"},
      {R"({"name":"a","cores":"8"})", "cores: not an integer"},
      {R"({"name":"a","warm":"f:1"})", "warm: not a list"},
      {R"({"name":"a","models":[1]})", "models: not a list of strings"},
      {R"({"name":"a","draining":"yes"})", "draining: not true or false"},
      {R"({"name":"a","advertise":80})", "advertise: not a string"},
  };
  for (const auto& [text, why] : cases) {
    auto parsed = ParseNodeRecord(text);
    ASSERT_FALSE(parsed.ok()) << text;
    EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(parsed.status().message().find(why), std::string::npos)
        << text << ": " << parsed.status().message();
  }
}

TEST(EtcdClientTest, PrefixEnd) {
  EXPECT_EQ(PrefixEnd("/thaw/"), "/thaw0");
  EXPECT_EQ(PrefixEnd("a\xff"), "b");
  EXPECT_EQ(PrefixEnd("\xff\xff"), std::string(1, '\0'));
}

TEST(EtcdClientTest, CreateTakesOnlyHttpHostPort) {
  EXPECT_TRUE(EtcdClient::Create("http://127.0.0.1:2379").ok());
  EXPECT_TRUE(EtcdClient::Create("http://[::1]:2379").ok());
  for (const char* bad : {"https://etcd:2379", "http://etcd", "etcd:2379", ""}) {
    auto c = EtcdClient::Create(bad);
    ASSERT_FALSE(c.ok()) << bad;
    EXPECT_NE(c.status().message().find("http://HOST:PORT"), std::string::npos);
  }
}

TEST(OrderPeersTest, HoldersFirstEachInTheOrderGivenWithoutAddresslessOnes) {
  auto rec = [](const char* name, const char* advertise, bool holds) {
    NodeRecord r;
    r.name = name;
    r.advertise = advertise;
    if (holds) r.models.insert("d1");
    return r;
  };
  const std::vector<NodeRecord> others = {
      rec("a", "10.0.0.1:80", false), rec("b", "10.0.0.2:80", true), rec("c", "", true),
      rec("d", "10.0.0.4:80", false), rec("e", "10.0.0.5:80", true)};
  auto holds = [](const NodeRecord& r) { return r.models.count("d1") > 0; };
  EXPECT_EQ(OrderPeers(others, holds),
            (std::vector<std::string>{"http://10.0.0.2:80", "http://10.0.0.5:80",
                                      "http://10.0.0.1:80", "http://10.0.0.4:80"}));
  EXPECT_TRUE(OrderPeers({}, holds).empty());
}

}  // namespace
}  // namespace thaw::cluster
