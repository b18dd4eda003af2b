// The HTTP Runtime API against a real pool on a real shard thread, driven by a raw client: a
// runtime that pipelines its answer and its next GET /next (as the C++ runtime does) has both
// asked of the pool in one go, and the warm path's answer then goes through the shard's lane
// (FinishOnLane) rather than the pool's mutex; the GET still gets its event, or 410 at a stop.
#include "runtime_api/runtime_server.h"

#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "common/clock.h"
#include "common/shard.h"
#include "common/timers.h"
#include "logs/log_store.h"
#include "pool/launcher.h"
#include "pool/pool.h"
#include "raw_conn.h"

namespace thaw::runtime_api {
namespace {

namespace asio = boost::asio;

class NoTimers final : public Timers {
 public:
  std::unique_ptr<Timer> After(int64_t, std::function<void()>) override {
    return std::make_unique<Handle>();
  }

 private:
  struct Handle final : Timer {
    void Cancel() override {}
  };
};

class NoLauncher final : public pool::Launcher {
 public:
  void Launch(const std::shared_ptr<pool::FunctionPool>&, uint64_t) override {}
  void Kill(pid_t) override {}
};

class RuntimeServerTest : public ::testing::Test {
 protected:
  RuntimeServerTest() : logs_("", logs::LogOptions{}), work_(io_.get_executor()) {
    ctx_.executor = io_.get_executor();
    ctx_.logs = &logs_;
    ctx_.clock = &clock_;
    ctx_.timers = &timers_;
    ctx_.launcher = &launcher_;
    manager_ = std::make_unique<pool::PoolManager>(&ctx_);
    ctx_.manager = manager_.get();
    auto v = std::make_shared<registry::Version>();
    v->function = "acme.hello";
    v->version = 1;
    v->manifest.timeout_ms = 30000;
    pool_ = manager_->Get(v, true);
    shard_ = std::thread([this] {
      SetCurrentShard(0);  // the lanes are the shard's: its thread alone touches them
      io_.run();
    });
    server_ = std::make_unique<RuntimeServer>(io_, 6 << 20);
  }
  ~RuntimeServerTest() override {
    OnShard([this] { pool_->Shutdown(); });
    server_->CloseAll();
    work_.reset();
    io_.stop();
    shard_.join();
  }

  // Runs `f` on the shard thread and waits for it.
  template <typename F>
  void OnShard(F f) {
    std::promise<void> done;
    asio::post(io_, [&] {
      f();
      done.set_value();
    });
    done.get_future().wait();
  }

  // A call submitted on the shard (as the public API's would be); its Result lands in the slot.
  std::shared_ptr<std::optional<pool::Result>> Call(const std::string& id,
                                                    const std::string& payload) {
    auto out = std::make_shared<std::optional<pool::Result>>();
    auto inv = std::make_shared<pool::Invocation>();
    inv->id = id;
    inv->payload = payload;
    OnShard([&] {
      pool_->Invoke(inv, [this, out](pool::Result r) {
        {
          std::lock_guard<std::mutex> lock(mu_);
          *out = std::move(r);
        }
        done_.notify_all();
      });
    });
    return out;
  }

  // Waits for the call's Result (set on the shard).
  bool Done(const std::shared_ptr<std::optional<pool::Result>>& call) {
    std::unique_lock<std::mutex> lock(mu_);
    return done_.wait_for(lock, std::chrono::seconds(10), [&] { return call->has_value(); });
  }

  static std::string Response(const std::string& id, const std::string& body) {
    return "POST /2018-06-01/runtime/invocation/" + id +
           "/response HTTP/1.1\r\nHost: rt\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\n\r\n" + body;
  }
  static constexpr char kNext[] =
      "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: rt\r\n\r\n";

  asio::io_context io_;
  logs::LogStore logs_;
  FakeClock clock_;
  NoTimers timers_;
  NoLauncher launcher_;
  pool::PoolContext ctx_;
  std::unique_ptr<pool::PoolManager> manager_;
  std::shared_ptr<pool::FunctionPool> pool_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::thread shard_;
  std::unique_ptr<RuntimeServer> server_;
  std::mutex mu_;
  std::condition_variable done_;
};

TEST_F(RuntimeServerTest, APipelinedAnswerAndNextGoThroughTheLane) {
  auto warm = Call("warm", R"({"n":0})");  // instance 1, started on shard 0
  OnShard([&] { pool_->OnStarted(1, 4242); });
  auto address = server_->Open(pool_, 1, pool::PeerCheck{}, 0);
  ASSERT_TRUE(address.ok()) << address.status().message();
  testing::RawConn conn("http://" + *address);
  ASSERT_TRUE(conn.Send(kNext));
  ASSERT_TRUE(conn.ReadUntil(R"({"n":0})")) << conn.received();
  EXPECT_NE(conn.received().find("Lambda-Runtime-Aws-Request-Id: warm"), std::string::npos);

  // Each answer with the GET for the next event, in one write.
  ASSERT_TRUE(conn.Send(Response("warm", "\"w\"") + kNext));
  ASSERT_TRUE(conn.ReadUntil("202 Accepted")) << conn.received();
  ASSERT_TRUE(Done(warm));
  EXPECT_EQ((*warm)->body, "\"w\"");
  for (int i = 1; i <= 3; ++i) {
    const std::string id = "r" + std::to_string(i);
    const std::string payload = R"({"n":)" + std::to_string(i) + "}";
    auto call = Call(id, payload);
    ASSERT_TRUE(conn.ReadUntil(payload)) << conn.received();  // the parked GET got it
    EXPECT_NE(conn.received().find("Lambda-Runtime-Aws-Request-Id: " + id), std::string::npos);
    ASSERT_TRUE(conn.Send(Response(id, "\"" + id + "\"") + kNext));
    ASSERT_TRUE(Done(call));
    EXPECT_EQ((*call)->kind, pool::Result::Kind::kOk);
    EXPECT_EQ((*call)->body, "\"" + id + "\"");
  }
  const pool::PoolStats s = pool_->Stats();
  // The first answer reads the instance's peak memory under the mutex; the warm ones after it
  // went through the lane, asked for the next event in the same step.
  EXPECT_EQ(s.lane_calls, 3);
  EXPECT_EQ(s.lane_answers, 3) << "a pipelined answer took the pool's mutex";
  EXPECT_EQ(s.inflight, 0);
  EXPECT_EQ(s.lent, 1);

  // A stop reaches the GET parked behind the last answer: 410, and the connection closes.
  OnShard([&] { pool_->Shutdown(); });
  conn.ReadToEnd(5000);
  EXPECT_NE(conn.received().find("410 Gone"), std::string::npos) << conn.received();
}

// Unpipelined (each request its own write): answered as before, under the pool's mutex.
TEST_F(RuntimeServerTest, AnAnswerWithoutAPipelinedNextTakesTheLockedPath) {
  auto warm = Call("warm", R"({"n":0})");
  OnShard([&] { pool_->OnStarted(1, 4242); });
  auto address = server_->Open(pool_, 1, pool::PeerCheck{}, 0);
  ASSERT_TRUE(address.ok());
  testing::RawConn conn("http://" + *address);
  ASSERT_TRUE(conn.Send(kNext));
  ASSERT_TRUE(conn.ReadUntil(R"({"n":0})"));
  ASSERT_TRUE(conn.Send(Response("warm", "\"w\"")));
  ASSERT_TRUE(conn.ReadUntil("202 Accepted"));
  ASSERT_TRUE(Done(warm));
  ASSERT_TRUE(conn.Send(kNext));
  auto call = Call("r1", R"({"n":1})");
  ASSERT_TRUE(conn.ReadUntil(R"({"n":1})")) << conn.received();
  ASSERT_TRUE(conn.Send(Response("r1", "\"a\"")));
  ASSERT_TRUE(Done(call));
  EXPECT_EQ((*call)->body, "\"a\"");
  EXPECT_EQ(pool_->Stats().lane_answers, 0);
}

}  // namespace
}  // namespace thaw::runtime_api
