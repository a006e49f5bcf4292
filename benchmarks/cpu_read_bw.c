/* cpu_read_bw.c — the ceilings of CPU decode on this machine, measured on the decode benchmark's own cache.
 *
 * cpu_bench.py compiles this file (cc -O2 -shared -fPIC -pthread) and calls it through ctypes with the numpy arrays
 * that hold its paged K/V cache and the same shuffled page tables, so the reads below touch exactly the memory
 * hope_decode_forward reads:
 *  - hope_readbw_pages: every byte of the K and V pages a page table lists (each page page_bytes long), the table
 *    cut into `threads` contiguous runs (as decode splits a sequence's keys). A thread reads `inflight` pages at a
 *    time, line by line across them (inflight 1: one page after the other), optionally issuing software prefetches
 *    `prefetch` pages ahead. No arithmetic beyond an XOR per 8 bytes: the best rate any decode over these pages
 *    can read at, whatever it computes.
 *  - hope_readbw_contiguous: the same byte count read in address order from two arrays (no page table).
 *  - hope_readbw_dpbf16_gflops: the AVX512_BF16 dot-product peak (vdpbf16ps with independent accumulators, the
 *    instruction decode's bfloat16 kernels multiply with), in GFLOP/s over `threads` threads; 0 without
 *    AVX512_BF16. Decode with R query rows per kv head does R floating-point operations per byte of K/V, so
 *    peak / R bounds its GB/s from the compute side.
 * Each function returns the seconds it took (wall clock, threads started inside, as the library does). */
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define MAX_THREADS 64
#define MAX_INFLIGHT 64

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Runs fn on jobs[0 .. threads) (job_bytes apart), the calling thread taking job 0; returns the seconds it took. */
static double run_threads(int threads, void *(*fn)(void *), void *jobs, size_t job_bytes) {
  pthread_t tids[MAX_THREADS];
  const double t0 = now();
  for (int t = 1; t < threads; ++t) pthread_create(&tids[t], NULL, fn, (char *)jobs + (size_t)t * job_bytes);
  fn(jobs);
  for (int t = 1; t < threads; ++t) pthread_join(tids[t], NULL);
  return now() - t0;
}

static int clamp_threads(int threads) { return threads < 1 ? 1 : threads > MAX_THREADS ? MAX_THREADS : threads; }

typedef struct {
  const char *k, *v;
  size_t page_bytes;
  const int32_t *table;
  int64_t first, last; /* table entries [first, last) */
  int inflight, prefetch;
  uint64_t sum;
} pages_job_t;

static uint64_t read_line(const char *p) {
  const uint64_t *w = (const uint64_t *)p;
  return w[0] ^ w[1] ^ w[2] ^ w[3] ^ w[4] ^ w[5] ^ w[6] ^ w[7];
}

static void *pages_worker(void *arg) {
  pages_job_t *j = (pages_job_t *)arg;
  uint64_t sum = 0;
  for (int64_t i = j->first; i < j->last; i += j->inflight) {
    const int64_t m = j->last - i < j->inflight ? j->last - i : j->inflight;
    const char *kp[MAX_INFLIGHT], *vp[MAX_INFLIGHT];
    for (int64_t g = 0; g < m; ++g) {
      kp[g] = j->k + (size_t)j->table[i + g] * j->page_bytes;
      vp[g] = j->v + (size_t)j->table[i + g] * j->page_bytes;
    }
    const int64_t ahead = i + (int64_t)j->prefetch * m; /* the group `prefetch` groups ahead */
    for (size_t off = 0; off < j->page_bytes; off += 64) {
      if (j->prefetch > 0 && ahead < j->last) {
        for (int64_t g = 0; g < m && ahead + g < j->last; ++g) {
          __builtin_prefetch(j->k + (size_t)j->table[ahead + g] * j->page_bytes + off, 0, 2);
          __builtin_prefetch(j->v + (size_t)j->table[ahead + g] * j->page_bytes + off, 0, 2);
        }
      }
      for (int64_t g = 0; g < m; ++g) sum ^= read_line(kp[g] + off) ^ read_line(vp[g] + off);
    }
  }
  j->sum = sum;
  return NULL;
}

/* Returns seconds; *checksum receives the XOR of everything read (so nothing is optimised away). */
double hope_readbw_pages(const void *k_pages, const void *v_pages, size_t page_bytes, const int32_t *table,
                         int64_t num_entries, int threads, int inflight, int prefetch, uint64_t *checksum) {
  pages_job_t jobs[MAX_THREADS];
  threads = clamp_threads(threads);
  if (inflight < 1) inflight = 1;
  if (inflight > MAX_INFLIGHT) inflight = MAX_INFLIGHT;
  for (int t = 0; t < threads; ++t)
    jobs[t] = (pages_job_t){(const char *)k_pages, (const char *)v_pages, page_bytes, table,
                            num_entries * t / threads, num_entries * (t + 1) / threads, inflight, prefetch, 0};
  const double dt = run_threads(threads, pages_worker, jobs, sizeof jobs[0]);
  if (checksum != NULL) {
    *checksum = 0;
    for (int t = 0; t < threads; ++t) *checksum ^= jobs[t].sum;
  }
  return dt;
}

typedef struct {
  const char *a, *b;
  size_t bytes;
  uint64_t sum;
} contiguous_job_t;

static void *contiguous_worker(void *arg) {
  contiguous_job_t *j = (contiguous_job_t *)arg;
  uint64_t sum = 0;
  for (size_t off = 0; off + 64 <= j->bytes; off += 64) sum ^= read_line(j->a + off) ^ read_line(j->b + off);
  j->sum = sum;
  return NULL;
}

/* Reads bytes [0, bytes) of a and of b (64-byte aligned) in address order, cut into `threads` contiguous parts. */
double hope_readbw_contiguous(const void *a, const void *b, size_t bytes, int threads, uint64_t *checksum) {
  contiguous_job_t jobs[MAX_THREADS];
  threads = clamp_threads(threads);
  const size_t part = bytes / (size_t)threads / 64 * 64;
  for (int t = 0; t < threads; ++t)
    jobs[t] = (contiguous_job_t){(const char *)a + part * t, (const char *)b + part * t, part, 0};
  const double dt = run_threads(threads, contiguous_worker, jobs, sizeof jobs[0]);
  if (checksum != NULL) {
    *checksum = 0;
    for (int t = 0; t < threads; ++t) *checksum ^= jobs[t].sum;
  }
  return dt;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

typedef struct {
  int64_t iters;
  float out;
} peak_job_t;

__attribute__((target("avx512f,avx512bf16"))) static void *peak_worker(void *arg) {
  peak_job_t *j = (peak_job_t *)arg;
  __m512 acc[12];
#pragma GCC unroll 12
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps((float)i);
  const __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803f80), b = (__m512bh)_mm512_set1_epi32(0x3c003c00);
  for (int64_t n = 0; n < j->iters; ++n)
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
  __m512 s = acc[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, acc[i]);
  j->out = _mm512_reduce_add_ps(s);
  return NULL;
}

/* GFLOP/s of vdpbf16ps (64 floating-point operations each) on `threads` threads; 0 when the CPU lacks it. */
double hope_readbw_dpbf16_gflops(int threads, int64_t iters) {
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512bf16")) return 0.0;
  peak_job_t jobs[MAX_THREADS];
  threads = clamp_threads(threads);
  for (int t = 0; t < threads; ++t) jobs[t] = (peak_job_t){iters, 0.f};
  const double dt = run_threads(threads, peak_worker, jobs, sizeof jobs[0]);
  return (double)threads * (double)iters * 12.0 * 64.0 / dt / 1e9;
}
#else
double hope_readbw_dpbf16_gflops(int threads, int64_t iters) {
  (void)threads;
  (void)iters;
  return 0.0;
}
#endif
