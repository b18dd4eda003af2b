#include "common/shard.h"

namespace thaw {
namespace {
thread_local int current_shard = -1;
}  // namespace

int CurrentShard() { return current_shard; }
void SetCurrentShard(int shard) { current_shard = shard; }

}  // namespace thaw
