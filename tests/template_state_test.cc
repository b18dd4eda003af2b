// instance::Template: the state of a version's template, as the pool drives it. Pure state:
// no processes.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "instance/template.h"

namespace thaw::instance {
namespace {

using State = Template::State;

TEST(TemplateStateTest, StartsOnceThenReadyRunsWaiters) {
  Template t;
  EXPECT_EQ(t.state(), State::kNone);
  EXPECT_FALSE(t.WhenSettled([] {}));  // nothing starting: the caller goes on at once
  ASSERT_TRUE(t.BeginStart());
  EXPECT_FALSE(t.BeginStart());  // one start at a time
  std::vector<pid_t> seen;
  ASSERT_TRUE(t.WhenSettled([&] { seen.push_back(t.ready_pid()); }));
  ASSERT_TRUE(t.WhenSettled([&] { seen.push_back(t.ready_pid()); }));
  EXPECT_EQ(t.ready_pid(), 0);
  EXPECT_TRUE(t.Ready(42, 1500));
  EXPECT_EQ(seen, (std::vector<pid_t>{42, 42}));
  EXPECT_EQ(t.state(), State::kReady);
  EXPECT_EQ(t.init_us(), 1500);
  EXPECT_FALSE(t.WhenSettled([] {}));
}

TEST(TemplateStateTest, InitFailureIsUnusableAndSaidOnce) {
  Template t;
  ASSERT_TRUE(t.BeginStart());
  bool ran = false;
  ASSERT_TRUE(t.WhenSettled([&] { ran = true; }));
  EXPECT_TRUE(t.InitFailed("ImportError"));
  EXPECT_TRUE(ran);  // the waiting instance starts in full
  EXPECT_EQ(t.state(), State::kUnusable);
  EXPECT_EQ(t.why(), "ImportError");
  EXPECT_FALSE(t.BeginStart());
  EXPECT_FALSE(t.Refused("threads"));  // already unusable: nothing more to log
  EXPECT_FALSE(t.Ready(7, 1));         // a late answer: the caller ends that process
  EXPECT_EQ(t.ready_pid(), 0);
}

TEST(TemplateStateTest, RefusalIsLoggedOncePerVersion) {
  Template t;
  ASSERT_TRUE(t.BeginStart());
  ASSERT_TRUE(t.Ready(9, 1));
  EXPECT_TRUE(t.Refused("template refused to fork: 2 threads"));
  EXPECT_FALSE(t.Refused("template refused to fork: 2 threads"));
  EXPECT_EQ(t.state(), State::kUnusable);
  EXPECT_EQ(t.ready_pid(), 0);
}

TEST(TemplateStateTest, EndedTemplateIsRemadeAtMostMaxRestartsTimes) {
  Template t;
  pid_t pid = 100;
  for (int i = 1; i < Template::kMaxRestarts; ++i) {
    ASSERT_TRUE(t.BeginStart());
    ASSERT_TRUE(t.Ready(++pid, 1));
    EXPECT_FALSE(t.Ended(pid + 1000, "signal: killed"));  // not the current one
    bool unusable = true;
    EXPECT_TRUE(t.Ended(pid, "signal: killed", &unusable));
    EXPECT_FALSE(unusable);
    EXPECT_EQ(t.state(), State::kNone);  // the next cold start makes a new one
  }
  ASSERT_TRUE(t.BeginStart());
  ASSERT_TRUE(t.Ready(++pid, 1));
  bool unusable = false;
  EXPECT_TRUE(t.Ended(pid, "signal: killed", &unusable));
  EXPECT_TRUE(unusable);
  EXPECT_EQ(t.state(), State::kUnusable);
  EXPECT_NE(t.why().find("signal: killed"), std::string::npos);
}

TEST(TemplateStartsTest, StartsPastTheSlotsWaitInOrderAndEachLeaveLetsOneIn) {
  TemplateStarts starts(2);
  std::vector<int> ran;
  EXPECT_TRUE(starts.Enter([&] { ran.push_back(1); }));  // free slots: the caller starts now
  EXPECT_TRUE(starts.Enter([&] { ran.push_back(2); }));
  EXPECT_FALSE(starts.Enter([&] { ran.push_back(3); }));  // full: queued, not run
  EXPECT_FALSE(starts.Enter([&] { ran.push_back(4); }));
  EXPECT_TRUE(ran.empty());
  EXPECT_EQ(starts.running(), 2);
  EXPECT_EQ(starts.queued(), 2u);
  starts.Leave();  // the slot passes to the first queued start
  EXPECT_EQ(ran, (std::vector<int>{3}));
  EXPECT_EQ(starts.running(), 2);
  starts.Leave();
  EXPECT_EQ(ran, (std::vector<int>{3, 4}));
  starts.Leave();
  starts.Leave();
  EXPECT_EQ(starts.running(), 0);
  EXPECT_TRUE(starts.Enter([] {}));                 // free again
  EXPECT_EQ(TemplateStarts(0).Enter([] {}), true);  // at least one slot, whatever asked
}

}  // namespace
}  // namespace thaw::instance
