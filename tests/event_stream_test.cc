// AWS's event-stream framing as InvokeWithResponseStream sends it (gateway/streaming.h): the
// CRC-32 check value and a message decoded field by field.
#include <gtest/gtest.h>

#include <string>

#include "gateway/streaming.h"

namespace thaw::gateway {
namespace {

uint32_t U32(const std::string& s, size_t at) {
  return (static_cast<uint32_t>(static_cast<unsigned char>(s[at])) << 24) |
         (static_cast<uint32_t>(static_cast<unsigned char>(s[at + 1])) << 16) |
         (static_cast<uint32_t>(static_cast<unsigned char>(s[at + 2])) << 8) |
         static_cast<uint32_t>(static_cast<unsigned char>(s[at + 3]));
}

TEST(EventStreamTest, Crc32MatchesTheStandardCheckValue) {
  EXPECT_EQ(Crc32("123456789"), 0xCBF43926u);
  EXPECT_EQ(Crc32(""), 0u);
  // Continuing from a previous value is the same as one pass.
  EXPECT_EQ(Crc32("6789", Crc32("12345")), 0xCBF43926u);
}

TEST(EventStreamTest, MessageHasPreludeHeadersPayloadAndCrcs) {
  const std::string msg = EventStreamMessage({{":event-type", "PayloadChunk"}}, "hi");
  // Header: name length, name, type 7 (string), value length (2 bytes), value.
  const std::string header = std::string(1, 11) + ":event-type" + std::string(1, 7) +
                             std::string(1, 0) + std::string(1, 12) + "PayloadChunk";
  ASSERT_EQ(msg.size(), 12 + header.size() + 2 + 4);
  EXPECT_EQ(U32(msg, 0), msg.size());
  EXPECT_EQ(U32(msg, 4), header.size());
  EXPECT_EQ(U32(msg, 8), Crc32(msg.substr(0, 8)));
  EXPECT_EQ(msg.substr(12, header.size()), header);
  EXPECT_EQ(msg.substr(12 + header.size(), 2), "hi");
  EXPECT_EQ(U32(msg, msg.size() - 4), Crc32(msg.substr(0, msg.size() - 4)));
}

TEST(EventStreamTest, EmptyPayloadAndNoHeaders) {
  const std::string msg = EventStreamMessage({}, "");
  ASSERT_EQ(msg.size(), 16u);
  EXPECT_EQ(U32(msg, 0), 16u);
  EXPECT_EQ(U32(msg, 4), 0u);
}

}  // namespace
}  // namespace thaw::gateway
