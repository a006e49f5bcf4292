/* parallel.c — a minimal parallel-for over pthreads for the CPU backend (no OpenMP, so the library stays
 * clean under ThreadSanitizer and adds no runtime dependency). */
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "../internal.h"

#define HOPEI_MAX_THREADS 64

int hopei_num_threads(void) {
  const char *env = getenv("HOPE_NUM_THREADS");
  if (env != NULL) {
    long v = strtol(env, NULL, 10);
    if (v >= 1) return v > HOPEI_MAX_THREADS ? HOPEI_MAX_THREADS : (int)v;
  }
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  if (n < 1) n = 1;
  return n > HOPEI_MAX_THREADS ? HOPEI_MAX_THREADS : (int)n;
}

typedef struct {
  hopei_range_fn fn;
  void *ctx;
  int64_t begin, end;
} chunk_t;

static void *run_chunk(void *arg) {
  chunk_t *c = (chunk_t *)arg;
  c->fn(c->ctx, c->begin, c->end);
  return NULL;
}

void hopei_parallel_for(int64_t n, int64_t min_chunk, hopei_range_fn fn, void *ctx) {
  if (n <= 0) return;
  if (min_chunk < 1) min_chunk = 1;
  int64_t threads = hopei_num_threads();
  if (threads > (n + min_chunk - 1) / min_chunk) threads = (n + min_chunk - 1) / min_chunk;
  if (threads <= 1) {
    fn(ctx, 0, n);
    return;
  }
  chunk_t chunks[HOPEI_MAX_THREADS];
  pthread_t tids[HOPEI_MAX_THREADS];
  bool started[HOPEI_MAX_THREADS];
  for (int64_t t = 0; t < threads; ++t) {
    chunks[t].fn = fn;
    chunks[t].ctx = ctx;
    chunks[t].begin = n * t / threads;
    chunks[t].end = n * (t + 1) / threads;
  }
  for (int64_t t = 1; t < threads; ++t) started[t] = pthread_create(&tids[t], NULL, run_chunk, &chunks[t]) == 0;
  run_chunk(&chunks[0]);
  for (int64_t t = 1; t < threads; ++t) {
    if (started[t]) pthread_join(tids[t], NULL);
    else run_chunk(&chunks[t]);
  }
}
