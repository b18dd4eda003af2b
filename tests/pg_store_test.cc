// `thaw serve --store postgres://...`: a real server keeps its durable state in a private
// PostgreSQL (tests/pg_server.h): functions deployed and invoked there, usage that adds up to
// the ledger's rows, both surviving a restart; and a store it cannot use stops it at start with
// the reason. Skips, saying why, without PostgreSQL's server binaries.
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <boost/json.hpp>

#include "common/files.h"
#include "pg_server.h"
#include "server_fixture.h"

namespace thaw::testing {
namespace {

namespace json = boost::json;

struct Ledger {
  int64_t rows = 0, billed_ms = 0, billed_mb_ms = 0;
};

// The invocation rows of `function`, read straight from PostgreSQL.
Ledger ReadLedger(const std::string& url, const std::string& function) {
  Ledger l;
  PGconn* conn = PQconnectdb(url.c_str());
  EXPECT_EQ(PQstatus(conn), CONNECTION_OK) << PQerrorMessage(conn);
  const char* params[] = {function.c_str()};
  PGresult* r = PQexecParams(conn,
                             "SELECT COUNT(*), COALESCE(SUM(billed_ms), 0), "
                             "COALESCE(SUM(billed_ms * memory_mb), 0) FROM invocations "
                             "WHERE function = $1 AND status = 'success'",
                             1, nullptr, params, nullptr, nullptr, 0);
  EXPECT_EQ(PQresultStatus(r), PGRES_TUPLES_OK) << PQresultErrorMessage(r);
  if (PQresultStatus(r) == PGRES_TUPLES_OK) {
    l.rows = std::stoll(PQgetvalue(r, 0, 0));
    l.billed_ms = std::stoll(PQgetvalue(r, 0, 1));
    l.billed_mb_ms = std::stoll(PQgetvalue(r, 0, 2));
  }
  PQclear(r);
  PQfinish(conn);
  return l;
}

class PgStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    PgServer* pg = PgServer::Shared(why);
    if (pg == nullptr) GTEST_SKIP() << "no PostgreSQL: " << why;
    url_ = pg->CreateDatabase();
    ASSERT_FALSE(url_.empty());
  }
  json::object Usage(const ThawServer& server, const std::string& function) {
    auto r = server.Call("GET", "/v1/usage?function=" + function);
    EXPECT_EQ(r.status, 200) << r.body;
    return json::parse(r.body).as_object();
  }
  std::string url_;
};

TEST_F(PgStoreTest, DeployInvokeAndUsageLiveInPostgres) {
  const std::string data_dir = MakeBundle({});
  const std::string bundle =
      PythonBundle("hello", "def handler(event, context):\n    return {'ok': True}\n");
  {
    auto server = ThawServer::Start({"--store", url_}, data_dir);
    ASSERT_EQ(server->Deploy("hello", bundle).status, 201);
    for (int i = 0; i < 3; ++i) ASSERT_EQ(server->Invoke("hello").status, 200);
    json::object body = Usage(*server, "hello");  // flushes the meter first
    json::object total = body["total"].as_object();
    EXPECT_EQ(total["invocations"].as_int64(), 3) << body;
    const Ledger l = ReadLedger(url_, "hello");
    EXPECT_EQ(l.rows, 3);
    EXPECT_EQ(total["billed_ms"].as_int64(), l.billed_ms);
    EXPECT_EQ(total["billed_mb_ms"].as_int64(), l.billed_mb_ms);
    EXPECT_EQ(server->Stop(), 0);
  }
  // Nothing durable went to SQLite.
  EXPECT_FALSE(PathExists(data_dir + "/thaw.db"));
  // Restarted on the same store: the function and its usage are there.
  auto server = ThawServer::Start({"--store", url_}, data_dir);
  ASSERT_EQ(server->Invoke("hello").status, 200);
  json::object total = Usage(*server, "hello")["total"].as_object();
  EXPECT_EQ(total["invocations"].as_int64(), 4);
  EXPECT_EQ(ReadLedger(url_, "hello").rows, 4);
  EXPECT_EQ(total["billed_ms"].as_int64(), ReadLedger(url_, "hello").billed_ms);
  server.reset();
  RemoveDir(bundle);
  RemoveDir(data_dir);
}

TEST(PgStoreStartTest, UnusableStoreStopsServeWithTheReason) {
  const std::string data_dir = MakeBundle({});
  struct Case {
    std::string store, message;
  };
  const Case cases[] = {
      // Nothing listens on port 1.
      {"postgres://thaw:pw@127.0.0.1:1/thaw",
       "failed to connect to PostgreSQL at "
       "postgres://thaw:***@127.0.0.1:1/thaw"},
      {"mysql://thaw@127.0.0.1/thaw", "config store: expected a postgres://"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.store);
    ProcessResult r = RunProcess({THAW_BINARY, "serve", "--listen", "127.0.0.1:0", "--data-dir",
                                  data_dir, "--store", c.store},
                                 nullptr);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE((r.out + r.err).find(c.message), std::string::npos) << r.out << r.err;
    EXPECT_EQ((r.out + r.err).find(":pw@"), std::string::npos) << "password printed";
  }
  RemoveDir(data_dir);
}

}  // namespace
}  // namespace thaw::testing
