// JSON text for everything thaw prints (API bodies, CLI output, stored manifests). Unlike
// boost::json::serialize, which writes every double in exponent form (10.0 as "1E1"), numbers
// read as people and JavaScript's JSON.stringify write them. Pure; any thread.
#pragma once

#include <boost/json/fwd.hpp>
#include <cstddef>
#include <string>

namespace thaw {

// A double as a JSON number: an integral value below 1e21 in magnitude as an integer ("10"),
// any other finite value in the shortest form that reads back to the same double ("0.1",
// "1.5e-09"); NaN and infinities, which JSON cannot hold, as null.
std::string JsonNumber(double x);
// `v` as compact JSON text, numbers as JsonNumber writes them; `reserve`: the bytes to make
// room for first (a guess at the size, to spare a large text its regrowth).
std::string JsonText(const boost::json::value& v, size_t reserve = 0);
// JSON text as its value; anything else (plain text, a partial stream) as a JSON string; empty
// text as null. For payloads, which are JSON on Lambda, though a function may answer bytes.
boost::json::value JsonOrString(const std::string& text);

}  // namespace thaw
