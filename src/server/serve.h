// `thaw serve`: wires the components together and runs until SIGTERM/SIGINT.
// Call from the main thread before any other thread exists (it forks the spawner first).
#pragma once

#include "server/config.h"

namespace thaw::server {

// Returns the process exit code.
int RunServe(Config config, const std::string& exe_dir);

}  // namespace thaw::server
