// Lambda API shapes (gateway/lambda_shapes.h), alias routing (registry.h), the Event retry
// policy (gateway/invoker.h) and base64: the pure parts of the Lambda face, as tables.
#include "gateway/lambda_shapes.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <ctime>
#include <string>

#include "common/base64.h"
#include "gateway/invoker.h"
#include "gateway/responses.h"

namespace thaw::gateway::lambda {
namespace {

namespace json = boost::json;

json::object Obj(const std::string& text) { return json::parse(text).as_object(); }

struct RefCase {
  std::string text;
  bool ok;
  std::string name, qualifier;
  std::string account = "";
};

TEST(LambdaShapesTest, FunctionNamesAndArns) {
  const RefCase cases[] = {
      {"fn", true, "fn", ""},
      {"fn:prod", true, "fn", "prod"},
      {"fn:$LATEST", true, "fn", "$LATEST"},
      {"123456789012:function:fn", true, "fn", ""},
      {"123456789012:function:fn:7", true, "fn", "7"},
      {"arn:aws:lambda:us-east-1:123456789012:function:fn", true, "fn", "", "123456789012"},
      {"arn:aws:lambda:us-east-1:000000000000:function:fn", true, "fn", ""},
      {"arn:aws:lambda:eu-west-1:000000000000:function:fn:live", true, "fn", "live"},
      {"", false, "", ""},
      {"fn:", false, "", ""},
      {"bad.name", false, "", ""},
      {"a:b:c", false, "", ""},
      {"arn:aws:s3:::bucket", false, "", ""},
      {"arn:aws:lambda:us-east-1:0:function:fn:q:extra", false, "", ""},
      {std::string(65, 'a'), false, "", ""},
  };
  for (const auto& c : cases) {
    auto r = ParseFunctionRef(c.text);
    ASSERT_EQ(r.ok(), c.ok) << c.text;
    if (!c.ok) {
      EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
      continue;
    }
    EXPECT_EQ(r->name, c.name) << c.text;
    EXPECT_EQ(r->qualifier, c.qualifier) << c.text;
    if (!c.account.empty()) {
      EXPECT_EQ(r->account, c.account) << c.text;
    }
  }
}

TEST(LambdaShapesTest, QualifierFromNameAndParameterMustAgree) {
  EXPECT_EQ(*MergeQualifier({"fn", "", ""}, "prod"), "prod");
  EXPECT_EQ(*MergeQualifier({"fn", "prod", ""}, ""), "prod");
  EXPECT_EQ(*MergeQualifier({"fn", "prod", ""}, "prod"), "prod");
  EXPECT_FALSE(MergeQualifier({"fn", "1", ""}, "2").ok());
  EXPECT_FALSE(MergeQualifier({"fn", "", ""}, "a/b").ok());
}

TEST(LambdaShapesTest, CreateFunctionFieldsAndErrorsNameTheField) {
  const std::string zip = Base64Encode("PK-not-really");
  auto ok = ParseCreateFunction(Obj(R"({"FunctionName":"f","Runtime":"python3.12",)"
                                    R"("Handler":"app.h","Timeout":30,"MemorySize":512,)"
                                    R"("Environment":{"Variables":{"A":"1"}},"Publish":true,)"
                                    R"("Role":"ignored","Tags":{"x":"y"},"Code":{"ZipFile":")" +
                                    zip + R"("}})"));
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->ref.name, "f");
  EXPECT_EQ(ok->zip, "PK-not-really");
  EXPECT_TRUE(ok->publish);
  registry::Manifest m;
  ASSERT_TRUE(ApplyFunctionFields(ok->fields, m).ok());
  EXPECT_EQ(m.runtime, registry::Runtime::kPython3);
  EXPECT_EQ(m.runtime_name, "python3.12");
  EXPECT_EQ(m.timeout_ms, 30000);
  EXPECT_EQ(m.memory_mb, 512);
  EXPECT_EQ(m.environment.at("A"), "1");

  struct ErrorCase {
    std::string body, field;
  };
  const std::string code = R"("Code":{"ZipFile":")" + zip + R"("})";
  const ErrorCase errors[] = {
      {R"({"Runtime":"python3.12",)" + code + "}", "FunctionName"},
      {R"({"FunctionName":"f","Runtime":"python3.12"})", "Code"},
      {R"({"FunctionName":"f","Runtime":"python3.12","Code":{}})", "Code.ZipFile"},
      {R"({"FunctionName":"f","Runtime":"python3.12","Code":{"ZipFile":"%%%"}})", "Code.ZipFile"},
      {R"({"FunctionName":"f","Runtime":"python3.12","Code":{"S3Bucket":"b"}})", "Code.S3Bucket"},
      {R"({"FunctionName":"f",)" + code + "}", "Runtime"},
      {R"({"FunctionName":"f","Runtime":"python3.12","Timeout":0,)" + code + "}", "Timeout"},
      {R"({"FunctionName":"f","Runtime":"python3.12","Timeout":"3",)" + code + "}", "Timeout"},
      {R"({"FunctionName":"f","Runtime":"python3.12","MemorySize":64,)" + code + "}", "MemorySize"},
      {R"({"FunctionName":"f","Runtime":"python3.12","PackageType":"Image",)" + code + "}",
       "PackageType"},
      {R"({"FunctionName":"f","Runtime":"python3.12","Architectures":["arm64"],)" + code + "}",
       "Architectures"},
      {R"({"FunctionName":"f","Runtime":"python3.12","Layers":["arn:x"],)" + code + "}", "Layers"},
      {R"({"FunctionName":"f","Runtime":"python3.12","Publish":"yes",)" + code + "}", "Publish"},
      {R"({"FunctionName":"f","Runtime":"python3.12","Environment":{"Variables":{"1A":"x"}},)" +
           code + "}",
       "Environment.Variables.1A"},
      {R"({"FunctionName":"f","Runtime":"python3.12","Environment":{"Variables":{"A":1}},)" + code +
           "}",
       "Environment.Variables.A"},
      {R"({"FunctionName":"f","Runtime":"python3.12",)"
       R"("Environment":{"Variables":{"_HANDLER":"x"}},)" +
           code + "}",
       "Environment.Variables._HANDLER"},
      {R"({"FunctionName":"f:1","Runtime":"python3.12",)" + code + "}", "FunctionName"},
  };
  for (const auto& e : errors) {
    auto r = ParseCreateFunction(Obj(e.body));
    ASSERT_FALSE(r.ok()) << e.body;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_TRUE(r.status().message().starts_with(e.field + ":")) << r.status().message();
  }
}

TEST(LambdaShapesTest, RuntimesMapOntoThawsAndHandlersMustFit) {
  struct Case {
    std::string runtime, handler;
    bool ok;
    registry::Runtime want;
  };
  const Case cases[] = {
      {"python3.9", "a.b", true, registry::Runtime::kPython3},
      {"python3.13", "pkg.mod.fn", true, registry::Runtime::kPython3},
      {"provided", "", true, registry::Runtime::kProvided},
      {"provided.al2", "whatever", true, registry::Runtime::kProvided},
      {"provided.al2023", "", true, registry::Runtime::kProvided},
      {"python3.12", "nodot", false, {}},
      {"java21", "a.b", false, {}},
      {"ruby3.3", "a.b", false, {}},
  };
  for (const auto& c : cases) {
    FunctionFields f;
    f.runtime = c.runtime;
    f.handler = c.handler;
    registry::Manifest m;
    Status st = ApplyFunctionFields(f, m);
    EXPECT_EQ(st.ok(), c.ok) << c.runtime << " " << st.ToString();
    if (c.ok) {
      EXPECT_EQ(m.runtime, c.want) << c.runtime;
    }
  }
  // Lambda's nodejs names map onto thaw's nodejs runtime.
  for (const char* node : {"nodejs18.x", "nodejs20.x", "nodejs22.x"}) {
    FunctionFields f;
    f.runtime = node;
    f.handler = "index.handler";
    registry::Manifest m;
    Status st = ApplyFunctionFields(f, m);
    ASSERT_TRUE(st.ok()) << st.message();
    EXPECT_EQ(m.runtime, registry::Runtime::kNodejs);
  }
}

TEST(LambdaShapesTest, AliasesParseAndRoute) {
  auto a = ParseAlias(Obj(R"({"Name":"live","FunctionVersion":"3","Description":"d",)"
                          R"("RoutingConfig":{"AdditionalVersionWeights":{"4":0.25}}})"),
                      nullptr);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->name, "live");
  EXPECT_EQ(a->version, 3);
  EXPECT_EQ(a->weights.at(4), 0.25);
  // Weighted pick: draws below the weight go to the additional version.
  EXPECT_EQ(registry::PickAliasVersion(*a, 0.0), 4);
  EXPECT_EQ(registry::PickAliasVersion(*a, 0.2499), 4);
  EXPECT_EQ(registry::PickAliasVersion(*a, 0.25), 3);
  EXPECT_EQ(registry::PickAliasVersion(*a, 0.9999), 3);
  registry::Alias none{"x", 2, {}, "", 0, 0};
  EXPECT_EQ(registry::PickAliasVersion(none, 0.0), 2);

  // An update keeps what it does not mention; RoutingConfig replaces the weights.
  auto u = ParseAlias(Obj(R"({"Description":"new"})"), &*a);
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->version, 3);
  EXPECT_EQ(u->weights.size(), 1u);
  EXPECT_EQ(u->description, "new");
  auto cleared = ParseAlias(Obj(R"({"RoutingConfig":{}})"), &*a);
  ASSERT_TRUE(cleared.ok());
  EXPECT_TRUE(cleared->weights.empty());
  auto latest = ParseAlias(Obj(R"({"Name":"dev","FunctionVersion":"$LATEST"})"), nullptr);
  ASSERT_TRUE(latest.ok());
  EXPECT_EQ(latest->version, 0);

  for (const char* bad : {
           R"({"FunctionVersion":"1"})",
           R"({"Name":"123","FunctionVersion":"1"})",
           R"({"Name":"a/b","FunctionVersion":"1"})",
           R"({"Name":"x"})",
           R"({"Name":"x","FunctionVersion":"one"})",
           R"({"Name":"x","FunctionVersion":"1",)"
           R"("RoutingConfig":{"AdditionalVersionWeights":{"2":2}}})",
           R"({"Name":"x","FunctionVersion":"1",)"
           R"("RoutingConfig":{"AdditionalVersionWeights":{"$LATEST":0.1}}})",
       }) {
    EXPECT_FALSE(ParseAlias(Obj(bad), nullptr).ok()) << bad;
  }
  EXPECT_TRUE(registry::IsValidAliasName("v1-live_2"));
  EXPECT_FALSE(registry::IsValidAliasName("42"));
  EXPECT_FALSE(registry::IsValidAliasName(std::string(129, 'a')));
}

TEST(LambdaShapesTest, ReservedConcurrencyAndPublishBodies) {
  EXPECT_EQ(*ParseReservedConcurrency(Obj(R"({"ReservedConcurrentExecutions":0})")), 0);
  EXPECT_EQ(*ParseReservedConcurrency(Obj(R"({"ReservedConcurrentExecutions":25})")), 25);
  EXPECT_FALSE(ParseReservedConcurrency(Obj(R"({})")).ok());
  EXPECT_FALSE(ParseReservedConcurrency(Obj(R"({"ReservedConcurrentExecutions":-1})")).ok());
  EXPECT_FALSE(ParseReservedConcurrency(Obj(R"({"ReservedConcurrentExecutions":1.5})")).ok());
  const std::string digest(32, '\x01');
  EXPECT_EQ(*ParsePublishSha256(Obj(R"({"CodeSha256":")" + Base64Encode(digest) + "\"}")),
            HexEncode(digest));
  EXPECT_EQ(*ParsePublishSha256(Obj("{}")), "");
  EXPECT_FALSE(ParsePublishSha256(Obj(R"({"CodeSha256":"abc"})")).ok());
}

TEST(LambdaShapesTest, PayloadJsonCheck) {
  for (const char* good :
       {"{}", "[]", "\"text\"", "42", "null", "{\"a\":[1,2,{\"b\":null}]}", " {\"a\" : 1} "}) {
    EXPECT_TRUE(IsJson(good)) << good;
  }
  for (const char* bad : {"", "{", "{not json}", "{\"a\":1}x", "'single'", "[1,]", "hello"}) {
    EXPECT_FALSE(IsJson(bad)) << bad;
  }
  EXPECT_TRUE(IsJson(std::string(5000, '[') + std::string(5000, ']')));
  EXPECT_TRUE(ParseJsonBody("").ok());
  EXPECT_FALSE(ParseJsonBody("[1]").ok());
  EXPECT_TRUE(ParseJsonBody("{not").status().message().starts_with(
      "Could not parse request body into json"));
}

TEST(LambdaShapesTest, LogTailKeepsTheEndAndWholeCharacters) {
  std::vector<logs::Line> lines = {{1, 0, "r", "platform", "START RequestId: r"},
                                   {2, 0, "r", "stdout", "h\xC3\xA9llo"},
                                   {3, 0, "r", "platform", "REPORT RequestId: r"}};
  EXPECT_EQ(LogTail(lines, 4096), "START RequestId: r\nh\xC3\xA9llo\nREPORT RequestId: r\n");
  EXPECT_EQ(LogTail(lines, 20), "REPORT RequestId: r\n");
  // A cut inside "é" moves forward to the next whole character.
  std::string tail = LogTail(lines, 25);
  EXPECT_EQ(tail, "llo\nREPORT RequestId: r\n");
}

TEST(LambdaShapesTest, ConfigurationShape) {
  registry::FunctionInfo f;
  f.name = "fn";
  f.latest = 2;
  auto v = std::make_shared<registry::Version>();
  v->function = "fn";
  v->version = 2;
  v->sha256 = std::string(64, 'a');
  v->code_size = 10;
  v->created_us = 1'700'000'000'123'456;
  v->manifest.runtime = registry::Runtime::kPython3;
  v->manifest.runtime_name = "python3.12";
  v->manifest.handler = "app.h";
  v->manifest.timeout_ms = 2500;
  v->manifest.description = "latest words";
  f.versions.push_back(v);
  f.published[2] = registry::PublishedVersion{2, "published words", 0};
  json::object latest = FunctionConfiguration(f, *v, "$LATEST", "eu-west-1");
  EXPECT_EQ(latest["FunctionArn"].as_string(), "arn:aws:lambda:eu-west-1:000000000000:function:fn");
  EXPECT_EQ(latest["Runtime"].as_string(), "python3.12");
  EXPECT_EQ(latest["Timeout"].as_int64(), 3);  // whole seconds, rounded up
  EXPECT_EQ(latest["LastModified"].as_string(), "2023-11-14T22:13:20.123+0000");
  EXPECT_EQ(latest["CodeSha256"].as_string(), Base64Encode(*HexDecode(std::string(64, 'a'))));
  EXPECT_EQ(latest["Description"].as_string(), "latest words");
  EXPECT_FALSE(latest.contains("Environment"));
  json::object two = FunctionConfiguration(f, *v, "2", "eu-west-1");
  EXPECT_EQ(two["FunctionArn"].as_string(), "arn:aws:lambda:eu-west-1:000000000000:function:fn:2");
  EXPECT_EQ(two["Description"].as_string(), "published words");
}

registry::FunctionInfo FunctionWithVersions(const std::string& name, int64_t n) {
  registry::FunctionInfo f;
  f.name = name;
  f.latest = n;
  for (int64_t i = 1; i <= n; ++i) {
    auto v = std::make_shared<registry::Version>();
    v->function = name;
    v->version = i;
    v->sha256 = std::string(64, 'b');
    v->manifest.runtime = registry::Runtime::kProvided;
    f.versions.push_back(v);
  }
  return f;
}

TEST(LambdaShapesTest, QualifiersNameVersionsAndLabels) {
  registry::FunctionInfo f = FunctionWithVersions("fn", 3);
  f.aliases["live"] = registry::Alias{"live", 2, {}, "", 0, 0};
  f.aliases["dev"] = registry::Alias{"dev", 0, {}, "", 0, 0};
  struct Case {
    std::string qualifier;
    int64_t version;  // 0: NotFound
    std::string label;
  };
  const Case cases[] = {{"", 3, "$LATEST"}, {"$LATEST", 3, "$LATEST"}, {"1", 1, "1"},
                        {"live", 2, "2"},   {"dev", 3, "$LATEST"},     {"4", 0, ""},
                        {"nope", 0, ""}};
  for (const auto& c : cases) {
    auto r = VersionFor(f, c.qualifier);
    if (c.version == 0) {
      EXPECT_EQ(r.status().code(), StatusCode::kNotFound) << c.qualifier;
      continue;
    }
    ASSERT_TRUE(r.ok()) << c.qualifier;
    EXPECT_EQ(r->version->version, c.version) << c.qualifier;
    EXPECT_EQ(r->label, c.label) << c.qualifier;
  }
}

TEST(LambdaShapesTest, ListPagesFollowMarkers) {
  std::vector<registry::FunctionInfo> fns = {FunctionWithVersions("a", 2),
                                             FunctionWithVersions("b", 1)};
  fns[0].published[1] = registry::PublishedVersion{1, "", 0};
  fns[0].published[2] = registry::PublishedVersion{2, "", 0};
  auto labels = [](const json::object& page, const char* key) {
    std::vector<std::string> out;
    for (const auto& c : page.at(key).as_array()) {
      out.push_back(std::string(c.at("FunctionName").as_string()) + ":" +
                    std::string(c.at("Version").as_string()));
    }
    return out;
  };
  json::object all = ListPage(fns, true, *ParsePage("", ""), "Functions", "us-east-1");
  EXPECT_EQ(labels(all, "Functions"),
            (std::vector<std::string>{"a:$LATEST", "a:1", "a:2", "b:$LATEST"}));
  EXPECT_FALSE(all.contains("NextMarker"));
  json::object first = ListPage(fns, true, *ParsePage("2", ""), "Functions", "us-east-1");
  EXPECT_EQ(labels(first, "Functions"), (std::vector<std::string>{"a:$LATEST", "a:1"}));
  ASSERT_EQ(first.at("NextMarker").as_string(), "a:2");
  json::object second = ListPage(fns, true, *ParsePage("2", "a:2"), "Functions", "us-east-1");
  EXPECT_EQ(labels(second, "Functions"), (std::vector<std::string>{"a:2", "b:$LATEST"}));
  EXPECT_FALSE(second.contains("NextMarker"));
  // Latest only; a marker for an entry that has gone still continues after it.
  json::object latest = ListPage(fns, false, *ParsePage("5", "a:1"), "Functions", "us-east-1");
  EXPECT_EQ(labels(latest, "Functions"), (std::vector<std::string>{"b:$LATEST"}));
  for (const auto& [items, marker] : std::vector<std::pair<std::string, std::string>>{
           {"0", ""}, {"10001", ""}, {"x", ""}, {"", "nocolon"}, {"", "a:notaversion"}}) {
    EXPECT_FALSE(ParsePage(items, marker).ok()) << items << " " << marker;
  }
}

TEST(LambdaShapesTest, EventRetries) {
  using Kind = pool::Result::Kind;
  EXPECT_FALSE(AsyncRetryDelayMs(Kind::kOk, 1));
  EXPECT_EQ(AsyncRetryDelayMs(Kind::kFunctionError, 1), 1000);
  EXPECT_EQ(AsyncRetryDelayMs(Kind::kTimeout, 2), 2000);
  EXPECT_FALSE(AsyncRetryDelayMs(Kind::kExitError, 3));  // two retries, as Lambda
  EXPECT_EQ(AsyncRetryDelayMs(Kind::kThrottled, 1), 1000);
  EXPECT_EQ(AsyncRetryDelayMs(Kind::kThrottled, 3), 4000);
  EXPECT_EQ(AsyncRetryDelayMs(Kind::kThrottled, 9), 60000);
  EXPECT_FALSE(AsyncRetryDelayMs(Kind::kThrottled, 10));
}

TEST(Base64Test, RoundTripsAndRefusesMalformedText) {
  for (const std::string& s : std::vector<std::string>{"", "f", "fo", "foo", "foob", "fooba",
                                                       "foobar", std::string("\0\xff\x10", 3)}) {
    auto back = Base64Decode(Base64Encode(s));
    ASSERT_TRUE(back.has_value()) << s;
    EXPECT_EQ(*back, s);
  }
  EXPECT_EQ(Base64Encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(Base64Encode("fo"), "Zm8=");
  EXPECT_EQ(*Base64Decode("Zm9v\nYmFy"), "foobar");  // wrapped
  for (const char* bad : {"Zm9", "Zm9v=", "Z===", "Zm=v", "Zm8*", "Zm9=", "===="}) {
    EXPECT_FALSE(Base64Decode(bad).has_value()) << bad;
  }
  EXPECT_EQ(*HexDecode("00ff10"), std::string("\0\xff\x10", 3));
  EXPECT_FALSE(HexDecode("0").has_value());
  EXPECT_FALSE(HexDecode("zz").has_value());
}

TEST(Iso8601Test, WritesWhatGmtimeAndStrftimeWrite) {
  // The epoch, a leap day, the turn of 2000, a second before a new year, today, and 2100
  // (not a leap year); microseconds past the second are dropped.
  for (int64_t us : {0LL, 951'782'400'000'000LL, 946'684'799'999'999LL, 1'704'067'199'000'000LL,
                     1'796'342'400'123'456LL, 4'107'542'400'000'000LL}) {
    const time_t secs = static_cast<time_t>(us / 1'000'000);
    tm t;
    gmtime_r(&secs, &t);
    char want[32];
    std::strftime(want, sizeof(want), "%Y-%m-%dT%H:%M:%SZ", &t);
    EXPECT_EQ(gateway::Iso8601(us), std::string(want)) << us;
  }
}

}  // namespace
}  // namespace thaw::gateway::lambda
