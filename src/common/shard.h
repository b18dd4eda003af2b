// The shard the calling thread runs: thaw serves from one io_context per thread (thread-per-core
// shards, server/serve.cc), and a few components keep work on the caller's shard (the Runtime
// API endpoint of an instance it starts, the instance it prefers for a call, the timer wheel
// its deadlines go on). Set once per shard thread; -1 on every other thread (tests, the
// spawner's reply thread).
#pragma once

namespace thaw {

int CurrentShard();
void SetCurrentShard(int shard);

}  // namespace thaw
