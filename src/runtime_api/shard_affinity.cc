#include "runtime_api/shard_affinity.h"

namespace thaw::runtime_api {

int NoteCall(ShardAffinity& a, int caller, int move_after) {
  if (caller < 0 || a.home < 0) return -1;  // tests, the spawner's thread: no shard to go to
  if (caller == a.home) {
    a.streak_shard = -1;
    a.streak = 0;
    return -1;
  }
  if (caller == a.streak_shard) {
    ++a.streak;
  } else {
    a.streak_shard = caller;
    a.streak = 1;
  }
  if (a.streak < move_after) return -1;
  a.streak_shard = -1;
  a.streak = 0;
  return caller;
}

}  // namespace thaw::runtime_api
