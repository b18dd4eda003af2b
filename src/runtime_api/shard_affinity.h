// ShardAffinity: which shard (common/shard.h) should serve an instance's native channel, from
// the shards its calls come from. A call from another shard than the channel's costs a hop
// between threads (the answer is read on the channel's shard, the client's coroutine resumes on
// its own), so an instance that one foreign shard keeps calling moves there. Pure: no clock, no
// lock; the channel keeps one under its own mutex.
#pragma once

namespace thaw::runtime_api {

// Consecutive calls from one foreign shard, none from the home shard between them, after which
// the channel moves to that shard. Above 1 so that two shards sharing an instance, as under
// many connections, do not bounce it between them on every call.
inline constexpr int kMoveAfterCalls = 4;

struct ShardAffinity {
  int home = -1;          // the shard serving the channel now (-1: none)
  int streak_shard = -1;  // the foreign shard of the latest calls
  int streak = 0;         // how many calls in a row came from streak_shard
};

// Notes a call delivered from `caller` (-1: not a shard thread) and returns the shard the
// channel should move to, or -1 to stay. The caller applies a move by setting `home`.
int NoteCall(ShardAffinity& a, int caller, int move_after = kMoveAfterCalls);

}  // namespace thaw::runtime_api
