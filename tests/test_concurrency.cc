// test_concurrency.cc — every entry point called from several threads at once (CPU backend), each thread
// comparing its results bit for bit with a single-threaded run of the same calls, and each thread provoking its
// own distinct errors and reading back its own message (hope_last_error is per thread). scripts/sanitize.sh runs
// the Concurrency.* tests under ThreadSanitizer.
// ConcurrencyGpu.* (GpuTest, skipped without a GPU; not compiled in a build without CUDA): several threads on
// their own CUDA streams share one device cos/sin cache (disjoint rows), rotate and run attention, and match the
// CPU backend.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"

#ifndef HOPE_TEST_WITH_CUDA  // tests/CMakeLists.txt: 0 in a build without CUDA (no CUDA header, no GPU part)
#define HOPE_TEST_WITH_CUDA 1
#endif
#if HOPE_TEST_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace {

using hope_test::Tensor;

constexpr int kThreads = 4;
constexpr int kIterations = 3;

// Starts all threads at once, so the calls really overlap.
class StartGate {
 public:
  explicit StartGate(int n) : waiting_(n) {}
  void arrive_and_wait() {
    std::unique_lock<std::mutex> lock(m_);
    if (--waiting_ == 0) cv_.notify_all();
    else cv_.wait(lock, [&] { return waiting_ == 0; });
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  int waiting_;
};

hope_segment_t text(int32_t n) {
  hope_segment_t s;
  std::memset(&s, 0, sizeof s);
  s.kind = HOPE_SEGMENT_TEXT;
  s.length = n;
  return s;
}
hope_segment_t vision(int32_t kind, int32_t t, int32_t h, int32_t w, float scale) {
  hope_segment_t s;
  std::memset(&s, 0, sizeof s);
  s.kind = kind;
  s.grid_t = t;
  s.grid_h = h;
  s.grid_w = w;
  s.temporal_scale = scale;
  return s;
}

hope_rope_config_t hope_rope() {
  hope_rope_config_t c{};
  std::memset(&c, 0, sizeof c);
  c.kind = HOPE_ROPE_HOPE;
  c.head_dim = 64;
  c.sections[0] = 8;
  c.sections[1] = 12;
  c.sections[2] = 12;
  c.theta = 1e6;
  return c;
}

// Inputs shared (read-only) by every thread.
struct Inputs {
  std::vector<hope_segment_t> segments;
  hope_rope_config_t rope = hope_rope();
  int64_t n = 0;                      // tokens of the segment list
  // attention: 2 sequences, GQA 4:2, d 64, float16, rotated
  int heads_q = 4, heads_k = 2, d = 64;
  std::vector<int32_t> cu_q = {0, 37, 37 + 64}, cu_k = {0, 41, 41 + 64};
  Tensor q, k, v;
  std::vector<float> cos_q, sin_q, cos_k, sin_k;
  // paged cache (read by decode): 6 pages of 16, float16
  int pages = 6, page_size = 16;
  Tensor k_pages, v_pages;
  std::vector<int32_t> dec_cu = {0, 1, 3}, dec_lens = {40, 33}, table = {4, 0, 2, 5, 1, 3};
  Tensor dec_q;
  // merge
  Tensor o_a, o_b;
  std::vector<float> lse_a, lse_b;

  Inputs() {
    segments = {text(5), vision(HOPE_SEGMENT_IMAGE, 1, 4, 6, 0.0f), text(3), vision(HOPE_SEGMENT_VIDEO, 3, 4, 4, 0.0f),
                vision(HOPE_SEGMENT_VIDEO, 2, 3, 5, 0.0f), text(7)};
    EXPECT_HOPE_OK(hope_positions_count(segments.data(), int32_t(segments.size()), &n));
    std::mt19937_64 rng(99);
    const int tq = cu_q.back(), tk = cu_k.back(), half = d / 2;
    q = hope_test::random_tensor(HOPE_DTYPE_FLOAT16, size_t(tq) * heads_q * d, rng);
    k = hope_test::random_tensor(HOPE_DTYPE_FLOAT16, size_t(tk) * heads_k * d, rng);
    v = hope_test::random_tensor(HOPE_DTYPE_FLOAT16, size_t(tk) * heads_k * d, rng);
    std::uniform_real_distribution<double> angle(-3.0, 3.0);
    auto table_of = [&](int tokens, std::vector<float> *c, std::vector<float> *s) {
      for (int i = 0; i < tokens * half; ++i) {
        const double a = angle(rng);
        c->push_back(float(std::cos(a)));
        s->push_back(float(std::sin(a)));
      }
    };
    table_of(tq, &cos_q, &sin_q);
    table_of(tk, &cos_k, &sin_k);
    k_pages = hope_test::random_tensor(HOPE_DTYPE_FLOAT16, size_t(pages) * page_size * heads_k * d, rng);
    v_pages = hope_test::random_tensor(HOPE_DTYPE_FLOAT16, size_t(pages) * page_size * heads_k * d, rng);
    dec_q = hope_test::random_tensor(HOPE_DTYPE_FLOAT16, size_t(3) * heads_q * d, rng);
    o_a = hope_test::random_tensor(HOPE_DTYPE_FLOAT32, size_t(9) * 3 * 16, rng);
    o_b = hope_test::random_tensor(HOPE_DTYPE_FLOAT32, size_t(9) * 3 * 16, rng);
    std::normal_distribution<float> l(0.0f, 2.0f);
    for (int i = 0; i < 27; ++i) {
      lse_a.push_back(i % 7 == 0 ? -INFINITY : l(rng));
      lse_b.push_back(i % 5 == 0 ? -INFINITY : l(rng));
    }
  }
};

// Everything one run of all entry points produces, as raw bytes (compared bit for bit).
struct Outputs {
  std::vector<std::vector<uint8_t>> blobs;
  std::vector<std::string> names;
  template <typename T>
  void add(const char *name, const T *p, size_t count) {
    names.push_back(name);
    const uint8_t *b = reinterpret_cast<const uint8_t *>(p);
    blobs.emplace_back(b, b + count * sizeof(T));
  }
};

#define RECORD_OK(errors, expr)                                                                   \
  do {                                                                                            \
    const hope_status_t s_ = (expr);                                                              \
    if (s_ != HOPE_SUCCESS) errors->push_back(std::string(#expr) + ": " + hope_last_error());     \
  } while (0)

// Runs every entry point once; `errors` collects unexpected failures (checked on the main thread).
Outputs run_everything(const Inputs &in, std::vector<std::string> *errors) {
  Outputs o;
  // positions
  int64_t n = 0;
  RECORD_OK(errors, hope_positions_count(in.segments.data(), int32_t(in.segments.size()), &n));
  for (int layout = 0; layout < 3; ++layout) {
    std::vector<float> pos(size_t(3 * in.n));
    float next = 0;
    RECORD_OK(errors, hope_positions_build(in.segments.data(), int32_t(in.segments.size()), hope_layout_t(layout),
                                           0.75f, 3.0f, pos.data(), in.n, &next));
    o.add("positions", pos.data(), pos.size());
    o.add("next_position", &next, 1);
  }
  std::vector<float> gen(3 * 5);
  RECORD_OK(errors, hope_positions_generated(1234.5f, 2, 5, gen.data()));
  o.add("generated", gen.data(), gen.size());
  hope_segment_t seg;
  RECORD_OK(errors, hope_segment_from_vision_grid(HOPE_SEGMENT_VIDEO, 4, 28, 56, 2, 1.25f, &seg));
  o.add("segment_from_grid", &seg, 1);
  // scale policies
  for (int policy = 0; policy < 3; ++policy) {
    std::vector<hope_segment_t> segs = in.segments;
    hope_scale_params_t sp;
    std::memset(&sp, 0, sizeof sp);
    sp.policy = policy;
    sp.fixed_scale = 1.25f;
    sp.seed = 0xfeedULL;
    sp.position_budget = 40.0;
    float chosen = 0;
    RECORD_OK(errors, hope_temporal_scales_select(&sp, segs.data(), int32_t(segs.size()), &chosen));
    o.add("scales", segs.data(), segs.size());
    o.add("chosen", &chosen, 1);
  }
  // rope tables, cos/sin, a private cache
  const int half = in.rope.head_dim / 2;
  std::vector<int32_t> comp(half);
  RECORD_OK(errors, hope_rope_components(&in.rope, comp.data()));
  o.add("components", comp.data(), comp.size());
  std::vector<float> pos(size_t(3 * in.n));
  RECORD_OK(errors, hope_positions_build(in.segments.data(), int32_t(in.segments.size()), HOPE_LAYOUT_DIAGONAL, 1.0f,
                                         100000.0f, pos.data(), in.n, nullptr));
  std::vector<float> cs(size_t(in.n) * half), sn(cs.size());
  RECORD_OK(errors, hope_rope_cos_sin(&in.rope, pos.data(), in.n, cs.data(), sn.data()));
  o.add("cos", cs.data(), cs.size());
  o.add("sin", sn.data(), sn.size());
  hope_rope_cache_t cache = nullptr;
  RECORD_OK(errors, hope_rope_cache_create(&in.rope, in.n + 8, HOPE_MEMORY_HOST, &cache));
  if (cache != nullptr) {
    RECORD_OK(errors, hope_rope_cache_fill(cache, 8, pos.data(), in.n, 0, HOPE_MEMORY_HOST, nullptr));
    const float *ct = nullptr, *st = nullptr;
    int64_t cap = 0;
    hope_memory_t mem = HOPE_MEMORY_DEVICE;
    RECORD_OK(errors, hope_rope_cache_get(cache, &ct, &st, &cap, &mem));
    if (ct != nullptr && st != nullptr) {
      o.add("cache_cos", ct + 8 * half, size_t(in.n) * half);
      o.add("cache_sin", st + 8 * half, size_t(in.n) * half);
    }
    RECORD_OK(errors, hope_rope_cache_destroy(cache));
  }
  // rotation, in place and out of place
  {
    const int64_t tokens = in.cu_q.back();
    Tensor x = in.q, out(HOPE_DTYPE_FLOAT16, in.q.size());
    hope_rope_apply_params_t ap{};
    std::memset(&ap, 0, sizeof ap);
    ap.backend = HOPE_BACKEND_CPU;
    ap.dtype = HOPE_DTYPE_FLOAT16;
    ap.num_tokens = tokens;
    ap.num_heads = in.heads_q;
    ap.head_dim = in.d;
    ap.x = x.data();
    ap.out = out.data();
    ap.cos = in.cos_q.data();
    ap.sin = in.sin_q.data();
    RECORD_OK(errors, hope_rope_apply(&ap, nullptr));
    ap.out = x.data();
    RECORD_OK(errors, hope_rope_apply(&ap, nullptr));
    o.add("rope_apply", out.bytes.data(), out.bytes.size());
    o.add("rope_apply_in_place", x.bytes.data(), x.bytes.size());
  }
  // attention
  {
    const int64_t tq = in.cu_q.back(), tk = in.cu_k.back();
    Tensor out(HOPE_DTYPE_FLOAT16, size_t(tq) * in.heads_q * in.d), krot(HOPE_DTYPE_FLOAT16, in.k.size());
    std::vector<float> lse(size_t(in.heads_q) * tq);
    hope_attention_params_t p{};
    std::memset(&p, 0, sizeof p);
    p.backend = HOPE_BACKEND_CPU;
    p.dtype = HOPE_DTYPE_FLOAT16;
    p.batch = 2;
    p.num_q_heads = in.heads_q;
    p.num_kv_heads = in.heads_k;
    p.head_dim = in.d;
    p.cu_seqlens_q = in.cu_q.data();
    p.cu_seqlens_k = in.cu_k.data();
    p.max_seqlen_q = 64;
    p.max_seqlen_k = 64;
    p.q = in.q.data();
    p.k = in.k.data();
    p.v = in.v.data();
    p.out = out.data();
    p.lse = lse.data();
    p.cos_q = in.cos_q.data();
    p.sin_q = in.sin_q.data();
    p.cos_k = in.cos_k.data();
    p.sin_k = in.sin_k.data();
    p.causal = 1;
    p.k_rotated = krot.data();
    RECORD_OK(errors, hope_attention_forward(&p, nullptr));
    (void)tk;
    o.add("attention_out", out.bytes.data(), out.bytes.size());
    o.add("attention_lse", lse.data(), lse.size());
    o.add("attention_k_rotated", krot.bytes.data(), krot.bytes.size());
  }
  // kv_append into a private copy of the paged cache, then decode (over the shared, read-only cache)
  {
    Tensor kp = in.k_pages, vp = in.v_pages;
    std::vector<int64_t> slots = {3, -1, 17, 95, 40};
    hope_kv_append_params_t a{};
    std::memset(&a, 0, sizeof a);
    a.backend = HOPE_BACKEND_CPU;
    a.cache = {HOPE_DTYPE_FLOAT16, in.pages, in.page_size, in.heads_k, in.d, kp.data(), vp.data()};
    a.num_tokens = 5;
    a.k = in.k.data();
    a.v = in.v.data();
    a.slot_mapping = slots.data();
    a.cos_k = in.cos_k.data();
    a.sin_k = in.sin_k.data();
    RECORD_OK(errors, hope_kv_append(&a, nullptr));
    o.add("kv_k_pages", kp.bytes.data(), kp.bytes.size());
    o.add("kv_v_pages", vp.bytes.data(), vp.bytes.size());

    hope_decode_params_t p{};
    std::memset(&p, 0, sizeof p);
    p.backend = HOPE_BACKEND_CPU;
    p.cache = {HOPE_DTYPE_FLOAT16, in.pages, in.page_size, in.heads_k, in.d, const_cast<void *>(in.k_pages.data()),
               const_cast<void *>(in.v_pages.data())};
    p.batch = 2;
    p.num_q_heads = in.heads_q;
    p.cu_seqlens_q = in.dec_cu.data();
    p.max_seqlen_q = 2;
    p.seq_lens = in.dec_lens.data();
    p.max_seqlen_k = 40;
    p.page_table = in.table.data();
    p.max_pages_per_seq = 3;
    p.q = in.dec_q.data();
    p.cos_q = in.cos_q.data();
    p.sin_q = in.sin_q.data();
    p.causal = 1;
    for (int splits : {0, 3}) {
      p.num_splits = splits;
      Tensor out(HOPE_DTYPE_FLOAT16, in.dec_q.size());
      std::vector<float> lse(size_t(in.heads_q) * 3);
      p.out = out.data();
      p.lse = lse.data();
      size_t ws = 0;
      RECORD_OK(errors, hope_decode_workspace_size(&p, &ws));
      std::vector<double> workspace(ws / sizeof(double) + 2);  // 8-byte aligned; the library asks for 16
      void *w = workspace.data();
      if (reinterpret_cast<uintptr_t>(w) % 16 != 0) w = workspace.data() + 1;
      RECORD_OK(errors, hope_decode_forward(&p, ws ? w : nullptr, ws, nullptr));
      o.add("decode_out", out.bytes.data(), out.bytes.size());
      o.add("decode_lse", lse.data(), lse.size());
    }
  }
  // merge
  {
    Tensor out(HOPE_DTYPE_FLOAT32, in.o_a.size());
    std::vector<float> lse(27);
    hope_merge_params_t m;
    std::memset(&m, 0, sizeof m);
    m.backend = HOPE_BACKEND_CPU;
    m.dtype = HOPE_DTYPE_FLOAT32;
    m.num_tokens = 9;
    m.num_heads = 3;
    m.head_dim = 16;
    m.o_a = in.o_a.data();
    m.o_b = in.o_b.data();
    m.lse_a = in.lse_a.data();
    m.lse_b = in.lse_b.data();
    m.out = out.data();
    m.lse_out = lse.data();
    RECORD_OK(errors, hope_merge_states(&m, nullptr));
    o.add("merge_out", out.bytes.data(), out.bytes.size());
    o.add("merge_lse", lse.data(), lse.size());
  }
  // status helpers
  int32_t devices = -1;
  RECORD_OK(errors, hope_cuda_device_count(&devices));
  o.add("device_count", &devices, 1);
  const int version = hope_version();
  o.add("version", &version, 1);
  return o;
}

// Each thread's own errors: values that only this thread uses, which must come back in its own message.
void provoke_own_errors(int tid, int iteration, std::vector<std::string> *problems) {
  const auto expect_message = [&](hope_status_t s, const std::string &needle, const char *what) {
    const std::string msg = hope_last_error();  // copy at once: valid until this thread's next hope_* call
    if (s == HOPE_SUCCESS) problems->push_back(std::string(what) + " succeeded");
    else if (msg.find(needle) == std::string::npos)
      problems->push_back(std::string(what) + ": thread " + std::to_string(tid) + " expected \"" + needle +
                          "\" in its message, got \"" + msg + "\"");
  };
  // 1. A text segment with a negative length at index tid: the message names segments[tid] and the length.
  std::vector<hope_segment_t> segs(size_t(tid) + 1, text(2));
  const int32_t bad_len = -(1000 + 10 * tid + iteration);
  segs[tid].length = bad_len;
  int64_t n = 0;
  expect_message(hope_positions_count(segs.data(), int32_t(segs.size()), &n), std::to_string(bad_len),
                 "hope_positions_count");
  expect_message(hope_positions_count(segs.data(), int32_t(segs.size()), &n), "[" + std::to_string(tid) + "]",
                 "hope_positions_count");
  // 2. An odd head_dim of this thread's own value.
  hope_rope_config_t c = hope_rope();
  c.head_dim = 101 + 2 * tid;
  expect_message(hope_rope_components(&c, nullptr), std::to_string(c.head_dim), "hope_rope_components");
  // 3. A num_kv_heads that does not divide num_q_heads.
  hope_attention_params_t p{};
  std::memset(&p, 0, sizeof p);
  p.backend = HOPE_BACKEND_CPU;
  p.dtype = HOPE_DTYPE_FLOAT32;
  p.batch = 1;
  p.num_q_heads = 7 * (tid + 2) + 1;
  p.num_kv_heads = 7;
  p.head_dim = 64;
  expect_message(hope_attention_forward(&p, nullptr), std::to_string(p.num_q_heads), "hope_attention_forward");
  // 4. A successful call in between does not disturb what the next failure reports.
  int32_t devices = 0;
  (void)hope_cuda_device_count(&devices);
  hope_scale_params_t sp;
  std::memset(&sp, 0, sizeof sp);
  sp.policy = HOPE_SCALE_FIXED;
  sp.fixed_scale = -float(tid + 1);
  std::vector<hope_segment_t> one = {vision(HOPE_SEGMENT_VIDEO, 2, 2, 2, 0.0f)};
  expect_message(hope_temporal_scales_select(&sp, one.data(), 1, nullptr), std::to_string(-(tid + 1)),
                 "hope_temporal_scales_select");
}

TEST(Concurrency, EveryEntryPointFromManyThreadsMatchesSingleThreaded) {
  const Inputs in;
  std::vector<std::string> base_errors;
  const Outputs base = run_everything(in, &base_errors);
  ASSERT_TRUE(base_errors.empty()) << base_errors.front();

  StartGate gate(kThreads);
  std::vector<std::vector<std::string>> problems(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      gate.arrive_and_wait();
      for (int it = 0; it < kIterations; ++it) {
        std::vector<std::string> errors;
        const Outputs mine = run_everything(in, &errors);
        for (const std::string &e : errors) problems[t].push_back("unexpected failure: " + e);
        if (mine.blobs.size() != base.blobs.size()) {
          problems[t].push_back("different number of outputs");
          continue;
        }
        for (size_t i = 0; i < mine.blobs.size(); ++i)
          if (mine.blobs[i] != base.blobs[i])
            problems[t].push_back("output '" + mine.names[i] + "' differs from the single-threaded run");
        provoke_own_errors(t, it, &problems[t]);
      }
    });
  }
  for (std::thread &th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) {
    for (const std::string &p : problems[t]) ADD_FAILURE() << "thread " << t << ": " << p;
  }
}

// Per-thread messages under pressure: many threads fail at once, over and over, each with its own value.
TEST(Concurrency, EachThreadReadsItsOwnErrorMessage) {
  constexpr int kThreadsHere = 8, kRounds = 200;
  StartGate gate(kThreadsHere);
  std::atomic<int> wrong{0};
  std::vector<std::string> first_wrong(kThreadsHere);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreadsHere; ++t) {
    threads.emplace_back([&, t] {
      gate.arrive_and_wait();
      for (int r = 0; r < kRounds; ++r) {
        const int32_t mine = -(100000 * (t + 1) + r);
        hope_segment_t s = text(mine);
        int64_t n = 0;
        const hope_status_t st = hope_positions_count(&s, 1, &n);
        const std::string msg = hope_last_error();
        if (st != HOPE_ERROR_INVALID_VALUE || msg.find(std::to_string(mine)) == std::string::npos) {
          if (wrong.fetch_add(1) == 0 || first_wrong[t].empty()) first_wrong[t] = msg;
        }
        if (r % 16 == 0) {  // a success on this thread leaves the others' messages alone
          hope_segment_t ok = text(3);
          (void)hope_positions_count(&ok, 1, &n);
        }
      }
    });
  }
  for (std::thread &th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  for (int t = 0; t < kThreadsHere; ++t)
    EXPECT_TRUE(first_wrong[t].empty()) << "thread " << t << " read \"" << first_wrong[t] << "\"";
}

// One host cache, disjoint rows filled by several threads at once (the header allows this for streams; a host
// cache must allow it as well), equals the single-call tables.
TEST(Concurrency, DisjointRowsOfOneHostCacheFilledAtOnce) {
  const hope_rope_config_t rope = hope_rope();
  const int half = rope.head_dim / 2;
  const int64_t rows_per_thread = 257, total = rows_per_thread * kThreads;
  std::vector<float> pos(size_t(3 * total));
  for (int64_t i = 0; i < 3 * total; ++i) pos[i] = float(100003 + (i * 7919) % 50000) * 0.5f;
  std::vector<float> cs(size_t(total) * half), sn(cs.size());
  ASSERT_HOPE_OK(hope_rope_cos_sin(&rope, pos.data(), total, cs.data(), sn.data()));
  hope_rope_cache_t cache = nullptr;
  ASSERT_HOPE_OK(hope_rope_cache_create(&rope, total, HOPE_MEMORY_HOST, &cache));
  StartGate gate(kThreads);
  std::vector<hope_status_t> status(kThreads, HOPE_ERROR_INTERNAL);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      gate.arrive_and_wait();
      // rows [t*R, (t+1)*R) from the positions' columns of those tokens: ld = total
      status[t] = hope_rope_cache_fill(cache, t * rows_per_thread, pos.data() + t * rows_per_thread, rows_per_thread,
                                       total, HOPE_MEMORY_HOST, nullptr);
    });
  }
  for (std::thread &th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(status[t], HOPE_SUCCESS) << "thread " << t;
  const float *ct = nullptr, *st = nullptr;
  ASSERT_HOPE_OK(hope_rope_cache_get(cache, &ct, &st, nullptr, nullptr));
  EXPECT_EQ(std::memcmp(ct, cs.data(), cs.size() * sizeof(float)), 0) << "cache cos differs from hope_rope_cos_sin";
  EXPECT_EQ(std::memcmp(st, sn.data(), sn.size() * sizeof(float)), 0) << "cache sin differs from hope_rope_cos_sin";
  EXPECT_HOPE_OK(hope_rope_cache_destroy(cache));
}

// ---- GPU: several streams sharing one device cache -------------------------------------------------------
#if HOPE_TEST_WITH_CUDA

#define CUDA_OK(expr)                                                                            \
  do {                                                                                           \
    const cudaError_t e_ = (expr);                                                               \
    if (e_ != cudaSuccess) {                                                                     \
      problems->push_back(std::string(#expr) + ": " + cudaGetErrorString(e_));                   \
      return;                                                                                    \
    }                                                                                            \
  } while (0)
#define HOPE_RECORD(expr)                                                                        \
  do {                                                                                           \
    const hope_status_t s_ = (expr);                                                             \
    if (s_ != HOPE_SUCCESS) {                                                                    \
      problems->push_back(std::string(#expr) + ": " + hope_status_string(s_) + ": " + hope_last_error()); \
      return;                                                                                    \
    }                                                                                            \
  } while (0)

class ConcurrencyGpu : public hope_test::GpuTest {};

// Per thread: its own stream fills its own rows of the shared device cache from host positions, rotates its
// own q with those rows (CUDA rope_apply) and runs fused attention on them; everything must match the CPU backend.
void gpu_worker(int t, hope_rope_cache_t cache, int64_t rows, const std::vector<float> &pos_all, int64_t total,
                std::vector<std::string> *problems) {
  const hope_rope_config_t rope = hope_rope();
  const int d = rope.head_dim, half = d / 2, heads = 2;
  cudaStream_t stream = nullptr;
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  struct StreamGuard {
    cudaStream_t s;
    ~StreamGuard() { cudaStreamDestroy(s); }
  } guard{stream};
  const int64_t first = t * rows;
  // Host positions of this thread's rows, copied so the array can be reused right after the call.
  std::vector<float> mine(size_t(3 * rows));
  for (int r = 0; r < 3; ++r)
    std::memcpy(&mine[r * rows], &pos_all[r * total + first], size_t(rows) * sizeof(float));
  HOPE_RECORD(hope_rope_cache_fill(cache, first, mine.data(), rows, 0, HOPE_MEMORY_HOST, stream));
  std::fill(mine.begin(), mine.end(), -1.0f);  // the library copied them to its staging rows already
  const float *dcos = nullptr, *dsin = nullptr;
  HOPE_RECORD(hope_rope_cache_get(cache, &dcos, &dsin, nullptr, nullptr));
  dcos += first * half;
  dsin += first * half;

  // Expected cos/sin from the host reference entry point.
  std::vector<float> pos_rows(size_t(3 * rows));
  for (int r = 0; r < 3; ++r)
    std::memcpy(&pos_rows[r * rows], &pos_all[r * total + first], size_t(rows) * sizeof(float));
  std::vector<float> hc(size_t(rows) * half), hs(hc.size());
  HOPE_RECORD(hope_rope_cos_sin(&rope, pos_rows.data(), rows, hc.data(), hs.data()));

  // q, k, v in float16, rotated through the cache rows: CUDA attention vs CPU attention on the host copies.
  std::mt19937_64 rng(1000 + t);
  Tensor q = hope_test::random_tensor(HOPE_DTYPE_FLOAT16, size_t(rows) * heads * d, rng);
  Tensor k = hope_test::random_tensor(HOPE_DTYPE_FLOAT16, size_t(rows) * heads * d, rng);
  Tensor v = hope_test::random_tensor(HOPE_DTYPE_FLOAT16, size_t(rows) * heads * d, rng);
  const size_t bytes = q.bytes.size();
  void *dq = nullptr, *dk = nullptr, *dv = nullptr, *dout = nullptr;
  int32_t *dcu = nullptr;
  CUDA_OK(cudaMalloc(&dq, bytes));
  struct Frees {
    std::vector<void *> p;
    ~Frees() {
      for (void *x : p) cudaFree(x);
    }
  } frees{{dq}};
  CUDA_OK(cudaMalloc(&dk, bytes));
  frees.p.push_back(dk);
  CUDA_OK(cudaMalloc(&dv, bytes));
  frees.p.push_back(dv);
  CUDA_OK(cudaMalloc(&dout, bytes));
  frees.p.push_back(dout);
  CUDA_OK(cudaMalloc(reinterpret_cast<void **>(&dcu), 2 * sizeof(int32_t)));
  frees.p.push_back(dcu);
  const int32_t cu[2] = {0, int32_t(rows)};
  CUDA_OK(cudaMemcpyAsync(dq, q.data(), bytes, cudaMemcpyHostToDevice, stream));
  CUDA_OK(cudaMemcpyAsync(dk, k.data(), bytes, cudaMemcpyHostToDevice, stream));
  CUDA_OK(cudaMemcpyAsync(dv, v.data(), bytes, cudaMemcpyHostToDevice, stream));
  CUDA_OK(cudaMemcpyAsync(dcu, cu, sizeof cu, cudaMemcpyHostToDevice, stream));

  hope_attention_params_t p{};
  std::memset(&p, 0, sizeof p);
  p.backend = HOPE_BACKEND_CUDA;
  p.dtype = HOPE_DTYPE_FLOAT16;
  p.batch = 1;
  p.num_q_heads = heads;
  p.num_kv_heads = heads;
  p.head_dim = d;
  p.cu_seqlens_q = dcu;
  p.cu_seqlens_k = dcu;
  p.max_seqlen_q = int32_t(rows);
  p.max_seqlen_k = int32_t(rows);
  p.q = dq;
  p.k = dk;
  p.v = dv;
  p.out = dout;
  p.cos_q = p.cos_k = dcos;
  p.sin_q = p.sin_k = dsin;
  p.causal = 1;
  HOPE_RECORD(hope_attention_forward(&p, stream));
  Tensor got(HOPE_DTYPE_FLOAT16, q.size());
  std::vector<float> got_cos(hc.size()), got_sin(hs.size());
  CUDA_OK(cudaMemcpyAsync(got.data(), dout, bytes, cudaMemcpyDeviceToHost, stream));
  CUDA_OK(cudaMemcpyAsync(got_cos.data(), dcos, got_cos.size() * sizeof(float), cudaMemcpyDeviceToHost, stream));
  CUDA_OK(cudaMemcpyAsync(got_sin.data(), dsin, got_sin.size() * sizeof(float), cudaMemcpyDeviceToHost, stream));
  CUDA_OK(cudaStreamSynchronize(stream));

  for (size_t i = 0; i < hc.size(); ++i) {
    if (std::fabs(got_cos[i] - hc[i]) > 2e-6f || std::fabs(got_sin[i] - hs[i]) > 2e-6f) {
      problems->push_back("device cache row " + std::to_string(first + int64_t(i) / half) + " differs from host");
      return;
    }
  }
  // CPU backend on the host copies with the host tables.
  Tensor want(HOPE_DTYPE_FLOAT16, q.size());
  hope_attention_params_t c = p;
  c.backend = HOPE_BACKEND_CPU;
  c.cu_seqlens_q = c.cu_seqlens_k = cu;
  c.q = q.data();
  c.k = k.data();
  c.v = v.data();
  c.out = want.data();
  c.cos_q = c.cos_k = hc.data();
  c.sin_q = c.sin_k = hs.data();
  HOPE_RECORD(hope_attention_forward(&c, nullptr));
  const double err = hope_test::relative_error(got.values(), want.values());
  if (!(err <= 2e-3)) problems->push_back("stream attention vs CPU: relative error " + std::to_string(err));
}

TEST_F(ConcurrencyGpu, StreamsShareOneDeviceCache) {
  const hope_rope_config_t rope = hope_rope();
  const int64_t rows = 129, total = rows * kThreads;
  std::vector<float> pos(size_t(3 * total));
  for (int64_t i = 0; i < 3 * total; ++i) pos[i] = float(131000 + (i * 613) % 4096) * 0.25f;
  hope_rope_cache_t cache = nullptr;
  ASSERT_HOPE_OK(hope_rope_cache_create(&rope, total, HOPE_MEMORY_DEVICE, &cache));
  StartGate gate(kThreads);
  std::vector<std::vector<std::string>> problems(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      gate.arrive_and_wait();
      gpu_worker(t, cache, rows, pos, total, &problems[t]);
    });
  }
  for (std::thread &th : threads) th.join();
  EXPECT_HOPE_OK(hope_rope_cache_destroy(cache));
  for (int t = 0; t < kThreads; ++t)
    for (const std::string &p : problems[t]) ADD_FAILURE() << "thread " << t << ": " << p;
}
#endif  // HOPE_TEST_WITH_CUDA

}  // namespace
