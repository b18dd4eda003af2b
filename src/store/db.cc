#include "store/db.h"

#include "store/pg_db.h"
#include "store/sqlite_db.h"

namespace thaw::store {
namespace {

// Each entry moves the schema one version forward; never edit a shipped entry, append one.
// An entry is SQLite's text, which PostgreSQL runs translated (PostgresDdl): INTEGER, BLOB and
// TEXT columns only; {sqlite, postgres} where a step needs text of its own for PostgreSQL.
constexpr Migration kMigrations[] = {
    R"sql(
    CREATE TABLE functions (
      name TEXT PRIMARY KEY,
      latest_version INTEGER NOT NULL,
      created_us INTEGER NOT NULL,
      updated_us INTEGER NOT NULL
    );
    CREATE TABLE versions (
      name TEXT NOT NULL,
      version INTEGER NOT NULL,
      sha256 TEXT NOT NULL,
      manifest TEXT NOT NULL,
      code_size INTEGER NOT NULL,
      created_us INTEGER NOT NULL,
      PRIMARY KEY (name, version)
    );
    CREATE TABLE invocations (
      request_id TEXT PRIMARY KEY,
      function TEXT NOT NULL,
      version TEXT NOT NULL,
      start_us INTEGER NOT NULL,
      end_us INTEGER NOT NULL,
      duration_us INTEGER NOT NULL,
      billed_ms INTEGER NOT NULL,
      memory_mb INTEGER NOT NULL,
      max_memory_used_mb INTEGER NOT NULL,
      cold_start INTEGER NOT NULL,
      init_us INTEGER NOT NULL,
      status TEXT NOT NULL,
      error_type TEXT NOT NULL,
      bytes_in INTEGER NOT NULL,
      bytes_out INTEGER NOT NULL
    );
    CREATE INDEX invocations_by_function ON invocations (function, start_us);
    )sql",
    // The Lambda API's model: published versions (revision numbers the user published),
    // aliases (a version, or 0 for $LATEST, plus weighted routing to other versions as JSON
    // {"N": weight}) and reserved concurrency (NULL: none).
    R"sql(
    ALTER TABLE functions ADD COLUMN reserved_concurrency INTEGER;
    CREATE TABLE published_versions (
      name TEXT NOT NULL,
      version INTEGER NOT NULL,
      description TEXT NOT NULL,
      created_us INTEGER NOT NULL,
      PRIMARY KEY (name, version)
    );
    CREATE TABLE aliases (
      name TEXT NOT NULL,
      alias TEXT NOT NULL,
      version INTEGER NOT NULL,
      routing TEXT NOT NULL,
      description TEXT NOT NULL,
      created_us INTEGER NOT NULL,
      updated_us INTEGER NOT NULL,
      PRIMARY KEY (name, alias)
    );
    )sql",
    // 3: CPU time actually used, per invocation (cgroup, or the runtime process's rusage).
    R"sql(
    ALTER TABLE invocations ADD COLUMN cpu_us INTEGER NOT NULL DEFAULT 0;
    )sql",
    // 4: tenants with their limits (NULL: none), API keys (the secret is never stored: only
    // its SHA-256; see auth/keys.h), and the tenant and GPU time of each invocation.
    R"sql(
    CREATE TABLE tenants (
      name TEXT PRIMARY KEY,
      concurrency INTEGER,
      rate_per_second INTEGER,
      monthly_budget_micros INTEGER,
      created_us INTEGER NOT NULL
    );
    INSERT INTO tenants (name, created_us) VALUES ('default', 0);
    CREATE TABLE api_keys (
      id TEXT PRIMARY KEY,
      tenant TEXT NOT NULL,
      role TEXT NOT NULL,
      secret_sha256 TEXT NOT NULL UNIQUE,
      description TEXT NOT NULL,
      created_us INTEGER NOT NULL
    );
    ALTER TABLE invocations ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
    ALTER TABLE invocations ADD COLUMN gpu_us INTEGER NOT NULL DEFAULT 0;
    )sql",
    // 5: the durable queue of asynchronous (Event) invocations (queue/event_queue.h), and
    // each function's event invoke config (Lambda's MaximumRetryAttempts and
    // MaximumEventAgeInSeconds; NULL: Lambda's default).
    R"sql(
    CREATE TABLE events (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      request_id TEXT NOT NULL,
      function TEXT NOT NULL,
      qualifier TEXT NOT NULL,
      payload BLOB NOT NULL,
      client_context TEXT NOT NULL,
      state TEXT NOT NULL,
      attempts INTEGER NOT NULL,
      next_at_us INTEGER NOT NULL,
      created_us INTEGER NOT NULL,
      updated_us INTEGER NOT NULL
    );
    CREATE INDEX events_by_state ON events (state, function);
    CREATE TABLE event_invoke_configs (
      function TEXT NOT NULL,
      qualifier TEXT NOT NULL,
      max_retry_attempts INTEGER,
      max_event_age_s INTEGER,
      updated_us INTEGER NOT NULL,
      PRIMARY KEY (function, qualifier)
    );
    )sql",
    // 6: the tokens an OpenAI-style function reported for each invocation.
    R"sql(
    ALTER TABLE invocations ADD COLUMN prompt_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE invocations ADD COLUMN completion_tokens INTEGER NOT NULL DEFAULT 0;
    )sql",
    // 7: the size of the batch a call ran in (functions with `batch:`; 0: not batched).
    R"sql(
    ALTER TABLE invocations ADD COLUMN batch_size INTEGER NOT NULL DEFAULT 0;
    )sql",
    // 8: jobs (queue/job_store.h): long asynchronous invocations with status, output and
    // metrics; when each schedule last fired.
    R"sql(
    CREATE TABLE jobs (
      id TEXT PRIMARY KEY,
      function TEXT NOT NULL,
      qualifier TEXT NOT NULL,
      input BLOB,
      status TEXT NOT NULL,
      output BLOB,
      output_dropped INTEGER NOT NULL DEFAULT 0,
      error_type TEXT NOT NULL DEFAULT '',
      error_message TEXT NOT NULL DEFAULT '',
      webhook TEXT NOT NULL,
      webhook_events INTEGER NOT NULL,
      start_kind TEXT NOT NULL DEFAULT '',
      created_us INTEGER NOT NULL,
      started_us INTEGER NOT NULL DEFAULT 0,
      completed_us INTEGER NOT NULL DEFAULT 0,
      duration_us INTEGER NOT NULL DEFAULT 0,
      billed_ms INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX jobs_by_function ON jobs (function, id);
    CREATE INDEX jobs_by_status ON jobs (status);
    CREATE TABLE schedule_runs (
      function TEXT NOT NULL,
      expression TEXT NOT NULL,
      anchor_us INTEGER NOT NULL,
      last_fire_us INTEGER NOT NULL,
      PRIMARY KEY (function, expression)
    );
    )sql",
    // 9: the model store (models/store.h): each tenant's NAME:TAG -> a tree digest, each tree's
    // file list (JSON [{path, sha256, size}]), and the blobs each tenant has uploaded (its
    // quota and the proof it holds their bytes).
    R"sql(
    CREATE TABLE model_tags (
      tenant TEXT NOT NULL,
      name TEXT NOT NULL,
      tag TEXT NOT NULL,
      digest TEXT NOT NULL,
      created_us INTEGER NOT NULL,
      PRIMARY KEY (tenant, name, tag)
    );
    CREATE TABLE model_trees (
      digest TEXT PRIMARY KEY,
      files TEXT NOT NULL,
      size INTEGER NOT NULL
    );
    CREATE TABLE model_uploads (
      tenant TEXT NOT NULL,
      sha256 TEXT NOT NULL,
      size INTEGER NOT NULL,
      created_us INTEGER NOT NULL,
      PRIMARY KEY (tenant, sha256)
    );
    )sql",
    // 10: how a cold start's instance began: fork (from a template) or full; '' when warm.
    R"sql(
    ALTER TABLE invocations ADD COLUMN start_kind TEXT NOT NULL DEFAULT '';
    )sql",
    // 11: Event destinations and dead letters (queue/event_queue.h): why an event ended, its
    // last error and the tries made before it was last redriven, destinations per event invoke
    // config (NULL: none; a function's internal name[:qualifier] or an http(s) URL), and the
    // invocation records on their way to webhooks.
    R"sql(
    ALTER TABLE events ADD COLUMN condition TEXT NOT NULL DEFAULT '';
    ALTER TABLE events ADD COLUMN error TEXT NOT NULL DEFAULT '';
    ALTER TABLE events ADD COLUMN attempts_before INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE event_invoke_configs ADD COLUMN on_success TEXT;
    ALTER TABLE event_invoke_configs ADD COLUMN on_failure TEXT;
    CREATE TABLE deliveries (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      event_id INTEGER NOT NULL,
      function TEXT NOT NULL,
      url TEXT NOT NULL,
      record BLOB NOT NULL,
      on_failure INTEGER NOT NULL,
      state TEXT NOT NULL,
      attempts INTEGER NOT NULL,
      next_at_us INTEGER NOT NULL,
      created_us INTEGER NOT NULL,
      updated_us INTEGER NOT NULL
    );
    CREATE INDEX deliveries_by_state ON deliveries (state);
    CREATE INDEX events_by_function ON events (function, id);
    )sql",
    // 12: the adaptive keep-alive's idle-time histograms (pool/idle_times_store.h), per
    // function and pool kind (latest: 1 for calls through $LATEST, 0 for calls by number).
    R"sql(
    CREATE TABLE idle_times (
      function TEXT NOT NULL,
      latest INTEGER NOT NULL,
      bins TEXT NOT NULL,
      updated_us INTEGER NOT NULL,
      PRIMARY KEY (function, latest)
    );
    )sql",
    // 13: several nodes on one queue (queue/event_queue.h): the node that owns each event, and
    // each node's lease on what it owns (renewed on its tick; past it, others take its events).
    R"sql(
    ALTER TABLE events ADD COLUMN owner TEXT NOT NULL DEFAULT '';
    CREATE INDEX events_by_owner ON events (owner, state);
    CREATE TABLE queue_leases (
      node TEXT PRIMARY KEY,
      lease_until_us INTEGER NOT NULL
    );
    )sql",
    // 14: jobs and webhook deliveries owned by a node too, under the same leases (queue_leases):
    // a node's start and tick take only its own and those of nodes whose lease has passed.
    R"sql(
    ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT '';
    CREATE INDEX jobs_by_owner ON jobs (owner, status);
    ALTER TABLE deliveries ADD COLUMN owner TEXT NOT NULL DEFAULT '';
    CREATE INDEX deliveries_by_owner ON deliveries (owner, state);
    )sql",
};

}  // namespace

Status Stmt::Run() {
  for (;;) {
    auto row = Next();
    if (!row.ok()) return row.status();
    if (!*row) return Status::Ok();
  }
}

bool Db::IsPostgresUrl(std::string_view location) {
  return location.starts_with("postgres://") || location.starts_with("postgresql://");
}

StatusOr<std::unique_ptr<Db>> Db::Open(const std::string& location) {
  StatusOr<std::unique_ptr<Db>> db =
      IsPostgresUrl(location) ? PgDb::Connect(location) : SqliteDb::OpenFile(location);
  if (!db.ok()) return db.status();
  THAW_RETURN_IF_ERROR((*db)->Migrate(kMigrations));
  return db;
}

StatusOr<CachedStmt> Db::PrepareCached(std::string_view sql) {
  auto it = cache_.find(sql);
  if (it == cache_.end()) {
    auto stmt = Prepare(sql);
    if (!stmt.ok()) return stmt.status();
    it = cache_.emplace(std::string(sql), std::make_unique<Stmt>(std::move(*stmt))).first;
  }
  return CachedStmt(it->second.get());
}

Status Db::RunCached(std::string_view sql) {
  auto stmt = PrepareCached(sql);
  if (!stmt.ok()) return stmt.status();
  return (*stmt)->Run();
}

}  // namespace thaw::store
