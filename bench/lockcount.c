// LD_PRELOAD shim: counts pthread_mutex_lock/trylock calls made through the PLT (std::mutex,
// Asio's mutexes); SIGUSR2 writes the count so far to stderr as "LOCKS <n>".
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <unistd.h>

static atomic_long count;
static int (*real_lock)(pthread_mutex_t*);
static int (*real_trylock)(pthread_mutex_t*);

static void report(int sig) {
  (void)sig;
  char buf[64];
  long n = atomic_load(&count);
  char digits[24];
  int d = 0;
  do { digits[d++] = '0' + n % 10; n /= 10; } while (n > 0);
  int p = 0;
  const char* pre = "LOCKS ";
  for (const char* c = pre; *c; ++c) buf[p++] = *c;
  while (d > 0) buf[p++] = digits[--d];
  buf[p++] = '\n';
  (void)!write(2, buf, p);
}

__attribute__((constructor)) static void init(void) {
  real_lock = dlsym(RTLD_NEXT, "pthread_mutex_lock");
  real_trylock = dlsym(RTLD_NEXT, "pthread_mutex_trylock");
  signal(SIGUSR2, report);
}

int pthread_mutex_lock(pthread_mutex_t* m) {
  atomic_fetch_add_explicit(&count, 1, memory_order_relaxed);
  return real_lock(m);
}

int pthread_mutex_trylock(pthread_mutex_t* m) {
  atomic_fetch_add_explicit(&count, 1, memory_order_relaxed);
  return real_trylock(m);
}
