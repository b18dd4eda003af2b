// The CLI verbs: each talks to a thaw server over HTTP and returns the process exit code.
// Errors are printed as one line on stderr ("thaw: ...") with a non-zero exit.
#pragma once

#include <string>

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
// `group_by`: function or day; `csv` prints comma-separated rows instead of a table.
int CmdUsage(const ClientOptions& o, const std::string& function, const std::string& from,
             const std::string& to, const std::string& group_by, bool csv);
int CmdAdvise(const ClientOptions& o, const std::string& function, int64_t days);

}  // namespace thaw::cli
