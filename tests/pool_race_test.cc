// FunctionPool's races, ordered by hand: the pool runs on a manual executor (one queued handler
// at a time), a fake clock with manual timers, and a launcher that records what the pool asks
// and answers when the test says. Each test pins one ordering the real server can produce and
// fails if the code that guards it is removed:
//   (a) an instance's exit event arriving before its pid is registered (PoolManager's early
//       exits);
//   (b) a call's deadline firing against its response arriving (the pool's active-call check);
//   (c) a drain against a call being dispatched (called_since_drain_, and busy instances not
//       counted idle).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "logs/log_store.h"
#include "manual_executor.h"
#include "pool/launcher.h"
#include "pool/pool.h"
#include "sandbox/spawner.h"

namespace thaw::pool {
namespace {

constexpr int64_t kMs = 1000;
constexpr int64_t kTimeoutMs = 3000;

// Records the pool's asks; the test answers them (FunctionPool::OnStarted, PoolManager::OnExit).
class RecordingLauncher final : public Launcher {
 public:
  void Launch(const std::shared_ptr<FunctionPool>& pool, uint64_t instance_id) override {
    launches.push_back({pool, instance_id});
  }
  void Kill(pid_t pid) override { kills.push_back(pid); }

  std::vector<std::pair<std::weak_ptr<FunctionPool>, uint64_t>> launches;
  std::vector<pid_t> kills;
};

class PoolRaceTest : public ::testing::Test {
 protected:
  PoolRaceTest() : logs_("", logs::LogOptions{}), timers_(&clock_, &executor_), manager_(&ctx_) {
    ctx_.executor = executor_.executor();
    ctx_.logs = &logs_;
    ctx_.clock = &clock_;
    ctx_.timers = &timers_;
    ctx_.launcher = &launcher_;
    ctx_.manager = &manager_;
    auto v = std::make_shared<registry::Version>();
    v->function = "acme.hello";
    v->version = 1;
    v->manifest.timeout_ms = kTimeoutMs;
    pool_ = manager_.Get(v, true);
  }

  // Submits a call; its Result lands in the returned slot once the executor runs it.
  std::shared_ptr<std::optional<Result>> Call(const std::string& id) {
    auto out = std::make_shared<std::optional<Result>>();
    auto inv = std::make_shared<Invocation>();
    inv->id = id;
    inv->payload = "{}";
    pool_->Invoke(inv, [out](Result r) {
      EXPECT_FALSE(out->has_value()) << "a call completed twice";
      *out = std::move(r);
    });
    return out;
  }

  // The runtime's GET /next; the event (or nullptr: stop) lands in the returned slot.
  std::shared_ptr<std::optional<InvocationPtr>> Next(uint64_t instance_id) {
    auto out = std::make_shared<std::optional<InvocationPtr>>();
    pool_->Next(instance_id, [out](InvocationPtr inv) { *out = std::move(inv); });
    return out;
  }

  // Starts instance `id` as pid `pid` and has its runtime ask for work: it is ready.
  std::shared_ptr<std::optional<InvocationPtr>> Ready(uint64_t id, pid_t pid) {
    pool_->OnStarted(id, pid);
    auto next = Next(id);
    executor_.RunAll();
    return next;
  }

  // Instance 1 (pid 4242), ready and idle after one call, its runtime waiting in GET /next;
  // returns that wait.
  std::shared_ptr<std::optional<InvocationPtr>> IdleInstance() {
    auto warm = Call("warm");
    auto next = Ready(1, 4242);
    EXPECT_TRUE(next->has_value() && **next != nullptr);
    EXPECT_TRUE(pool_->Respond(1, "warm", "{}").ok());
    auto again = Next(1);
    executor_.RunAll();
    EXPECT_TRUE(warm->has_value());
    EXPECT_FALSE(again->has_value());
    return again;
  }

  sandbox::ExitEvent Exit(pid_t pid, int code) {
    sandbox::ExitEvent e;
    e.pid = pid;
    e.wait_status = code << 8;  // as waitpid reports exit(code)
    return e;
  }

  int64_t Instances() { return static_cast<int64_t>(pool_->Stats().instances.size()); }

  thaw::testing::ManualExecutor executor_;
  logs::LogStore logs_;
  FakeClock clock_;
  thaw::testing::ManualTimers timers_;
  RecordingLauncher launcher_;
  PoolContext ctx_;
  PoolManager manager_;
  std::shared_ptr<FunctionPool> pool_;
};

// (a) The spawner's exit event and its spawn reply travel on different sockets: a runtime that
// dies at once can be reported gone before the pool has registered its pid. The exit must
// still end the instance, and the call waiting for it fails with the init error at once, not
// at the init timeout.
TEST_F(PoolRaceTest, ExitBeforeRegistrationEndsTheInstance) {
  auto call = Call("r1");
  ASSERT_EQ(launcher_.launches.size(), 1u);
  const uint64_t id = launcher_.launches[0].second;
  manager_.OnExit(Exit(4242, 1));  // nothing registered 4242 yet
  pool_->OnStarted(id, 4242);      // the spawn reply comes second
  executor_.RunAll();
  ASSERT_TRUE(call->has_value()) << "the call waits for an instance that is gone";
  EXPECT_EQ((*call)->kind, Result::Kind::kInitError);
  EXPECT_NE((*call)->error_message.find("exit status 1"), std::string::npos)
      << (*call)->error_message;
  EXPECT_EQ(Instances(), 0);
}

// The usual order (registered, then gone) ends it the same way.
TEST_F(PoolRaceTest, ExitAfterRegistrationEndsTheInstance) {
  auto call = Call("r1");
  ASSERT_EQ(launcher_.launches.size(), 1u);
  pool_->OnStarted(launcher_.launches[0].second, 4242);
  manager_.OnExit(Exit(4242, 1));
  executor_.RunAll();
  ASSERT_TRUE(call->has_value());
  EXPECT_EQ((*call)->kind, Result::Kind::kInitError);
  EXPECT_EQ(Instances(), 0);
}

// (b) The deadline fired (its handler is queued) and the response arrives before that handler
// runs: the response wins, and the late deadline must neither fail the call again nor kill the
// instance that answered in time.
TEST_F(PoolRaceTest, ResponseBeforeAQueuedDeadlineWins) {
  auto call = Call("r1");
  auto next = Ready(1, 4242);
  ASSERT_TRUE(next->has_value() && **next != nullptr);
  timers_.Advance(kTimeoutMs * kMs);  // the deadline's handler is queued, not yet run
  ASSERT_TRUE(pool_->Respond(1, "r1", "\"ok\"").ok());
  executor_.RunAll();  // the result, then the stale deadline
  ASSERT_TRUE(call->has_value());
  EXPECT_EQ((*call)->kind, Result::Kind::kOk);
  EXPECT_EQ((*call)->body, "\"ok\"");
  EXPECT_TRUE(launcher_.kills.empty()) << "an instance that answered in time was killed";
  EXPECT_EQ(pool_->Stats().instances_by_state["ready"], 1);
}

// The deadline's handler runs first: the call times out, the instance is killed, and the
// response that arrives after is refused rather than completing the call a second time.
TEST_F(PoolRaceTest, DeadlineBeforeTheResponseWins) {
  auto call = Call("r1");
  auto next = Ready(1, 4242);
  ASSERT_TRUE(next->has_value() && **next != nullptr);
  timers_.Advance(kTimeoutMs * kMs);
  executor_.RunAll();
  ASSERT_TRUE(call->has_value());
  EXPECT_EQ((*call)->kind, Result::Kind::kTimeout);
  EXPECT_EQ(launcher_.kills, std::vector<pid_t>{4242});
  EXPECT_EQ(pool_->Respond(1, "r1", "\"late\"").code(), StatusCode::kNotFound);
  executor_.RunAll();
  EXPECT_EQ((*call)->kind, Result::Kind::kTimeout);
}

// A response in time disarms the deadline: advancing past it fires nothing.
TEST_F(PoolRaceTest, AResponseDisarmsTheDeadline) {
  auto call = Call("r1");
  auto next = Ready(1, 4242);
  ASSERT_TRUE(pool_->Respond(1, "r1", "\"ok\"").ok());
  EXPECT_EQ(timers_.armed(), 0u);
  timers_.Advance(2 * kTimeoutMs * kMs);
  executor_.RunAll();
  ASSERT_TRUE(call->has_value());
  EXPECT_EQ((*call)->kind, Result::Kind::kOk);
  EXPECT_TRUE(launcher_.kills.empty());
}

// (c) A call is handed to the idle instance's waiting GET /next (not yet run), then the
// version is replaced and drains: the instance is busy, not idle, and must not be stopped
// under the call.
TEST_F(PoolRaceTest, DrainAfterDispatchKeepsTheBusyInstance) {
  auto first = IdleInstance();
  auto call = Call("r1");  // delivered to the waiting GET /next, queued on the executor
  pool_->Drain();
  EXPECT_TRUE(launcher_.kills.empty()) << "drain stopped an instance with a call on it";
  executor_.RunAll();
  ASSERT_TRUE(first->has_value() && **first != nullptr);
  EXPECT_EQ((**first)->id, "r1");
  ASSERT_TRUE(pool_->Respond(1, "r1", "\"ok\"").ok());
  executor_.RunAll();
  ASSERT_TRUE(call->has_value());
  EXPECT_EQ((*call)->kind, Result::Kind::kOk);
}

// The drain comes first: the idle instance stops (its waiting GET /next is told to stop), and
// a call that arrives next starts a fresh instance rather than going to the stopping one. A
// drained version that is still called keeps that instance for the usual keep-alive instead
// of stopping it at the next tick.
TEST_F(PoolRaceTest, CallAfterDrainStartsAFreshInstanceAndKeepsIt) {
  auto first = IdleInstance();
  pool_->Drain();
  executor_.RunAll();
  ASSERT_TRUE(first->has_value());
  EXPECT_EQ(**first, nullptr) << "the stopping instance's GET /next was not told to stop";
  EXPECT_EQ(launcher_.kills, std::vector<pid_t>{4242});
  auto call = Call("r1");
  ASSERT_EQ(launcher_.launches.size(), 2u) << "the call went to the stopping instance";
  manager_.OnExit(Exit(4242, 0));
  const uint64_t fresh = launcher_.launches[1].second;
  auto next = Ready(fresh, 4343);
  ASSERT_TRUE(next->has_value() && **next != nullptr);
  ASSERT_TRUE(pool_->Respond(fresh, "r1", "\"ok\"").ok());
  executor_.RunAll();
  ASSERT_TRUE(call->has_value());
  EXPECT_EQ((*call)->kind, Result::Kind::kOk);
  clock_.Advance(1000 * kMs);
  pool_->OnTick();
  executor_.RunAll();
  EXPECT_EQ(launcher_.kills, std::vector<pid_t>{4242}) << "the called instance was stopped";
  EXPECT_EQ(pool_->Stats().instances_by_state["ready"], 1);
}

}  // namespace
}  // namespace thaw::pool
