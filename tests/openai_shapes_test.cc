// The OpenAI face's pure pieces: splitting a function's stream into JSON texts (one SSE event
// each), reading `usage`, and base64 embeddings.
#include <gtest/gtest.h>

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

}  // namespace
}  // namespace thaw::gateway
