#include "store/change_listener.h"

#include <libpq-fe.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "store/db.h"
#include "store/pg_db.h"

namespace thaw::store {
namespace {

constexpr int kFirstRetryMs = 100;
constexpr int kMaxRetryMs = 1000;

std::string Trimmed(const char* message) {
  std::string s = message ? message : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

Change ParseChange(std::string_view payload) {
  const size_t colon = payload.find(':');
  if (colon == std::string_view::npos) return Change{std::string(payload), ""};
  return Change{std::string(payload.substr(0, colon)), std::string(payload.substr(colon + 1))};
}

ChangeListener::ChangeListener(std::string url, Handler handler, int stop_fd)
    : url_(std::move(url)), handler_(std::move(handler)), stop_fd_(stop_fd) {}

StatusOr<std::unique_ptr<ChangeListener>> ChangeListener::Start(std::string url, Handler handler) {
  const int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) return ErrnoStatus("eventfd", "change listener", errno);
  std::unique_ptr<ChangeListener> l(new ChangeListener(std::move(url), std::move(handler), fd));
  l->thread_ = std::thread([raw = l.get()] { raw->Run(); });
  return l;
}

ChangeListener::~ChangeListener() {
  const uint64_t one = 1;
  (void)!::write(stop_fd_, &one, sizeof(one));
  if (thread_.joinable()) thread_.join();
  ::close(stop_fd_);
}

bool ChangeListener::WaitStop(int ms) {
  pollfd p{stop_fd_, POLLIN, 0};
  return ::poll(&p, 1, ms) > 0;
}

void ChangeListener::Run() {
  const std::string shown = RedactPostgresUrl(url_);
  PGconn* conn = nullptr;
  int retry_ms = kFirstRetryMs;
  std::string last_error;
  bool retry_all = false;  // the handler failed: everything is read again in a second
  auto hand = [&](const std::vector<Change>& batch) {
    Status st = handler_(batch);
    if (!st.ok()) spdlog::warn("store changes: {} (trying again in 1 s)", st.message());
    retry_all = !st.ok();
  };
  auto lost = [&](const std::string& why) {
    if (why != last_error) spdlog::warn("store changes: {} ({}); reconnecting", why, shown);
    last_error = why;
    if (conn != nullptr) PQfinish(conn);
    conn = nullptr;
  };
  for (;;) {
    if (conn == nullptr) {
      // Keepalives: a peer gone silent (a cut network) is noticed in seconds, not hours.
      const char* keywords[] = {"connect_timeout",  "keepalives",
                                "keepalives_idle",  "keepalives_interval",
                                "keepalives_count", "fallback_application_name",
                                "dbname",           nullptr};
      const char* values[] = {"5", "1", "5", "2", "2", "thaw-listen", url_.c_str(), nullptr};
      conn = PQconnectdbParams(keywords, values, 1);
      PGresult* r = nullptr;
      if (conn != nullptr && PQstatus(conn) == CONNECTION_OK) {
        r = PQexec(conn, (std::string("LISTEN ") + Db::kChangesChannel).c_str());
      }
      const bool ok = r != nullptr && PQresultStatus(r) == PGRES_COMMAND_OK;
      std::string why = ok ? "" : Trimmed(conn ? PQerrorMessage(conn) : "out of memory");
      PQclear(r);
      if (!ok) {
        lost("cannot listen: " + why);
        if (WaitStop(retry_ms)) break;
        retry_ms = std::min(retry_ms * 2, kMaxRetryMs);
        continue;
      }
      PQsetnonblocking(conn, 1);
      if (!last_error.empty()) spdlog::info("store changes: listening again ({})", shown);
      last_error.clear();
      retry_ms = kFirstRetryMs;
      connects_.fetch_add(1);
      // What changed while nobody listened is unknown: everything is read again.
      hand({Change{"*", ""}});
    }
    pollfd fds[2] = {{PQsocket(conn), POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    const int ready = ::poll(fds, 2, retry_all ? kMaxRetryMs : -1);
    if (ready < 0) {
      if (errno == EINTR) continue;
      lost("poll failed");
      continue;
    }
    if (fds[1].revents != 0) break;
    if (ready == 0) {
      hand({Change{"*", ""}});
      continue;
    }
    if (PQconsumeInput(conn) == 0 || PQstatus(conn) != CONNECTION_OK) {
      lost("lost the connection: " + Trimmed(PQerrorMessage(conn)));
      continue;
    }
    std::vector<Change> batch;
    while (PGnotify* n = PQnotifies(conn)) {
      Change c = ParseChange(n->extra);
      if (std::find(batch.begin(), batch.end(), c) == batch.end()) batch.push_back(std::move(c));
      PQfreemem(n);
    }
    if (retry_all && !batch.empty()) batch = {Change{"*", ""}};
    if (!batch.empty()) hand(batch);
  }
  if (conn != nullptr) PQfinish(conn);
}

}  // namespace thaw::store
