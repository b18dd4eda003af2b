// `thaw models push|ls|rm`: the model store's verbs (server side: gateway/artifacts_api.cc).
// push hashes each file, skips the ones the tenant already holds, streams the others from disk
// with a progress line, then points NAME:TAG at the list.
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>

#include "cli/commands.h"
#include "cli/errors.h"
#include "cli/http_client.h"
#include "common/json_text.h"
#include "common/sha256.h"
#include "models/names.h"

namespace thaw::cli {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;

Headers Auth(const ClientOptions& o, Headers headers = {}) {
  if (!o.api_key.empty()) headers.emplace_back("Authorization", "Bearer " + o.api_key);
  return headers;
}

std::string Human(int64_t n) {
  char buf[32];
  if (n < 1024) {
    std::snprintf(buf, sizeof(buf), "%ld B", static_cast<long>(n));
  } else if (n < (1 << 20)) {
    std::snprintf(buf, sizeof(buf), "%.1f KB", n / 1024.0);
  } else if (n < (1LL << 30)) {
    std::snprintf(buf, sizeof(buf), "%.1f MB", n / 1048576.0);
  } else {
    std::snprintf(buf, sizeof(buf), "%.2f GB", n / 1073741824.0);
  }
  return buf;
}

struct LocalFile {
  std::string path;  // in the model
  std::string host;  // on this machine
  int64_t size = 0;
  std::string sha256;
};

// A file becomes one entry named by its file name; a folder, every regular file under it by
// its path inside the folder. Links and special files are refused.
Status Collect(const std::string& arg, std::map<std::string, LocalFile>& out) {
  std::error_code ec;
  auto add = [&](const std::string& model_path, const fs::path& host) -> Status {
    if (auto problem = models::FilePathProblem(model_path)) {
      return InvalidArgument(host.string() + ": its path in the model '" + model_path + "' " +
                             *problem);
    }
    if (out.count(model_path)) {
      return InvalidArgument("two files would be " + model_path + " in the model");
    }
    std::error_code size_ec;
    auto size = fs::file_size(host, size_ec);
    if (size_ec) return InvalidArgument(host.string() + ": " + size_ec.message());
    out[model_path] = LocalFile{model_path, host.string(), static_cast<int64_t>(size), ""};
    return Status::Ok();
  };
  auto status = fs::symlink_status(arg, ec);
  if (ec) return InvalidArgument(arg + ": " + ec.message());
  if (fs::is_regular_file(status)) return add(fs::path(arg).filename().string(), arg);
  if (!fs::is_directory(status)) return InvalidArgument(arg + " is not a file or a folder");
  for (auto it = fs::recursive_directory_iterator(arg, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    auto s = it->symlink_status();
    if (fs::is_directory(s)) continue;
    if (!fs::is_regular_file(s)) {
      return InvalidArgument(it->path().string() + " is a link or a special file: push files only");
    }
    THAW_RETURN_IF_ERROR(add(fs::relative(it->path(), arg).generic_string(), it->path()));
  }
  if (ec) return InvalidArgument(arg + ": " + ec.message());
  return Status::Ok();
}

StatusOr<std::string> HashFile(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return ErrnoStatus("open", path, errno);
  Sha256Stream hash;
  std::vector<char> buf(1 << 20);
  for (;;) {
    size_t n = std::fread(buf.data(), 1, buf.size(), f);
    if (n == 0) break;
    hash.Update(std::string_view(buf.data(), n));
  }
  bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed) return ErrnoStatus("read", path, EIO);
  return hash.FinishHex();
}

// "acme.digits" (an admin naming a tenant) -> "?tenant=acme" for the blob routes.
std::string TenantQuery(const std::string& name) {
  auto dot = name.find('.');
  return dot == std::string::npos ? "" : "?tenant=" + name.substr(0, dot);
}

// NAME[:TAG], where an admin's NAME may be TENANT.NAME.
std::optional<std::pair<std::string, std::string>> ParseRef(const std::string& ref) {
  auto dot = ref.find('.');
  std::string prefix = dot == std::string::npos ? "" : ref.substr(0, dot + 1);
  auto parsed = models::ParseModelRef(dot == std::string::npos ? ref : ref.substr(dot + 1));
  if (!parsed) return std::nullopt;
  return std::make_pair(prefix + parsed->first, parsed->second);
}

}  // namespace

int CmdModelsPush(const ClientOptions& o, const std::string& ref,
                  const std::vector<std::string>& paths) {
  auto parsed = ParseRef(ref);
  if (!parsed) {
    return Fail("'" + ref + "' is not NAME[:TAG] (NAME: 1-64 letters, digits, '-', '_'; TAG: " +
                "1-128 letters, digits, '-', '_', '.')");
  }
  const auto& [name, tag] = *parsed;
  std::map<std::string, LocalFile> files;
  for (const std::string& p : paths) {
    if (Status st = Collect(p, files); !st.ok()) return Fail(st.message());
  }
  if (files.empty()) return Fail("nothing to push: the paths hold no files");
  const bool tty = ::isatty(STDERR_FILENO) != 0 && !o.json;
  int64_t total = 0, sent_total = 0;
  for (auto& [path, f] : files) {
    auto sha = HashFile(f.host);
    if (!sha.ok()) return Fail(sha.status().message());
    f.sha256 = *sha;
    total += f.size;
  }
  const std::string query = TenantQuery(name);
  for (const auto& [path, f] : files) {
    const std::string target = "/v1/artifacts/_blobs/" + f.sha256 + query;
    auto held = HttpCall(o.server, "HEAD", target, "", Auth(o));
    if (!held.ok()) return Fail(held.status().message());
    if (held->status == 200) {
      if (!o.json)
        std::cerr << "  " << path << ": already in the store (" << Human(f.size) << ")\n";
      continue;
    }
    int last_percent = -1;
    auto progress = [&](int64_t sent, int64_t size) {
      if (!tty) return;
      int percent = size == 0 ? 100 : static_cast<int>(sent * 100 / size);
      if (percent == last_percent) return;
      last_percent = percent;
      const int width = 30, filled = percent * width / 100;
      std::fprintf(stderr, "\r  %s [%s%s] %3d%% %s / %s", path.c_str(),
                   std::string(filled, '#').c_str(), std::string(width - filled, ' ').c_str(),
                   percent, Human(sent).c_str(), Human(size).c_str());
      std::fflush(stderr);
    };
    auto r = HttpPutFile(o.server, target, f.host, Auth(o), progress);
    if (tty) std::fprintf(stderr, "\n");
    if (!r.ok()) return Fail(r.status().message());
    if (r->status != 201) return FailResponse(*r);
    sent_total += f.size;
    if (!tty && !o.json) std::cerr << "  " << path << ": uploaded " << Human(f.size) << "\n";
  }
  json::array list;
  for (const auto& [path, f] : files) {
    list.push_back(json::object{{"path", path}, {"sha256", f.sha256}, {"size", f.size}});
  }
  auto r = HttpCall(o.server, "PUT", "/v1/artifacts/" + name + "/" + tag,
                    JsonText(json::object{{"files", std::move(list)}}),
                    Auth(o, {{"Content-Type", "application/json"}}));
  if (!r.ok()) return Fail(r.status().message());
  if (r->status != 201) return FailResponse(*r);
  if (o.json) {
    std::cout << r->body << "\n";
    return 0;
  }
  json::object m = json::parse(r->body).as_object();
  std::cout << "pushed " << name << ":" << tag << " " << std::string(m.at("digest").as_string())
            << " (" << files.size() << (files.size() == 1 ? " file, " : " files, ") << Human(total)
            << "; " << Human(sent_total) << " uploaded)\n";
  return 0;
}

int CmdModelsList(const ClientOptions& o, const std::string& name) {
  auto r = HttpCall(o.server, "GET", name.empty() ? "/v1/artifacts" : "/v1/artifacts/" + name, "",
                    Auth(o));
  if (!r.ok()) return Fail(r.status().message());
  if (r->status != 200) return FailResponse(*r);
  if (o.json) {
    std::cout << r->body << "\n";
    return 0;
  }
  json::object body = json::parse(r->body).as_object();
  const json::array& rows = body.at(name.empty() ? "models" : "tags").as_array();
  std::printf("%-32s %-16s %-19s %10s %6s  %s\n", "NAME", "TAG", "DIGEST", "SIZE", "FILES",
              "CREATED");
  for (const auto& row : rows) {
    const json::object& m = row.as_object();
    std::string digest(m.at("digest").as_string());
    std::printf("%-32s %-16s %-19s %10s %6ld  %s\n", std::string(m.at("name").as_string()).c_str(),
                std::string(m.at("tag").as_string()).c_str(), digest.substr(0, 19).c_str(),
                Human(m.at("size").to_number<int64_t>()).c_str(),
                static_cast<long>(m.at("files_count").to_number<int64_t>()),
                std::string(m.at("created").as_string()).c_str());
  }
  if (name.empty()) {
    std::printf("tenant %s holds %s of its %s quota\n",
                std::string(body.at("tenant").as_string()).c_str(),
                Human(body.at("used_bytes").to_number<int64_t>()).c_str(),
                Human(body.at("quota_bytes").to_number<int64_t>()).c_str());
  }
  return 0;
}

int CmdModelsRemove(const ClientOptions& o, const std::string& ref) {
  auto parsed = ParseRef(ref);
  if (!parsed) return Fail("'" + ref + "' is not NAME[:TAG]");
  auto r = HttpCall(o.server, "DELETE", "/v1/artifacts/" + parsed->first + "/" + parsed->second, "",
                    Auth(o));
  if (!r.ok()) return Fail(r.status().message());
  if (r->status != 204) return FailResponse(*r);
  if (!o.json) std::cout << "removed " << parsed->first << ":" << parsed->second << "\n";
  return 0;
}

}  // namespace thaw::cli
