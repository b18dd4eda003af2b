#include "pool/lambda_env.h"

#include <cstdio>
#include <ctime>

namespace thaw::pool {

std::string ShownVersion(int64_t version, bool latest) {
  return latest ? "$LATEST" : std::to_string(version);
}

std::string LogStreamName(int64_t wall_us, const std::string& shown_version,
                          const std::string& hex32) {
  const std::time_t seconds = static_cast<std::time_t>(wall_us / 1'000'000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char day[40];
  std::snprintf(day, sizeof(day), "%04d/%02d/%02d", utc.tm_year + 1900, utc.tm_mon + 1,
                utc.tm_mday);
  return std::string(day) + "/[" + shown_version + "]" + hex32;
}

}  // namespace thaw::pool
