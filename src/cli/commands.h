// The CLI verbs: each talks to a thaw server over HTTP and returns the process exit code.
// Errors are printed as one line on stderr ("thaw: ...") with a non-zero exit.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace thaw::cli {

struct ClientOptions {
  std::string server;  // http://host:port
  std::string api_key;
  bool json = false;
};

int CmdDeploy(const ClientOptions& o, const std::string& dir, const std::string& name);
int CmdInvoke(const ClientOptions& o, const std::string& name, const std::string& payload,
              const std::string& qualifier);
int CmdList(const ClientOptions& o);
int CmdGet(const ClientOptions& o, const std::string& name);
int CmdRemove(const ClientOptions& o, const std::string& name);
int CmdLogs(const ClientOptions& o, const std::string& name, bool follow, int64_t limit);
// `thaw events ls NAME [--failed]`: a function's Event invocations, newest first (--failed:
// its dead letters); `thaw events redrive NAME [ID...]`: queues dead letters again (all when no
// ID is given).
int CmdEventsList(const ClientOptions& o, const std::string& name, bool failed, int64_t limit);
int CmdEventsRedrive(const ClientOptions& o, const std::string& name,
                     const std::vector<std::string>& ids);
// `group_by`: function, tenant or day; `tenant` (admin) narrows to one tenant; `csv` prints
// comma-separated rows instead of a table.
int CmdUsage(const ClientOptions& o, const std::string& function, const std::string& tenant,
             const std::string& from, const std::string& to, const std::string& group_by, bool csv);
int CmdAdvise(const ClientOptions& o, const std::string& function, int64_t days);

// `thaw tenants ls|get|create|set|rm`. Limits are strings: empty leaves a limit as it is,
// "none" removes it; the budget is in dollars ("25", "12.50").
struct TenantArgs {
  std::string action;
  std::string name;
  std::string concurrency, rate, budget;
};
int CmdTenants(const ClientOptions& o, const TenantArgs& args);
// `thaw keys create|ls|revoke`.
struct KeyArgs {
  std::string action;
  std::string tenant;  // create (default "default"); ls filter
  std::string role = "tenant";
  std::string description;
  std::string id;  // revoke
};
int CmdKeys(const ClientOptions& o, const KeyArgs& args);
int CmdWhoAmI(const ClientOptions& o);
// `thaw nodes [ls]` (action "ls"), `thaw nodes drain NAME`, `thaw nodes undrain NAME`
// (nodes_cmd.cc): a cluster's members, capacity, warm versions and health; draining one.
int CmdNodes(const ClientOptions& o, const std::string& action, const std::string& name);
// `thaw models push NAME[:TAG] PATH...`, `thaw models ls [NAME]`, `thaw models rm NAME[:TAG]`
// (models_cmd.cc).
int CmdModelsPush(const ClientOptions& o, const std::string& ref,
                  const std::vector<std::string>& paths);
int CmdModelsList(const ClientOptions& o, const std::string& name);
int CmdModelsRemove(const ClientOptions& o, const std::string& ref);

// `thaw jobs run|get|cancel|ls`. run: creates a job with `input` (JSON, or - for stdin); with
// `wait`, shows its progress on stderr until it finishes, prints its output and exits 0 only
// if it succeeded.
struct JobArgs {
  std::string action;
  std::string name;  // run, ls
  std::string input = "{}";
  std::string id;  // get, cancel
  bool wait = false;
  int64_t limit = 20;  // ls
};
int CmdJobs(const ClientOptions& o, const JobArgs& args);

// `thaw simulate`: replays an Azure Functions 2019 trace (src/sim/trace.h) through each keep-alive
// policy and prints its cold starts and wasted memory-time; needs no server. Empty paths: no
// durations or memory file (defaults assumed).
int CmdSimulate(const std::string& trace_path, const std::string& durations_path,
                const std::string& memory_path, bool json);

}  // namespace thaw::cli
