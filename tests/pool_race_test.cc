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

#include <atomic>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/system_executor.hpp>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/shard.h"
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

// The warm path's lanes (FunctionPool::Lent): an idle instance is lent to the shard that
// serves it, and that shard's calls go to it without the pool's mutex. These run the test's
// thread as shard 0 (the instances' shard) or 1 (another), and pin what the locked decisions
// must still see: a lane's call counted in flight, taken back by a deadline, an exit, a cancel
// or a drain, and an idle instance taken back by another shard's call.
class PoolLaneTest : public PoolRaceTest {
 protected:
  PoolLaneTest() { SetCurrentShard(0); }
  ~PoolLaneTest() override { SetCurrentShard(-1); }

  // The runtime's answer and its next GET /next in one go, as the native channel sends them.
  std::shared_ptr<std::optional<InvocationPtr>> RespondAndNext(uint64_t instance_id,
                                                               const std::string& request_id) {
    auto out = std::make_shared<std::optional<InvocationPtr>>();
    EXPECT_TRUE(
        pool_
            ->RespondAndNext(instance_id, request_id, "\"ok\"",
                             NextHandler([out](InvocationPtr inv) { *out = std::move(inv); },
                                         executor_.executor()))
            .ok());
    return out;
  }

  // A call the lane hands to idle instance 1 (whose GET /next is `next`).
  std::shared_ptr<std::optional<Result>> LaneCall(
      const std::string& id, const std::shared_ptr<std::optional<InvocationPtr>>& next) {
    const int64_t before = pool_->Stats().lane_calls;
    auto call = Call(id);
    EXPECT_EQ(pool_->Stats().lane_calls, before + 1) << "the call did not go through the lane";
    executor_.RunAll();
    EXPECT_TRUE(next->has_value() && **next != nullptr && (**next)->id == id);
    return call;
  }
};

TEST_F(PoolLaneTest, AWarmCallOnTheInstancesShardGoesThroughTheLane) {
  auto next = IdleInstance();
  EXPECT_EQ(pool_->Stats().lent, 1) << "the idle instance was not lent to its shard";
  const int64_t samples = pool_->Stats().idle_samples;
  auto call = Call("r1");
  // Counted in flight at once, though no locked path has seen the call yet.
  PoolStats s = pool_->Stats();
  EXPECT_EQ(s.lane_calls, 1);
  EXPECT_EQ(s.lent, 0);
  EXPECT_EQ(s.inflight, 1);
  EXPECT_EQ(s.busy, 1);
  EXPECT_FALSE(pool_->CanTakeWork());
  executor_.RunAll();
  ASSERT_TRUE(next->has_value() && **next != nullptr);
  EXPECT_EQ((**next)->id, "r1");
  EXPECT_FALSE((**next)->cold_start);
  auto again = RespondAndNext(1, "r1");
  executor_.RunAll();
  ASSERT_TRUE(call->has_value());
  EXPECT_EQ((*call)->kind, Result::Kind::kOk);
  EXPECT_EQ((*call)->body, "\"ok\"");
  EXPECT_FALSE((*call)->cold_start);
  EXPECT_EQ(timers_.armed(), 0u) << "the lane's deadline outlived the answer";
  s = pool_->Stats();
  EXPECT_EQ(s.lent, 1) << "the answer did not lend the instance again";
  EXPECT_EQ(s.inflight, 0);
  EXPECT_EQ(s.idle_samples, samples + 1) << "the version's idle time before r1 was lost";
  // And again: the lane serves every warm call of its shard.
  auto call2 = LaneCall("r2", again);
  auto third = RespondAndNext(1, "r2");
  executor_.RunAll();
  ASSERT_TRUE(call2->has_value());
  EXPECT_EQ((*call2)->kind, Result::Kind::kOk);
  EXPECT_EQ(pool_->Stats().lane_calls, 2);
}

// Another shard's call finds no lent instance of its own: it decides under the mutex and takes
// the lent one back; the answer, on the instance's shard, lends it again.
TEST_F(PoolLaneTest, AnotherShardTakesTheLentInstanceUnderTheMutex) {
  auto next = IdleInstance();
  SetCurrentShard(1);
  auto call = Call("r1");
  EXPECT_EQ(pool_->Stats().lane_calls, 0);
  EXPECT_EQ(pool_->Stats().lent, 0);
  EXPECT_EQ(launcher_.launches.size(), 1u) << "a new instance started beside an idle one";
  executor_.RunAll();
  ASSERT_TRUE(next->has_value() && **next != nullptr);
  EXPECT_EQ((**next)->id, "r1");
  SetCurrentShard(0);
  auto again = RespondAndNext(1, "r1");
  executor_.RunAll();
  ASSERT_TRUE(call->has_value());
  EXPECT_EQ((*call)->kind, Result::Kind::kOk);
  EXPECT_EQ(pool_->Stats().lent, 1);
}

// Admission stays exact: while the lane's call runs, another shard's call does not go to the
// busy instance (concurrency 1) but waits and starts a second one.
TEST_F(PoolLaneTest, AdmissionCountsTheLanesCall) {
  auto next = IdleInstance();
  auto call = LaneCall("r1", next);
  SetCurrentShard(1);
  auto other = Call("r2");
  EXPECT_EQ(launcher_.launches.size(), 2u) << "r2 was not given an instance of its own";
  EXPECT_EQ(pool_->Stats().queued, 1);
  SetCurrentShard(0);
  // The answer takes the waiting call (FIFO) rather than lending the instance again.
  auto again = RespondAndNext(1, "r1");
  executor_.RunAll();
  ASSERT_TRUE(again->has_value() && **again != nullptr);
  EXPECT_EQ((**again)->id, "r2");
  EXPECT_EQ(pool_->Stats().lent, 0);
}

TEST_F(PoolLaneTest, TheDeadlineOfALaneCallKillsTheInstance) {
  auto next = IdleInstance();
  auto call = LaneCall("r1", next);
  timers_.Advance(kTimeoutMs * kMs);
  executor_.RunAll();
  ASSERT_TRUE(call->has_value());
  EXPECT_EQ((*call)->kind, Result::Kind::kTimeout);
  EXPECT_EQ(launcher_.kills, std::vector<pid_t>{4242});
  EXPECT_EQ(pool_->Respond(1, "r1", "\"late\"").code(), StatusCode::kNotFound);
}

TEST_F(PoolLaneTest, AnExitDuringALaneCallFailsIt) {
  auto next = IdleInstance();
  auto call = LaneCall("r1", next);
  manager_.OnExit(Exit(4242, 1));
  executor_.RunAll();
  ASSERT_TRUE(call->has_value());
  EXPECT_EQ((*call)->kind, Result::Kind::kExitError);
  EXPECT_EQ(Instances(), 0);
}

TEST_F(PoolLaneTest, ACancelFindsALaneCall) {
  auto next = IdleInstance();
  auto call = LaneCall("r1", next);
  SetCurrentShard(1);  // a job's cancel comes from anywhere
  EXPECT_TRUE(pool_->Cancel("r1"));
  executor_.RunAll();
  ASSERT_TRUE(call->has_value());
  EXPECT_EQ((*call)->kind, Result::Kind::kCanceled);
  EXPECT_EQ(launcher_.kills, std::vector<pid_t>{4242});
}

// A call canceled before it was submitted is refused, not run by the lane; once that cancel is
// used up the lane serves again.
TEST_F(PoolLaneTest, ACancelBeforeTheCallKeepsItFromTheLane) {
  auto next = IdleInstance();
  EXPECT_FALSE(pool_->Cancel("r1"));
  auto call = Call("r1");
  executor_.RunAll();
  ASSERT_TRUE(call->has_value());
  EXPECT_EQ((*call)->kind, Result::Kind::kCanceled);
  EXPECT_FALSE(next->has_value()) << "the canceled call reached the runtime";
  EXPECT_EQ(pool_->Stats().lane_calls, 0);
  // The refusal took no instance: the lane still has it, and serves the next call.
  auto call2 = LaneCall("r2", next);
  auto again = RespondAndNext(1, "r2");
  executor_.RunAll();
  ASSERT_TRUE(call2->has_value());
  EXPECT_EQ((*call2)->kind, Result::Kind::kOk);
}

// A drain stops the lent idle instance (its GET /next is told to stop) but not one serving a
// lane's call.
TEST_F(PoolLaneTest, DrainStopsALentIdleInstanceNotABusyOne) {
  auto next = IdleInstance();
  auto call = LaneCall("r1", next);
  pool_->Drain();
  EXPECT_TRUE(launcher_.kills.empty()) << "drain stopped an instance with a lane's call on it";
  auto again = RespondAndNext(1, "r1");
  executor_.RunAll();
  ASSERT_TRUE(call->has_value());
  EXPECT_EQ((*call)->kind, Result::Kind::kOk);
  pool_->StopIdle();
  executor_.RunAll();
  ASSERT_TRUE(again->has_value());
  EXPECT_EQ(**again, nullptr) << "the lent instance's GET /next was not told to stop";
  EXPECT_EQ(launcher_.kills, std::vector<pid_t>{4242});
  EXPECT_EQ(pool_->Stats().lent, 0);
}

// The answer's half of the warm path: the runtime's answer on the instance's shard ends the
// lane's call and lends the instance again without the pool's mutex (FinishOnLane).
TEST_F(PoolLaneTest, TheAnswerOnTheLanesShardLendsTheInstanceAgainWithoutTheMutex) {
  auto next = IdleInstance();
  auto call = LaneCall("r1", next);
  auto again = RespondAndNext(1, "r1");
  executor_.RunAll();
  ASSERT_TRUE(call->has_value());
  EXPECT_EQ((*call)->kind, Result::Kind::kOk);
  EXPECT_EQ((*call)->body, "\"ok\"");
  PoolStats s = pool_->Stats();
  EXPECT_EQ(s.lane_answers, 1) << "the answer took the locked path";
  EXPECT_EQ(s.lent, 1);
  EXPECT_EQ(s.inflight, 0);
  EXPECT_EQ(timers_.armed(), 0u);
  EXPECT_TRUE(pool_->CanTakeWork());
  // Its END and REPORT lines were written, tagged with the call.
  bool report = false;
  for (const auto& line : logs_.ReadRequest("acme.hello", "r1")) {
    report = report || line.text.rfind("REPORT RequestId: r1", 0) == 0;
  }
  EXPECT_TRUE(report) << "no REPORT line for r1";
  // The instance's next call is warm, on the lane again.
  auto call2 = LaneCall("r2", again);
  EXPECT_FALSE((**again)->cold_start);
  auto third = RespondAndNext(1, "r2");
  executor_.RunAll();
  ASSERT_TRUE(call2->has_value());
  EXPECT_EQ(pool_->Stats().lane_answers, 2);
}

// The answer arrives on another shard (the instance's channel moved): that shard takes the call
// over under the mutex; the lane's stale entry is dropped when its shard next looks, and the
// instance, lent to the answering shard now, serves there.
TEST_F(PoolLaneTest, AnAnswerOnAnotherShardTakesTheLanesCallOver) {
  auto next = IdleInstance();
  auto call = LaneCall("r1", next);
  pool_->SetServingShard(1, 1);
  SetCurrentShard(1);
  auto again = RespondAndNext(1, "r1");
  executor_.RunAll();
  ASSERT_TRUE(call->has_value());
  EXPECT_EQ((*call)->kind, Result::Kind::kOk);
  EXPECT_EQ(pool_->Stats().lane_answers, 0);
  EXPECT_EQ(pool_->Stats().lent, 1) << "not lent to the answering shard";
  auto call2 = LaneCall("r2", again);
  auto third = RespondAndNext(1, "r2");
  executor_.RunAll();
  ASSERT_TRUE(call2->has_value());
  EXPECT_EQ((*call2)->kind, Result::Kind::kOk);
  EXPECT_EQ(pool_->Stats().lane_answers, 1);
  // Shard 0's lane still held its entry for the call taken over: it must not answer through it.
  SetCurrentShard(0);
  auto call3 = Call("r3");
  EXPECT_EQ(launcher_.launches.size(), 1u);
  executor_.RunAll();
  ASSERT_TRUE(third->has_value() && **third != nullptr);
  EXPECT_EQ((**third)->id, "r3");
}

// The deadline fires just after the lane's answer: the call stays answered, the instance lives
// and stays lent.
TEST_F(PoolLaneTest, ADeadlineAfterTheLanesAnswerFindsNothing) {
  auto next = IdleInstance();
  auto call = LaneCall("r1", next);
  auto again = RespondAndNext(1, "r1");
  timers_.Advance(kTimeoutMs * kMs);
  executor_.RunAll();
  ASSERT_TRUE(call->has_value());
  EXPECT_EQ((*call)->kind, Result::Kind::kOk);
  EXPECT_TRUE(launcher_.kills.empty());
  EXPECT_FALSE(again->has_value());
  EXPECT_EQ(pool_->Stats().lent, 1);
}

// The deadline first: the late answer on the lane's shard finds the call taken over and ended;
// its ask for the next event is told to stop.
TEST_F(PoolLaneTest, ALateAnswerAfterTheDeadlineIsRefused) {
  auto next = IdleInstance();
  auto call = LaneCall("r1", next);
  timers_.Advance(kTimeoutMs * kMs);
  executor_.RunAll();
  ASSERT_TRUE(call->has_value());
  EXPECT_EQ((*call)->kind, Result::Kind::kTimeout);
  auto again = std::make_shared<std::optional<InvocationPtr>>();
  EXPECT_EQ(
      pool_
          ->RespondAndNext(1, "r1", "\"late\"",
                           NextHandler([again](InvocationPtr inv) { *again = std::move(inv); },
                                       executor_.executor()))
          .code(),
      StatusCode::kNotFound);
  executor_.RunAll();
  ASSERT_TRUE(again->has_value());
  EXPECT_EQ(**again, nullptr);
  EXPECT_EQ(pool_->Stats().lane_answers, 0);
}

// The instance exits right after its answer (the exit event comes after the answer's frame):
// the call stays answered, and the lent instance's GET /next is told to stop.
TEST_F(PoolLaneTest, AnExitAfterTheLanesAnswerKeepsTheAnswer) {
  auto next = IdleInstance();
  auto call = LaneCall("r1", next);
  auto again = RespondAndNext(1, "r1");
  manager_.OnExit(Exit(4242, 1));
  executor_.RunAll();
  ASSERT_TRUE(call->has_value());
  EXPECT_EQ((*call)->kind, Result::Kind::kOk);
  ASSERT_TRUE(again->has_value());
  EXPECT_EQ(**again, nullptr);
  EXPECT_EQ(Instances(), 0);
  EXPECT_EQ(pool_->Stats().lent, 0);
}

// A cancel after the lane's answer finds nothing to cancel; the instance is not killed.
TEST_F(PoolLaneTest, ACancelAfterTheLanesAnswerFindsNothing) {
  auto next = IdleInstance();
  auto call = LaneCall("r1", next);
  auto again = RespondAndNext(1, "r1");
  SetCurrentShard(1);
  EXPECT_FALSE(pool_->Cancel("r1"));
  executor_.RunAll();
  ASSERT_TRUE(call->has_value());
  EXPECT_EQ((*call)->kind, Result::Kind::kOk);
  EXPECT_TRUE(launcher_.kills.empty());
}

// A waiter queued while the lane's call ran gets the instance at the answer, before a new call
// of the lane's shard: the instance is not lent again while calls wait.
TEST_F(PoolLaneTest, AQueuedWaiterGoesBeforeTheLane) {
  auto next = IdleInstance();
  auto call = LaneCall("r1", next);
  SetCurrentShard(1);
  auto waiter = Call("w");
  EXPECT_EQ(pool_->Stats().queued, 1);
  SetCurrentShard(0);
  auto again = RespondAndNext(1, "r1");
  auto late = Call("r2");  // after the answer, on the lane's shard
  executor_.RunAll();
  ASSERT_TRUE(again->has_value() && **again != nullptr);
  EXPECT_EQ((**again)->id, "w") << "the lane's new call overtook the waiter";
  EXPECT_EQ(pool_->Stats().lane_answers, 0);
  EXPECT_FALSE(late->has_value());
  EXPECT_EQ(pool_->Stats().queued, 1);
}

// Shutdown after the lane's answer: the lent instance is stopped and its GET /next told so.
TEST_F(PoolLaneTest, ShutdownStopsTheInstanceTheAnswerLentAgain) {
  auto next = IdleInstance();
  auto call = LaneCall("r1", next);
  auto again = RespondAndNext(1, "r1");
  pool_->Shutdown();
  executor_.RunAll();
  ASSERT_TRUE(call->has_value());
  EXPECT_EQ((*call)->kind, Result::Kind::kOk);
  ASSERT_TRUE(again->has_value());
  EXPECT_EQ(**again, nullptr);
  EXPECT_EQ(launcher_.kills, std::vector<pid_t>{4242});
}

// Timers that never fire, for threads that arm and cancel them at once; counts those armed.
class IdleTimers final : public Timers {
 public:
  std::unique_ptr<Timer> After(int64_t, std::function<void()>) override {
    armed.fetch_add(1);
    return std::make_unique<Handle>(&armed);
  }
  std::atomic<int64_t> armed{0};

 private:
  class Handle final : public Timer {
   public:
    explicit Handle(std::atomic<int64_t>* armed) : armed_(armed) {}
    ~Handle() override { Cancel(); }
    void Cancel() override {
      if (!done_.exchange(true)) armed_->fetch_sub(1);
    }

   private:
    std::atomic<int64_t>* armed_;
    std::atomic<bool> done_{false};
  };
};

class LockedLauncher final : public Launcher {
 public:
  void Launch(const std::shared_ptr<FunctionPool>&, uint64_t) override {
    std::lock_guard<std::mutex> lock(mu);
    ++launches;
  }
  void Kill(pid_t) override {
    std::lock_guard<std::mutex> lock(mu);
    ++kills;
  }
  std::mutex mu;
  int launches = 0, kills = 0;
};

// Real threads: shard 0 runs instance 1's runtime and calls through its lane, its answers
// ending the lane's calls and lending the instance again without the mutex, while shard 1
// calls at once (taking the lent instance back under the mutex, or queueing behind it, which
// the answer must then serve first), cancels calls before it submits them, reads stats and
// ticks, and a third thread reads the pool under the mutex all along. Every call must end
// exactly once, as it should, with no deadline left armed and nothing counted in flight after.
TEST(PoolLaneThreadsTest, TwoShardsShareALentInstance) {
  namespace asio = boost::asio;
  asio::io_context io;  // no handler goes here: every one runs on system_executor
  logs::LogStore logs("", logs::LogOptions{});
  FakeClock clock;
  IdleTimers timers;
  LockedLauncher launcher;
  PoolContext ctx;
  ctx.executor = io.get_executor();
  ctx.logs = &logs;
  ctx.clock = &clock;
  ctx.timers = &timers;
  ctx.launcher = &launcher;
  PoolManager manager(&ctx);
  ctx.manager = &manager;
  auto v = std::make_shared<registry::Version>();
  v->function = "acme.hello";
  v->version = 1;
  v->manifest.timeout_ms = kTimeoutMs;
  v->manifest.keep_alive = registry::KeepAlive::kFixed;
  auto pool = manager.Get(v, true);

  std::mutex events_mu;
  std::deque<InvocationPtr> events;  // what the runtime was handed
  auto next_handler = [&] {
    return NextHandler(
        [&](InvocationPtr inv) {
          std::lock_guard<std::mutex> lock(events_mu);
          events.push_back(std::move(inv));
        },
        asio::system_executor());
  };
  std::atomic<int64_t> ok{0}, canceled{0}, wrong{0};
  auto invoke = [&](const std::string& id, std::atomic<bool>* done) {
    auto inv = std::make_shared<Invocation>();
    inv->id = id;
    inv->payload = "{}";
    pool->Invoke(inv, asio::bind_executor(asio::system_executor(), [&, done](Result r) {
                   if (r.kind == Result::Kind::kOk) {
                     ok.fetch_add(1);
                   } else if (r.kind == Result::Kind::kCanceled) {
                     canceled.fetch_add(1);
                   } else {
                     wrong.fetch_add(1);
                   }
                   if (done->exchange(true)) wrong.fetch_add(1);  // completed twice
                 }));
  };
  // The runtime, on shard 0: answers what it was handed, asking for the next in one go.
  auto serve = [&] {
    InvocationPtr inv;
    {
      std::lock_guard<std::mutex> lock(events_mu);
      if (events.empty()) return;
      inv = std::move(events.front());
      events.pop_front();
    }
    if (inv == nullptr) return;
    EXPECT_TRUE(pool->RespondAndNext(1, inv->id, "\"ok\"", next_handler()).ok());
  };

  SetCurrentShard(0);
  std::atomic<bool> warm_done{false};
  invoke("warm", &warm_done);
  pool->OnStarted(1, 4242);
  pool->NextWith(1, next_handler());
  while (!warm_done) serve();

  constexpr int kCalls = 1000;
  std::atomic<bool> b_finished{false}, a_finished{false};
  std::thread c([&] {
    while (!a_finished || !b_finished) {
      PoolStats s = pool->Stats();
      if (s.inflight < 0 || s.inflight > 1) wrong.fetch_add(1);  // one instance serves
      (void)pool->CanTakeWork();
      pool->OnTick();
      std::this_thread::yield();
    }
  });
  std::thread b([&] {
    SetCurrentShard(1);
    for (int j = 0; j < kCalls; ++j) {
      const std::string id = "b" + std::to_string(j);
      if (j % 7 == 0) pool->Cancel(id);
      std::atomic<bool> done{false};
      invoke(id, &done);
      while (!done) std::this_thread::yield();
      if (j % 50 == 0) {
        (void)pool->Stats();
        pool->OnTick();
      }
    }
    b_finished = true;
  });
  for (int i = 0; i < kCalls; ++i) {
    std::atomic<bool> done{false};
    invoke("a" + std::to_string(i), &done);
    while (!done) serve();
  }
  a_finished = true;
  while (!b_finished) serve();
  b.join();
  c.join();

  const int64_t b_canceled = (kCalls + 6) / 7;
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(canceled.load(), b_canceled);
  EXPECT_EQ(ok.load(), 1 + 2 * kCalls - b_canceled);
  EXPECT_GT(pool->Stats().lane_calls, 0);
  EXPECT_GT(pool->Stats().lane_answers, 0);
  EXPECT_EQ(pool->Stats().inflight, 0);
  EXPECT_EQ(pool->Stats().queued, 0);
  EXPECT_EQ(timers.armed.load(), 0) << "a deadline outlived its call";
  EXPECT_EQ(launcher.kills, 0);
  pool->Shutdown();
  SetCurrentShard(-1);
}

}  // namespace
}  // namespace thaw::pool
