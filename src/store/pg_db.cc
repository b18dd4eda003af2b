#include "store/pg_db.h"

#include <cctype>
#include <charconv>
#include <cstring>

namespace thaw::store {
namespace {

// Type OIDs from PostgreSQL's catalog (pg_type.dat); stable across versions.
constexpr Oid kBoolOid = 16;
constexpr Oid kByteaOid = 17;
constexpr Oid kTextOid = 25;
constexpr Oid kUnknownOid = 705;
constexpr Oid kBpcharOid = 1042;
constexpr Oid kVarcharOid = 1043;

// Any key: the lock that serialises migrations across nodes (pg_advisory_xact_lock).
constexpr int64_t kMigrationLock = 0x7468617764620001;  // "thawdb" 1

std::string Trimmed(const char* message) {
  std::string s = message ? message : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// A failed command as a Status: the SQLSTATE class says what the caller should do.
Status ResultError(PGconn* conn, const PGresult* result, std::string_view what) {
  const char* state = result ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
  std::string message = Trimmed(result ? PQresultErrorMessage(result) : PQerrorMessage(conn));
  if (message.empty()) message = Trimmed(PQerrorMessage(conn));
  std::string text = "postgres " + std::string(what) + " failed: " + message;
  const std::string_view code = state ? state : "";
  if (code.starts_with("23")) return Status(StatusCode::kAlreadyExists, std::move(text));
  if (code == "53100") return InsufficientStorage(std::move(text));
  if (code.starts_with("08") || PQstatus(conn) == CONNECTION_BAD) {
    return Unavailable(std::move(text));
  }
  return Internal(std::move(text));
}

bool IsWordChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// Copies a quoted run ('...' with '' escapes, or "...") starting at sql[i] to `out`; returns the
// index after it.
size_t CopyQuoted(std::string_view sql, size_t i, std::string& out) {
  const char quote = sql[i];
  out += sql[i++];
  while (i < sql.size()) {
    out += sql[i];
    if (sql[i++] == quote) {
      if (i < sql.size() && sql[i] == quote) {
        out += sql[i++];
        continue;
      }
      break;
    }
  }
  return i;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class PgStmt : public StmtBackend {
 public:
  PgStmt(PgDb* db, PGconn* conn, std::shared_ptr<const PgDb::Prepared> prepared)
      : db_(db),
        conn_(conn),
        prepared_(std::move(prepared)),
        values_(prepared_->types.size()),
        kinds_(prepared_->types.size(), Kind::kNull) {}
  PgStmt(const PgStmt&) = delete;
  PgStmt& operator=(const PgStmt&) = delete;
  ~PgStmt() override { PQclear(result_); }

  void BindInt(int index, int64_t value) override {
    if (!InRange(index)) return;
    char buf[24];
    auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), value);
    values_[static_cast<size_t>(index - 1)].assign(buf, end);
    kinds_[static_cast<size_t>(index - 1)] = Kind::kInt;
  }
  void BindText(int index, std::string_view value) override {
    if (!InRange(index)) return;
    values_[static_cast<size_t>(index - 1)].assign(value);
    kinds_[static_cast<size_t>(index - 1)] = Kind::kText;
  }
  void BindNull(int index) override {
    if (InRange(index)) kinds_[static_cast<size_t>(index - 1)] = Kind::kNull;
  }

  StatusOr<bool> Next() override {
    if (result_ == nullptr) {
      THAW_RETURN_IF_ERROR(Execute());
      row_ = -1;
    }
    return ++row_ < PQntuples(result_);
  }

  void Reset() override {
    PQclear(result_);
    result_ = nullptr;
    row_ = -1;
    std::fill(kinds_.begin(), kinds_.end(), Kind::kNull);
  }

  int64_t Int(int col) const override {
    if (!HasValue(col)) return 0;
    const char* v = PQgetvalue(result_, row_, col);
    if (PQftype(result_, col) == kBoolOid) return v[0] == 't' ? 1 : 0;
    int64_t out = 0;
    // Stops at a fraction (a numeric SUM is whole anyway), as SQLite's conversion would.
    std::from_chars(v, v + std::strlen(v), out);
    return out;
  }
  std::string Text(int col) const override {
    if (!HasValue(col)) return {};
    const char* v = PQgetvalue(result_, row_, col);
    const size_t n = static_cast<size_t>(PQgetlength(result_, row_, col));
    if (PQftype(result_, col) != kByteaOid) return std::string(v, n);
    // bytea's text form: "\x" and two hex digits per byte.
    std::string out;
    if (n < 2 || v[0] != '\\' || v[1] != 'x') return out;
    out.reserve((n - 2) / 2);
    for (size_t i = 2; i + 1 < n; i += 2) {
      out.push_back(static_cast<char>(HexValue(v[i]) * 16 + HexValue(v[i + 1])));
    }
    return out;
  }
  bool IsNull(int col) const override { return !HasValue(col); }

 private:
  enum class Kind { kNull, kInt, kText };

  bool InRange(int index) const {
    return index >= 1 && static_cast<size_t>(index) <= values_.size();
  }
  bool HasValue(int col) const {
    return result_ != nullptr && row_ >= 0 && row_ < PQntuples(result_) && col >= 0 &&
           col < PQnfields(result_) && !PQgetisnull(result_, row_, col);
  }

  Status Execute() {
    const size_t n = values_.size();
    std::vector<const char*> values(n, nullptr);
    std::vector<int> lengths(n, 0);
    std::vector<int> formats(n, 0);
    for (size_t i = 0; i < n; ++i) {
      if (kinds_[i] == Kind::kNull) continue;
      values[i] = values_[i].c_str();
      lengths[i] = static_cast<int>(values_[i].size());
      const Oid type = prepared_->types[i];
      // Strings go as bytes (binary format) where that is what the parameter's type takes, so
      // a bytea gets them verbatim; integers, and strings for other types, as text to parse.
      if (kinds_[i] == Kind::kText &&
          (type == kByteaOid || type == kTextOid || type == kVarcharOid || type == kBpcharOid ||
           type == kUnknownOid)) {
        formats[i] = 1;
      }
    }
    PGresult* r = PQexecPrepared(conn_, prepared_->name.c_str(), static_cast<int>(n), values.data(),
                                 lengths.data(), formats.data(), 0);
    const ExecStatusType status = PQresultStatus(r);
    if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
      Status st = ResultError(conn_, r, "statement");
      PQclear(r);
      return st;
    }
    db_->NoteResult(r);
    result_ = r;
    return Status::Ok();
  }

  PgDb* db_;
  PGconn* conn_;
  std::shared_ptr<const PgDb::Prepared> prepared_;
  std::vector<std::string> values_;  // by parameter number - 1
  std::vector<Kind> kinds_;
  PGresult* result_ = nullptr;  // all rows of the last execution; null before it
  int row_ = -1;
};

}  // namespace

std::string PostgresDdl(std::string_view sql) {
  constexpr std::string_view kAutoincrement = " PRIMARY KEY AUTOINCREMENT";
  std::string out;
  out.reserve(sql.size() + sql.size() / 4);
  size_t i = 0;
  while (i < sql.size()) {
    const char c = sql[i];
    if (c == '\'' || c == '"') {
      i = CopyQuoted(sql, i, out);
      continue;
    }
    if (!IsWordChar(c)) {
      out += c;
      ++i;
      continue;
    }
    size_t end = i;
    while (end < sql.size() && IsWordChar(sql[end])) ++end;
    const std::string_view word = sql.substr(i, end - i);
    if (word == "INTEGER" && sql.substr(end).starts_with(kAutoincrement)) {
      out += "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY";
      end += kAutoincrement.size();
    } else if (word == "INTEGER") {
      out += "BIGINT";
    } else if (word == "BLOB") {
      out += "BYTEA";
    } else if (word == "TEXT") {
      out += "TEXT COLLATE \"C\"";
    } else {
      out += word;
    }
    i = end;
  }
  return out;
}

std::string PostgresPlaceholders(std::string_view sql, int& params) {
  std::string out;
  out.reserve(sql.size() + 16);
  params = 0;
  size_t i = 0;
  while (i < sql.size()) {
    const char c = sql[i];
    if (c == '\'' || c == '"') {
      i = CopyQuoted(sql, i, out);
      continue;
    }
    if (c == '-' && i + 1 < sql.size() && sql[i + 1] == '-') {
      const size_t nl = sql.find('\n', i);
      const size_t end = nl == std::string_view::npos ? sql.size() : nl;
      out.append(sql.substr(i, end - i));
      i = end;
      continue;
    }
    if (c != '?') {
      out += c;
      ++i;
      continue;
    }
    ++i;
    size_t end = i;
    while (end < sql.size() && std::isdigit(static_cast<unsigned char>(sql[end]))) ++end;
    int n = params + 1;
    if (end > i) std::from_chars(sql.data() + i, sql.data() + end, n);
    params = std::max(params, n);
    out += '$';
    out += std::to_string(n);
    i = end;
  }
  return out;
}

std::string RedactPostgresUrl(std::string_view url) {
  const size_t scheme = url.find("://");
  if (scheme == std::string_view::npos) return std::string(url);
  const size_t start = scheme + 3;
  const size_t at = url.find('@', start);
  const size_t slash = url.find('/', start);
  if (at == std::string_view::npos || (slash != std::string_view::npos && slash < at)) {
    return std::string(url);
  }
  const size_t colon = url.find(':', start);
  if (colon == std::string_view::npos || colon > at) return std::string(url);
  return std::string(url.substr(0, colon + 1)) + "***" + std::string(url.substr(at));
}

StatusOr<std::unique_ptr<Db>> PgDb::Connect(const std::string& url) {
  const std::string shown = RedactPostgresUrl(url);
  char* parse_error = nullptr;
  PQconninfoOption* options = PQconninfoParse(url.c_str(), &parse_error);
  if (options == nullptr) {
    std::string why = Trimmed(parse_error ? parse_error : "out of memory");
    PQfreemem(parse_error);
    return InvalidArgument("store: malformed PostgreSQL URL " + shown + ": " + why);
  }
  PQconninfoFree(options);
  // connect_timeout before dbname: the URL (expanded from dbname) may override it.
  const char* keywords[] = {"connect_timeout", "fallback_application_name", "dbname", nullptr};
  const char* values[] = {"10", "thaw", url.c_str(), nullptr};
  PGconn* conn = PQconnectdbParams(keywords, values, 1);
  if (conn == nullptr) return Internal("store: out of memory connecting to " + shown);
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string why = Trimmed(PQerrorMessage(conn));
    PQfinish(conn);
    return Unavailable("store: failed to connect to PostgreSQL at " + shown + ": " + why);
  }
  // Notices ("relation already exists, skipping") are not errors: keep them off stderr.
  PQsetNoticeProcessor(
      conn, [](void*, const char*) {}, nullptr);
  std::unique_ptr<PgDb> db(new PgDb(conn, shown));
  // Timestamps are integers; no session setting changes what thaw reads back.
  return std::unique_ptr<Db>(std::move(db));
}

PgDb::~PgDb() {
  DropCache();  // deallocated before the connection closes
  PQfinish(conn_);
}

Status PgDb::EnsureConnected(std::string_view sql) {
  if (PQstatus(conn_) == CONNECTION_OK) return Status::Ok();
  if (in_transaction_) {
    if (sql == "ROLLBACK") in_transaction_ = false;
    return Unavailable("store: lost the connection to PostgreSQL at " + url_ +
                       " in a transaction, which is rolled back");
  }
  prepared_.clear();
  PQreset(conn_);
  if (PQstatus(conn_) != CONNECTION_OK) {
    return Unavailable("store: lost the connection to PostgreSQL at " + url_ + ": " +
                       Trimmed(PQerrorMessage(conn_)));
  }
  return Status::Ok();
}

void PgDb::NoteResult(const PGresult* result) {
  const PGTransactionStatusType t = PQtransactionStatus(conn_);
  in_transaction_ = t == PQTRANS_INTRANS || t == PQTRANS_INERROR;
  const std::string_view command = PQcmdStatus(const_cast<PGresult*>(result));
  if (command.starts_with("INSERT") || command.starts_with("UPDATE") ||
      command.starts_with("DELETE")) {
    const char* rows = PQcmdTuples(const_cast<PGresult*>(result));
    int64_t n = 0;
    std::from_chars(rows, rows + std::strlen(rows), n);
    changes_ = n;
  }
}

Status PgDb::Exec(const std::string& sql) {
  THAW_RETURN_IF_ERROR(EnsureConnected(sql));
  PGresult* r = PQexec(conn_, sql.c_str());
  const ExecStatusType status = PQresultStatus(r);
  Status st = Status::Ok();
  if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
    NoteResult(r);
  } else {
    st = ResultError(conn_, r, "exec");
    if (PQstatus(conn_) == CONNECTION_OK)
      in_transaction_ = PQtransactionStatus(conn_) != PQTRANS_IDLE;
  }
  PQclear(r);
  return st;
}

StatusOr<Stmt> PgDb::Prepare(std::string_view sql) {
  THAW_RETURN_IF_ERROR(EnsureConnected(sql));
  std::string key(sql);
  auto it = prepared_.find(key);
  if (it == prepared_.end()) {
    int params = 0;
    const std::string text = PostgresPlaceholders(sql, params);
    auto prepared = std::make_shared<Prepared>();
    prepared->name = "thaw_" + std::to_string(next_name_++);
    PGresult* r = PQprepare(conn_, prepared->name.c_str(), text.c_str(), 0, nullptr);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
      Status st = ResultError(conn_, r, "prepare");
      PQclear(r);
      return Status(st.code(), st.message() + " (in: " + text + ")");
    }
    PQclear(r);
    // The types the server inferred for each parameter: how to send what is bound to it.
    r = PQdescribePrepared(conn_, prepared->name.c_str());
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
      Status st = ResultError(conn_, r, "describe");
      PQclear(r);
      return st;
    }
    for (int i = 0; i < PQnparams(r); ++i) prepared->types.push_back(PQparamtype(r, i));
    PQclear(r);
    it = prepared_.emplace(std::move(key), std::move(prepared)).first;
  }
  return Stmt(std::make_unique<PgStmt>(this, conn_, it->second));
}

Status PgDb::Notify(std::string_view kind, std::string_view id) {
  auto stmt = Prepare("SELECT pg_notify('" + std::string(kChangesChannel) + "', ?)");
  if (!stmt.ok()) return stmt.status();
  // A payload is at most 8000 bytes; names and ids are far shorter.
  return stmt->Bind(1, std::string(kind) + ":" + std::string(id)).Run();
}

Status PgDb::Migrate(std::span<const Migration> migrations) {
  THAW_RETURN_IF_ERROR(Exec("BEGIN"));
  Status st = Exec("SELECT pg_advisory_xact_lock(" + std::to_string(kMigrationLock) + ")");
  if (st.ok()) st = Exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER)");
  int64_t current = 0;
  if (st.ok()) {
    auto stmt = Prepare("SELECT COALESCE(MAX(version), 0) FROM schema_version");
    auto row = stmt.ok() ? stmt->Next() : StatusOr<bool>(stmt.status());
    if (!row.ok()) st = row.status();
    if (st.ok()) current = stmt->Int(0);
  }
  for (int64_t v = current; st.ok() && v < static_cast<int64_t>(migrations.size()); ++v) {
    const Migration& m = migrations[static_cast<size_t>(v)];
    st = Exec(m.postgres != nullptr ? std::string(m.postgres) : PostgresDdl(m.sql));
    if (st.ok()) st = Exec("INSERT INTO schema_version VALUES (" + std::to_string(v + 1) + ")");
    if (!st.ok())
      st = Status(st.code(), "migration " + std::to_string(v + 1) + ": " + st.message());
  }
  if (st.ok()) st = Exec("COMMIT");
  if (!st.ok()) (void)Exec("ROLLBACK");
  return st;
}

}  // namespace thaw::store
