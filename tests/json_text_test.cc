// JSON text as thaw prints it (common/json_text.h): numbers as people and JSON.stringify
// write them, never boost's "1E1", as a table.
#include "common/json_text.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <cmath>
#include <limits>

namespace thaw {
namespace {

namespace json = boost::json;

TEST(JsonTextTest, NumbersAreIntegersWhenIntegralElseShortestRoundTrip) {
  const struct {
    double x;
    const char* text;
  } cases[] = {
      {10.0, "10"},
      {1.0, "1"},
      {-3.0, "-3"},
      {0.0, "0"},
      {-0.0, "0"},
      {256.0, "256"},
      {1e15, "1000000000000000"},
      {1e20, "100000000000000000000"},
      {1e21, "1e+21"},
      {0.5, "0.5"},
      {0.1, "0.1"},
      {1.5, "1.5"},
      {0.001, "0.001"},
      {2.5e-05, "2.5e-05"},
      {0.1 + 0.2, "0.30000000000000004"},
      {1234.5678, "1234.5678"},
      {-0.000125, "-0.000125"},
      {std::numeric_limits<double>::infinity(), "null"},
      {std::nan(""), "null"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(JsonNumber(c.x), c.text) << c.x;
    // What it prints reads back as the same number.
    if (std::isfinite(c.x)) {
      EXPECT_EQ(json::parse(JsonNumber(c.x)).to_number<double>(), c.x) << c.text;
    }
  }
}

TEST(JsonTextTest, DocumentsKeepBoostsEscapingAndOrder) {
  json::value v = json::parse(R"({"timeout_s":10.0,"gb_s":0.000125,"n":7,"big":18446744073709551615,
                                  "s":"a\"b\né","list":[1.0,2.5,null,true],"o":{}})");
  EXPECT_EQ(JsonText(v), R"({"timeout_s":10,"gb_s":0.000125,"n":7,"big":18446744073709551615,)"
                         R"("s":"a\"b\né","list":[1,2.5,null,true],"o":{}})");
  // boost itself prints the exponent form this replaces.
  EXPECT_EQ(json::serialize(json::value(10.0)), "1E1");
}

TEST(JsonTextTest, EveryByteInStringsAndKeysIsWrittenAsBoostWritesIt) {
  for (int b = 0; b < 256; ++b) {
    const std::string s = std::string("x") + static_cast<char>(b) + "y";
    json::value v = json::object{{s, s}, {"n", json::array{s, -7, 42U, false, nullptr}}};
    EXPECT_EQ(JsonText(v), json::serialize(v)) << "byte " << b;
  }
}

}  // namespace
}  // namespace thaw
