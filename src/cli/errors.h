// How the model store's and the cluster's CLI verbs (models_cmd.cc, nodes_cmd.cc) report a
// failure: one line on stderr ("thaw: ...") and the exit code 1. Any thread.
#pragma once

#include <string>

#include "cli/http_client.h"

namespace thaw::cli {

int Fail(const std::string& message);
// A non-2xx answer: the server's errorMessage with the status, else the status and body.
int FailResponse(const HttpResult& r);

}  // namespace thaw::cli
