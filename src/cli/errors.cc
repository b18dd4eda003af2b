#include "cli/errors.h"

#include <boost/json.hpp>
#include <cstdio>

namespace thaw::cli {

int Fail(const std::string& message) {
  std::fprintf(stderr, "thaw: %s\n", message.c_str());
  return 1;
}

int FailResponse(const HttpResult& r) {
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(r.body, ec);
  if (!ec && v.is_object()) {
    if (auto* m = v.as_object().if_contains("errorMessage"); m && m->is_string()) {
      return Fail(std::string(m->as_string()) + " (HTTP " + std::to_string(r.status) + ")");
    }
  }
  return Fail("HTTP " + std::to_string(r.status) + (r.body.empty() ? "" : ": " + r.body));
}

}  // namespace thaw::cli
