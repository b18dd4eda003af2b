// The native channel's frames (runtime_api/channel_frame.h): what decodes, what waits for more
// bytes, and what is refused, as a table; and an event's head followed by its payload.
#include "runtime_api/channel_frame.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace thaw::runtime_api {
namespace {

std::string U32(uint32_t v) {
  std::string out;
  AppendU32(out, v);
  return out;
}

struct ParseCase {
  std::string name;
  std::string bytes;
  ParseResult result;
  size_t consumed;                  // kFrame: the frame; kNeedMore: its size once known
  std::vector<std::string> fields;  // kFrame
};

std::vector<ParseCase> ParseCases() {
  const std::string response = EncodeFrame(kFrameResponse, {"req-1", "{\"ok\":1}"});
  const std::string next = EncodeFrame(kFrameNext, {});
  return {
      {"Next", next, ParseResult::kFrame, 5, {}},
      {"Response", response, ParseResult::kFrame, response.size(), {"req-1", "{\"ok\":1}"}},
      {"ErrorWithEmptyBody",
       EncodeFrame(kFrameError, {"r", "T", ""}),
       ParseResult::kFrame,
       19,
       {"r", "T", ""}},
      {"InitError",
       EncodeFrame(kFrameInitError, {"T", "{}"}),
       ParseResult::kFrame,
       16,
       {"T", "{}"}},
      {"TwoFramesTakesTheFirst", next + response, ParseResult::kFrame, 5, {}},
      {"Empty", "", ParseResult::kNeedMore, 0, {}},
      {"HalfAHeader", next.substr(0, 3), ParseResult::kNeedMore, 0, {}},
      {"HeaderOnlySaysHowMuch", response.substr(0, 7), ParseResult::kNeedMore, response.size(), {}},
      {"AllButTheLastByte",
       response.substr(0, response.size() - 1),
       ParseResult::kNeedMore,
       response.size(),
       {}},
      {"UnknownType", U32(1) + "Z", ParseResult::kMalformed, 0, {}},
      {"ZeroSize", U32(0) + "N", ParseResult::kMalformed, 0, {}},
      {"FieldPastTheFrame", U32(9) + "R" + U32(100) + "abcd", ParseResult::kMalformed, 0, {}},
      {"MissingField", U32(9) + "R" + U32(4) + "abcd", ParseResult::kMalformed, 0, {}},
      {"BytesLeftOver", U32(2) + "NX", ParseResult::kMalformed, 0, {}},
  };
}

class ParseFrameTest : public ::testing::TestWithParam<ParseCase> {};

TEST_P(ParseFrameTest, Parses) {
  const ParseCase& c = GetParam();
  Frame frame;
  size_t consumed = 99;
  ASSERT_EQ(ParseFrame(c.bytes, frame, &consumed), c.result);
  if (c.result == ParseResult::kMalformed) return;
  EXPECT_EQ(consumed, c.consumed);
  if (c.result != ParseResult::kFrame) return;
  ASSERT_EQ(frame.fields.size(), c.fields.size());
  for (size_t i = 0; i < c.fields.size(); ++i) EXPECT_EQ(frame.fields[i], c.fields[i]) << i;
}

INSTANTIATE_TEST_SUITE_P(Table, ParseFrameTest, ::testing::ValuesIn(ParseCases()),
                         [](const auto& info) { return info.param.name; });

TEST(ChannelFrameTest, EventHeadThenPayloadIsOneEventFrame) {
  const std::string payload = "{\"name\":\"x\"}";
  const std::string bytes =
      EncodeEventHead("id-1", 1700000000123, "arn:aws:lambda:r:0:function:f", "Root=1-a", "",
                      "{\"cognitoIdentityId\":\"c\"}", payload.size()) +
      payload;
  Frame frame;
  size_t consumed = 0;
  ASSERT_EQ(ParseFrame(bytes, frame, &consumed), ParseResult::kFrame);
  EXPECT_EQ(consumed, bytes.size());
  EXPECT_EQ(frame.type, kFrameEvent);
  ASSERT_EQ(frame.fields.size(), 7u);
  EXPECT_EQ(frame.fields[0], "id-1");
  EXPECT_EQ(frame.fields[1], "1700000000123");
  EXPECT_EQ(frame.fields[2], "arn:aws:lambda:r:0:function:f");
  EXPECT_EQ(frame.fields[3], "Root=1-a");
  EXPECT_EQ(frame.fields[4], "");
  EXPECT_EQ(frame.fields[5], "{\"cognitoIdentityId\":\"c\"}");
  EXPECT_EQ(frame.fields[6], payload);
}

TEST(ChannelFrameTest, SizesAreLittleEndian) {
  EXPECT_EQ(U32(0x01020304), std::string("\x04\x03\x02\x01", 4));
  EXPECT_EQ(ReadU32("\xff\xff\xff\x7f"), 0x7fffffffu);
}

}  // namespace
}  // namespace thaw::runtime_api
