// The OpenAI face's pure pieces: splitting a function's stream into JSON texts (one SSE event
// each), reading `usage`, and base64 embeddings.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <cstring>
#include <string>
#include <vector>

#include "common/base64.h"
#include "gateway/openai_api.h"

namespace thaw::gateway {
namespace {

TEST(JsonTextSplitterTest, SplitsTextsWhereverTheChunksBreak) {
  const std::string stream = R"({"a":1}{"b":[1,2]}  {"c":"}{"})"
                             "\n";
  // Every way of cutting the stream in two gives the same three texts.
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    JsonTextSplitter splitter;
    std::vector<std::string> texts;
    std::string error;
    ASSERT_TRUE(splitter.Feed(stream.substr(0, cut), texts, error)) << error;
    ASSERT_TRUE(splitter.Feed(stream.substr(cut), texts, error)) << error;
    EXPECT_EQ(texts, (std::vector<std::string>{R"({"a":1})", R"({"b":[1,2]})", R"({"c":"}{"})"}))
        << cut;
    EXPECT_TRUE(splitter.AtBoundary());
  }
}

TEST(JsonTextSplitterTest, RefusesWhatIsNotJsonAndNoticesATornEnd) {
  JsonTextSplitter bad;
  std::vector<std::string> texts;
  std::string error;
  EXPECT_FALSE(bad.Feed("data: {}\n\n", texts, error));
  EXPECT_NE(error.find("not a sequence of JSON texts"), std::string::npos) << error;

  JsonTextSplitter torn;
  ASSERT_TRUE(torn.Feed(R"({"a":1}{"b":)", texts, error));
  EXPECT_EQ(texts.size(), 1u);
  EXPECT_FALSE(torn.AtBoundary());
}

TEST(ParseUsageTest, ReadsTokenCounts) {
  TokenUsage u = ParseUsage(R"({"usage":{"prompt_tokens":3,"completion_tokens":5}})");
  EXPECT_TRUE(u.found);
  EXPECT_EQ(u.prompt_tokens, 3);
  EXPECT_EQ(u.completion_tokens, 5);
  EXPECT_FALSE(ParseUsage(R"({"choices":[]})").found);
  EXPECT_FALSE(ParseUsage("not json").found);
  TokenUsage odd = ParseUsage(R"({"usage":{"prompt_tokens":-1,"completion_tokens":"x"}})");
  EXPECT_TRUE(odd.found);
  EXPECT_EQ(odd.prompt_tokens, 0);
  EXPECT_EQ(odd.completion_tokens, 0);
}

TEST(EmbeddingsAsBase64Test, EncodesLittleEndianFloat32) {
  std::string out = EmbeddingsAsBase64(R"({"data":[{"embedding":[1.5,-2]}],"model":"m"})");
  const std::string prefix = R"({"data":[{"embedding":")";
  ASSERT_TRUE(out.starts_with(prefix)) << out;
  std::string b64 = out.substr(prefix.size(), out.find('"', prefix.size()) - prefix.size());
  auto bytes = Base64Decode(b64);
  ASSERT_TRUE(bytes.has_value());
  ASSERT_EQ(bytes->size(), 8u);
  float v[2];
  std::memcpy(v, bytes->data(), 8);
  EXPECT_EQ(v[0], 1.5f);
  EXPECT_EQ(v[1], -2.0f);
  // Already base64, or not an embeddings answer: unchanged.
  const std::string already = R"({"data":[{"embedding":"AAAA"}]})";
  EXPECT_EQ(EmbeddingsAsBase64(already), R"({"data":[{"embedding":"AAAA"}]})");
  EXPECT_EQ(EmbeddingsAsBase64("[1,2]"), "[1,2]");
}

boost::json::object Body(const char* text) { return boost::json::parse(text).as_object(); }

TEST(CheckSamplingParamsTest, AcceptsOpenAisRangesAndNamesTheBadParam) {
  for (const char* ok : {R"({})", R"({"temperature":0,"top_p":1,"max_tokens":1,"n":1})",
                         R"({"temperature":2,"top_p":0.5,"seed":-7,"stop":"\n"})",
                         R"({"temperature":null,"stop":["a","b","c","d"]})",
                         R"({"max_completion_tokens":4096,"max_tokens":2.0})"}) {
    EXPECT_FALSE(CheckSamplingParams(Body(ok)).has_value()) << ok;
  }
  struct Case {
    const char* body;
    const char* param;
    const char* message;
  };
  for (const Case& c : {
           Case{R"({"temperature":2.5})", "temperature", "from 0 to 2, got 2.5"},
           Case{R"({"temperature":"hot"})", "temperature", "got \"hot\""},
           Case{R"({"temperature":true})", "temperature", "a number"},
           Case{R"({"top_p":-0.1})", "top_p", "from 0 to 1"},
           Case{R"({"max_tokens":0})", "max_tokens", "at least 1, got 0"},
           Case{R"({"max_tokens":1.5})", "max_tokens", "an integer"},
           Case{R"({"max_completion_tokens":-3})", "max_completion_tokens", "at least 1"},
           Case{R"({"n":0})", "n", "at least 1"},
           Case{R"({"seed":"x"})", "seed", "an integer, got"},
           Case{R"({"stop":["a","b","c","d","e"]})", "stop", "1 to 4 strings"},
           Case{R"({"stop":[1]})", "stop", "1 to 4 strings"},
           Case{R"({"stop":[]})", "stop", "1 to 4 strings"},
       }) {
    auto e = CheckSamplingParams(Body(c.body));
    ASSERT_TRUE(e.has_value()) << c.body;
    EXPECT_EQ(e->param, c.param) << c.body;
    EXPECT_NE(e->message.find(c.message), std::string::npos) << c.body << ": " << e->message;
  }
}

TEST(CheckDimensionsTest, UpToTheModelsNativeSize) {
  EXPECT_FALSE(CheckDimensions(Body(R"({})"), "e", 0).has_value());
  EXPECT_FALSE(CheckDimensions(Body(R"({"dimensions":null})"), "e", 0).has_value());
  EXPECT_FALSE(CheckDimensions(Body(R"({"dimensions":1})"), "e", 64).has_value());
  EXPECT_FALSE(CheckDimensions(Body(R"({"dimensions":64})"), "e", 64).has_value());
  auto unsized = CheckDimensions(Body(R"({"dimensions":8})"), "e", 0);
  ASSERT_TRUE(unsized.has_value());
  EXPECT_EQ(unsized->param, "dimensions");
  EXPECT_EQ(unsized->message, "The model `e` does not support specifying dimensions.");
  for (const char* bad : {R"({"dimensions":65})", R"({"dimensions":0})", R"({"dimensions":"8"})",
                          R"({"dimensions":2.5})"}) {
    auto e = CheckDimensions(Body(bad), "e", 64);
    ASSERT_TRUE(e.has_value()) << bad;
    EXPECT_EQ(e->param, "dimensions");
    EXPECT_NE(e->message.find("`e` gives 1 to 64 dimensions"), std::string::npos) << e->message;
  }
}

}  // namespace
}  // namespace thaw::gateway
