// thaw: one binary for the server (`thaw serve`) and the CLI verbs. Thin: parses flags and
// hands off to server::RunServe or the cli::Cmd* functions.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "cli/commands.h"
#include "common/files.h"
#include "server/config.h"
#include "server/serve.h"

extern char** environ;

namespace {

std::string ExeDir() {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? "." : exe.parent_path().string();
}

std::string Env(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"thaw: a self-hosted serverless platform for AI inference"};
  app.require_subcommand(1);
  app.fallthrough();  // global flags may follow the verb
  thaw::cli::ClientOptions client;
  std::string data_dir = Env("THAW_DATA_DIR", ".thaw");
  client.server = Env("THAW_SERVER", "http://127.0.0.1:8080");
  client.api_key = Env("THAW_API_KEY", "");
  app.add_option("--server", client.server, "thaw server URL (env THAW_SERVER)");
  app.add_option("--api-key", client.api_key,
                 "API key (env THAW_API_KEY; else DATA_DIR/admin.key)");
  app.add_option("--data-dir", data_dir, "local data dir, for admin.key and `serve`");
  app.add_flag("--json", client.json, "print JSON");

  // serve: every knob of server::Config as a flag; env THAW_<KNOB> is applied first.
  auto* serve = app.add_subcommand("serve", "run the thaw server");
  std::map<std::string, std::string> flag_values;
  for (const auto& knob : thaw::server::kKnobs) {
    std::string flag = std::string("--") + knob.name;
    for (char& c : flag) c = c == '_' ? '-' : c;
    if (std::string(knob.name) == "data_dir") continue;  // the global --data-dir
    serve->add_option_function<std::string>(
        flag, [&flag_values, name = knob.name](const std::string& v) { flag_values[name] = v; },
        knob.help);
  }

  std::string dir, name, payload = "{}", qualifier, from, to, function;
  std::string group_by;
  bool follow = false, csv = false;
  int64_t limit = 200, days = 7;
  auto* deploy = app.add_subcommand("deploy", "pack a folder with thaw.yaml and deploy it");
  deploy->add_option("DIR", dir, "bundle folder")->required();
  deploy->add_option("--name", name, "function name (default: thaw.yaml's name)");
  auto* invoke = app.add_subcommand("invoke", "invoke a function and print its result");
  invoke->add_option("NAME", name)->required();
  invoke->add_option("PAYLOAD", payload, "JSON event, or - to read stdin");
  invoke->add_option("--qualifier", qualifier, "version number (default $LATEST)");
  auto* ls = app.add_subcommand("ls", "list functions");
  auto* get = app.add_subcommand("get", "show a function");
  get->add_option("NAME", name)->required();
  auto* rm = app.add_subcommand("rm", "delete a function");
  rm->add_option("NAME", name)->required();
  auto* logs = app.add_subcommand("logs", "print a function's logs");
  logs->add_option("NAME", name)->required();
  logs->add_flag("-f,--follow", follow, "keep printing new lines");
  logs->add_option("--limit", limit, "most recent lines to print first");
  auto* usage = app.add_subcommand("usage", "invocations, durations, GB-s and cost");
  std::string tenant_filter;
  usage->add_option("--function", function);
  usage->add_option("--tenant", tenant_filter, "one tenant's usage (admin)");
  usage->add_option("--from", from, "unix seconds or YYYY-MM-DD");
  usage->add_option("--to", to, "unix seconds or YYYY-MM-DD");
  usage->add_option("--group-by", group_by, "function (default), tenant or day");
  usage->add_flag("--csv", csv, "print comma-separated values");
  auto* advise = app.add_subcommand("advise", "serverless, warm or always-on: cost advice");
  advise->add_option("NAME", function, "one function (default: all)");
  advise->add_option("--days", days, "window: the last N days (default 7)");
  thaw::cli::TenantArgs tenant_args;
  auto* tenants = app.add_subcommand("tenants", "manage tenants and their limits (admin)");
  tenants->require_subcommand(1);
  auto tenant_cmd = [&](const char* action, const char* help, bool named, bool limits) {
    auto* cmd = tenants->add_subcommand(action, help);
    cmd->callback([&tenant_args, action] { tenant_args.action = action; });
    if (named) cmd->add_option("NAME", tenant_args.name)->required();
    if (limits) {
      cmd->add_option("--concurrency", tenant_args.concurrency,
                      "invocations running at once, or none");
      cmd->add_option("--rate", tenant_args.rate, "requests per second, or none");
      cmd->add_option("--budget", tenant_args.budget, "monthly budget in dollars, or none");
    }
  };
  tenant_cmd("ls", "list tenants, their limits and this month's spend", false, false);
  tenant_cmd("get", "show one tenant", true, false);
  tenant_cmd("create", "create a tenant", true, true);
  tenant_cmd("set", "change a tenant's limits", true, true);
  tenant_cmd("rm", "delete a tenant (it must have no functions) and revoke its keys", true, false);
  thaw::cli::KeyArgs key_args;
  auto* keys = app.add_subcommand("keys", "manage API keys (admin)");
  keys->require_subcommand(1);
  auto* key_create = keys->add_subcommand("create", "create a key; its secret is shown once");
  key_create->callback([&] { key_args.action = "create"; });
  key_create->add_option("--tenant", key_args.tenant, "the key's tenant (default: default)");
  key_create->add_option("--role", key_args.role, "tenant (default) or admin");
  key_create->add_option("--description", key_args.description);
  auto* key_ls = keys->add_subcommand("ls", "list keys (never their secrets)");
  key_ls->callback([&] { key_args.action = "ls"; });
  key_ls->add_option("--tenant", key_args.tenant, "only this tenant's keys");
  auto* key_revoke = keys->add_subcommand("revoke", "revoke a key");
  key_revoke->callback([&] { key_args.action = "revoke"; });
  key_revoke->add_option("ID", key_args.id)->required();
  thaw::cli::JobArgs job_args;
  auto* jobs = app.add_subcommand("jobs", "long asynchronous invocations: run, get, cancel, ls");
  jobs->require_subcommand(1);
  auto* job_run = jobs->add_subcommand("run", "start a job; --wait follows it to the end");
  job_run->callback([&] { job_args.action = "run"; });
  job_run->add_option("NAME", job_args.name)->required();
  job_run->add_option("INPUT", job_args.input, "JSON input, or - to read stdin");
  job_run->add_flag("--wait", job_args.wait, "wait for the job, showing its progress");
  auto* job_get = jobs->add_subcommand("get", "show a job: status, output, metrics");
  job_get->callback([&] { job_args.action = "get"; });
  job_get->add_option("ID", job_args.id)->required();
  auto* job_cancel = jobs->add_subcommand("cancel", "cancel a job (a running one stops at once)");
  job_cancel->callback([&] { job_args.action = "cancel"; });
  job_cancel->add_option("ID", job_args.id)->required();
  auto* job_ls = jobs->add_subcommand("ls", "list a function's jobs, newest first");
  job_ls->callback([&] { job_args.action = "ls"; });
  job_ls->add_option("NAME", job_args.name)->required();
  job_ls->add_option("--limit", job_args.limit, "jobs to show (default 20)");
  auto* models = app.add_subcommand("models", "the model store: push, ls, rm");
  models->require_subcommand(1);
  std::string model_ref;
  std::vector<std::string> model_paths;
  auto* models_push =
      models->add_subcommand("push", "upload model files (a file or a folder) as NAME[:TAG]");
  models_push->add_option("REF", model_ref, "NAME[:TAG] (tag default: latest)")->required();
  models_push->add_option("PATH", model_paths, "files or folders")->required();
  auto* models_ls = models->add_subcommand("ls", "list models and tags, or one model's tags");
  models_ls->add_option("NAME", model_ref);
  auto* models_rm = models->add_subcommand("rm", "remove a tag (refused while a version uses it)");
  models_rm->add_option("REF", model_ref, "NAME[:TAG]")->required();
  auto* events = app.add_subcommand("events", "a function's Event invocations and dead letters");
  events->require_subcommand(1);
  bool failed_only = false;
  int64_t events_limit = 100;
  std::vector<std::string> event_ids;
  auto* events_ls = events->add_subcommand("ls", "list Event invocations, newest first");
  events_ls->add_option("NAME", name)->required();
  events_ls->add_flag("--failed", failed_only, "only dead letters");
  events_ls->add_option("--limit", events_limit, "at most this many (1-1000, default 100)");
  auto* events_redrive =
      events->add_subcommand("redrive", "queue dead letters again (all of them without IDs)");
  events_redrive->add_option("NAME", name)->required();
  events_redrive->add_option("ID", event_ids, "request ids of dead letters");
  auto* nodes = app.add_subcommand("nodes", "a cluster's nodes: list, drain, undrain (admin)");
  std::string nodes_action = "ls", node_name;
  auto* nodes_drain = nodes->add_subcommand("drain", "no new work on NAME: in-flight finishes");
  nodes_drain->add_option("NAME", node_name)->required();
  nodes_drain->callback([&] { nodes_action = "drain"; });
  auto* nodes_undrain = nodes->add_subcommand("undrain", "let NAME take new work again");
  nodes_undrain->add_option("NAME", node_name)->required();
  nodes_undrain->callback([&] { nodes_action = "undrain"; });
  auto* whoami = app.add_subcommand("whoami", "show the tenant and role of the API key in use");
  auto* version = app.add_subcommand("version", "print the version");
  std::string trace_path, durations_path, memory_path;
  auto* simulate = app.add_subcommand(
      "simulate", "replay an Azure Functions 2019 trace through the keep-alive policies");
  simulate->add_option("--trace", trace_path, "invocations per function per minute (CSV)")
      ->required();
  simulate->add_option("--durations", durations_path, "average duration per function (CSV)");
  simulate->add_option("--memory", memory_path, "average allocated memory per app (CSV)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  if (serve->parsed()) {
    thaw::server::Config config;
    auto values = thaw::server::ConfigValuesFromEnv(environ);
    values["data_dir"] = data_dir;
    for (const auto& [k, v] : flag_values) values[k] = v;
    if (auto st = thaw::server::ApplyConfigValues(values, config); !st.ok()) {
      std::cerr << "thaw: " << st.message() << "\n";
      return 2;
    }
    return thaw::server::RunServe(config, ExeDir());
  }
  if (version->parsed()) {
    std::cout << "thaw 0.1.0\n";
    return 0;
  }
  if (simulate->parsed()) {
    return thaw::cli::CmdSimulate(trace_path, durations_path, memory_path, client.json);
  }
  if (client.api_key.empty()) {
    auto key = thaw::ReadFile(data_dir + "/admin.key");
    if (key.ok()) {
      client.api_key = *key;
      while (!client.api_key.empty() &&
             std::isspace(static_cast<unsigned char>(client.api_key.back()))) {
        client.api_key.pop_back();
      }
    }
  }
  if (deploy->parsed()) return thaw::cli::CmdDeploy(client, dir, name);
  if (invoke->parsed()) return thaw::cli::CmdInvoke(client, name, payload, qualifier);
  if (ls->parsed()) return thaw::cli::CmdList(client);
  if (get->parsed()) return thaw::cli::CmdGet(client, name);
  if (rm->parsed()) return thaw::cli::CmdRemove(client, name);
  if (logs->parsed()) return thaw::cli::CmdLogs(client, name, follow, limit);
  if (usage->parsed()) {
    return thaw::cli::CmdUsage(client, function, tenant_filter, from, to, group_by, csv);
  }
  if (advise->parsed()) return thaw::cli::CmdAdvise(client, function, days);
  if (tenants->parsed()) return thaw::cli::CmdTenants(client, tenant_args);
  if (keys->parsed()) {
    if (key_args.action == "create" && key_args.tenant.empty()) key_args.tenant = "default";
    return thaw::cli::CmdKeys(client, key_args);
  }
  if (whoami->parsed()) return thaw::cli::CmdWhoAmI(client);
  if (nodes->parsed()) return thaw::cli::CmdNodes(client, nodes_action, node_name);
  if (jobs->parsed()) return thaw::cli::CmdJobs(client, job_args);
  if (models_push->parsed()) return thaw::cli::CmdModelsPush(client, model_ref, model_paths);
  if (models_ls->parsed()) return thaw::cli::CmdModelsList(client, model_ref);
  if (models_rm->parsed()) return thaw::cli::CmdModelsRemove(client, model_ref);
  if (events_ls->parsed()) {
    return thaw::cli::CmdEventsList(client, name, failed_only, events_limit);
  }
  if (events_redrive->parsed()) return thaw::cli::CmdEventsRedrive(client, name, event_ids);
  return 1;
}
