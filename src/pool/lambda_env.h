// The parts of a runtime's Lambda environment that follow Lambda's formats: the version a
// runtime is told it runs, and the log stream name. Pure functions; any thread.
#pragma once

#include <cstdint>
#include <string>

namespace thaw::pool {

// What AWS_LAMBDA_FUNCTION_VERSION, context.function_version and the START line say: Lambda
// runs unqualified calls (and aliases of $LATEST) as "$LATEST", calls that named a version as
// its number. thaw's own API and headers keep the number either way.
std::string ShownVersion(int64_t version, bool latest);

// Lambda's log stream name, "2024/05/01/[$LATEST]" then 32 hex digits: the UTC day the
// instance started (`wall_us`), the shown version and `hex32`, which names the instance.
std::string LogStreamName(int64_t wall_us, const std::string& shown_version,
                          const std::string& hex32);

}  // namespace thaw::pool
