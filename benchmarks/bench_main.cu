// bench_main.cu — hope_attn benchmarks: the D2D copy yardstick, hope_rope_apply, the unfused and the fused
// attention paths, and the serving path (hope_kv_append, hope_decode_forward, hope_merge_states).
//
//   hope_bench [--json PATH] [--filter SUBSTR[,SUBSTR...]] [--reps N] [--warmup N] [--list]
//
// Prints a table; with --json writes one JSON object per case (name, shape, gpu, median_ms, gbps, tflops,
// fraction_of_copy, ...). Exits 0 after "no CUDA device: benchmarks skipped" on a machine without a GPU.
// Exit status 1 when a case failed with a CUDA or hope_attn error.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "harness.h"
#include "hope_attn.h"

namespace {

using hope_bench::Harness;
using hope_bench::Result;

// ---- device buffers and deterministic fills -----------------------------------------------------------------
struct Buffer {
  void *ptr = nullptr;
  size_t bytes = 0;
  Buffer() = default;
  Buffer(const Buffer &) = delete;
  Buffer &operator=(const Buffer &) = delete;
  Buffer(Buffer &&o) noexcept : ptr(o.ptr), bytes(o.bytes) { o.ptr = nullptr; o.bytes = 0; }
  ~Buffer() {
    if (ptr != nullptr) cudaFree(ptr);
  }
  cudaError_t alloc(size_t n) {
    bytes = n;
    return cudaMalloc(&ptr, n);
  }
};

__device__ __forceinline__ float hash_unit(uint64_t i, uint32_t seed) {  // uniform in [-1, 1)
  uint64_t z = i * 0x9E3779B97F4A7C15ull + seed;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<float>(z >> 40) * (2.0f / 16777216.0f) - 1.0f;
}
__device__ __forceinline__ void store(float *p, float x) { *p = x; }
__device__ __forceinline__ void store(__half *p, float x) { *p = __float2half_rn(x); }
__device__ __forceinline__ void store(__nv_bfloat16 *p, float x) { *p = __float2bfloat16_rn(x); }

template <typename T>
__global__ void fill_kernel(T *p, int64_t n, uint32_t seed) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    store(p + i, hash_unit(static_cast<uint64_t>(i), seed));
}
// A true rotation table (cos^2 + sin^2 = 1), so repeated in-place application keeps values bounded.
__global__ void fill_cos_sin_kernel(float *c, float *s, int64_t n, uint32_t seed) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float sn, cs;
    sincosf(3.14159265f * hash_unit(static_cast<uint64_t>(i), seed), &sn, &cs);
    c[i] = cs;
    s[i] = sn;
  }
}

cudaError_t fill(void *p, int dtype, int64_t n, uint32_t seed, cudaStream_t stream) {
  const int grid = static_cast<int>(std::min<int64_t>((n + 255) / 256, 4096));
  if (n == 0) return cudaSuccess;
  if (dtype == HOPE_DTYPE_FLOAT16) fill_kernel<<<grid, 256, 0, stream>>>(static_cast<__half *>(p), n, seed);
  else if (dtype == HOPE_DTYPE_BFLOAT16) fill_kernel<<<grid, 256, 0, stream>>>(static_cast<__nv_bfloat16 *>(p), n, seed);
  else fill_kernel<<<grid, 256, 0, stream>>>(static_cast<float *>(p), n, seed);
  return cudaGetLastError();
}
cudaError_t fill_cos_sin(float *c, float *s, int64_t n, uint32_t seed, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  fill_cos_sin_kernel<<<static_cast<int>(std::min<int64_t>((n + 255) / 256, 4096)), 256, 0, stream>>>(c, s, n, seed);
  return cudaGetLastError();
}

size_t dtype_bytes(int dtype) { return dtype == HOPE_DTYPE_FLOAT32 ? 4 : 2; }
const char *dtype_str(int dtype) {
  return dtype == HOPE_DTYPE_FLOAT16 ? "f16" : dtype == HOPE_DTYPE_BFLOAT16 ? "bf16" : "f32";
}

// Sets of buffers rotated between iterations: enough that their total exceeds the L2 cache several times.
int sets_for(size_t bytes_per_set, int l2_bytes) {
  const size_t want = 4 * static_cast<size_t>(l2_bytes > 0 ? l2_bytes : (50 << 20));
  size_t n = (want + bytes_per_set - 1) / std::max<size_t>(bytes_per_set, 1);
  return static_cast<int>(std::min<size_t>(std::max<size_t>(n, 2), 4));
}

struct Context {
  Harness *h;
  cudaStream_t stream;
  std::string filter;
  int l2_bytes;
  bool failed = false;
  double copy_gbps = 0.0;
};

void finish(Context &ctx, Result &r, bool ok) {
  if (!ok) ctx.failed = true;
  ctx.h->add(r);
}

std::string fail_msg(hope_status_t s) { return std::string(hope_status_string(s)) + ": " + hope_last_error(); }

// Marks a case skipped after a failed setup step. Only a failed allocation is not a failure of the run.
void setup_failed(Context &ctx, Result &r, cudaError_t e) {
  r.skipped = true;
  r.note = std::string("setup: ") + cudaGetErrorString(e);
  (void)cudaGetLastError();
  finish(ctx, r, e == cudaErrorMemoryAllocation);
}

// Runs one hope_* call inside a timed iteration: NOT_SUPPORTED abandons the case (skipped), anything else
// abandons it and fails the run.
bool api_call(hope_status_t st, std::string *why, bool *api_failed) {
  if (st == HOPE_SUCCESS) return true;
  *why = fail_msg(st);
  if (st != HOPE_ERROR_NOT_SUPPORTED) *api_failed = true;
  return false;
}

// Marks a case skipped after its workspace query failed: NOT_SUPPORTED is not a failure of the run.
void query_failed(Context &ctx, Result &r, hope_status_t st) {
  r.skipped = true;
  r.note = fail_msg(st);
  finish(ctx, r, st == HOPE_ERROR_NOT_SUPPORTED);
}

// One input set of a prefill case: q, k, v, out [n][heads][d] in the dtype, lse, and (optional) cos/sin
// [n][d/2] and a k_rotated buffer.
struct PrefillSet {
  Buffer q, k, v, out, lse, cs, sn, krot;
};

// Allocates one set and fills q, k, v (seeds seed, seed + 100, seed + 200) and cos/sin (seed + 300).
cudaError_t alloc_prefill_set(PrefillSet *b, int dtype, int n, int hq, int hk, int d, bool rope, bool krot,
                              uint32_t seed, cudaStream_t stream) {
  const size_t qb = static_cast<size_t>(n) * hq * d * dtype_bytes(dtype);
  const size_t kb = static_cast<size_t>(n) * hk * d * dtype_bytes(dtype);
  const size_t csb = static_cast<size_t>(n) * (d / 2) * sizeof(float);
  cudaError_t e = b->q.alloc(qb);
  if (e == cudaSuccess) e = b->k.alloc(kb);
  if (e == cudaSuccess) e = b->v.alloc(kb);
  if (e == cudaSuccess) e = b->out.alloc(qb);
  if (e == cudaSuccess) e = b->lse.alloc(static_cast<size_t>(n) * hq * sizeof(float));
  if (e == cudaSuccess && rope) e = b->cs.alloc(csb);
  if (e == cudaSuccess && rope) e = b->sn.alloc(csb);
  if (e == cudaSuccess && krot) e = b->krot.alloc(kb);
  if (e == cudaSuccess) e = fill(b->q.ptr, dtype, static_cast<int64_t>(n) * hq * d, seed, stream);
  if (e == cudaSuccess) e = fill(b->k.ptr, dtype, static_cast<int64_t>(n) * hk * d, seed + 100, stream);
  if (e == cudaSuccess) e = fill(b->v.ptr, dtype, static_cast<int64_t>(n) * hk * d, seed + 200, stream);
  if (e == cudaSuccess && rope)
    e = fill_cos_sin(static_cast<float *>(b->cs.ptr), static_cast<float *>(b->sn.ptr),
                     static_cast<int64_t>(n) * (d / 2), seed + 300, stream);
  return e;
}

// The CUDA attention call of the prefill cases: one sequence of n query and n key tokens (cu = {0, n}),
// [n][heads][d] tensors of set b, no rotation (the caller sets cos/sin and k_rotated).
hope_attention_params_t prefill_params(int dtype, int hq, int hk, int d, int n, bool causal, const Buffer &cu,
                                       const PrefillSet &b) {
  hope_attention_params_t p;
  std::memset(&p, 0, sizeof p);
  p.backend = HOPE_BACKEND_CUDA;
  p.dtype = dtype;
  p.batch = 1;
  p.num_q_heads = hq;
  p.num_kv_heads = hk;
  p.head_dim = d;
  p.cu_seqlens_q = static_cast<const int32_t *>(cu.ptr);
  p.cu_seqlens_k = static_cast<const int32_t *>(cu.ptr);
  p.max_seqlen_q = n;
  p.max_seqlen_k = n;
  p.q = b.q.ptr;
  p.k = b.k.ptr;
  p.v = b.v.ptr;
  p.out = b.out.ptr;
  p.lse = static_cast<float *>(b.lse.ptr);
  p.causal = causal ? 1 : 0;
  return p;
}

// ---- rope problem size -------------------------------------------------------------------------------------
constexpr int64_t kRopeTokens = 8192;
constexpr int kRopeHeads = 28 + 4;  // the q heads and kv heads of a Qwen2-VL-7B layer, rotated in one call
constexpr int kRopeDim = 128;
double rope_bytes(int dtype) {
  const double x = static_cast<double>(kRopeTokens) * kRopeHeads * kRopeDim * dtype_bytes(dtype);
  const double cs = 2.0 * kRopeTokens * (kRopeDim / 2) * sizeof(float);
  return 2.0 * x + cs;  // x read, out written, cos and sin read
}

// ---- case: device-to-device copy (the bandwidth yardstick) ---------------------------------------------------
void bench_copy(Context &ctx) {
  Result r;
  r.name = "copy_d2d";
  // Copies half the rope case's traffic, so read + write equals the bytes hope_rope_apply moves.
  const size_t n = static_cast<size_t>(rope_bytes(HOPE_DTYPE_BFLOAT16) / 2);
  r.shape = std::to_string(n) + " bytes";
  r.bytes = 2.0 * static_cast<double>(n);
  if (!Harness::matches(r.name, ctx.filter)) return;
  const int sets = sets_for(2 * n, ctx.l2_bytes);
  std::vector<Buffer> src(sets), dst(sets);
  for (int i = 0; i < sets; ++i) {
    if (src[i].alloc(n) != cudaSuccess || dst[i].alloc(n) != cudaSuccess ||
        cudaMemsetAsync(src[i].ptr, 1, n, ctx.stream) != cudaSuccess) {
      r.skipped = true;
      r.note = "allocation failed";
      (void)cudaGetLastError();
      return finish(ctx, r, true);
    }
  }
  const bool ok = ctx.h->time_case(&r, sets, [&](int s, std::string *why) {
    const cudaError_t e = cudaMemcpyAsync(dst[s].ptr, src[s].ptr, n, cudaMemcpyDeviceToDevice, ctx.stream);
    if (e != cudaSuccess) *why = cudaGetErrorString(e);
    return e == cudaSuccess;
  });
  if (!r.skipped) ctx.copy_gbps = r.gbps;
  finish(ctx, r, ok && !r.skipped);
}

// ---- case: hope_rope_apply ---------------------------------------------------------------------------------
void bench_rope(Context &ctx, int dtype, bool in_place) {
  Result r;
  r.name = std::string("rope_apply_") + dtype_str(dtype) + (in_place ? "_inplace" : "_outofplace");
  r.shape = std::to_string(kRopeTokens) + "x(28q+4kv)x" + std::to_string(kRopeDim);
  r.bytes = rope_bytes(dtype);
  if (!Harness::matches(r.name, ctx.filter)) return;
  const int64_t elems = kRopeTokens * kRopeHeads * kRopeDim, cs_elems = kRopeTokens * (kRopeDim / 2);
  const size_t xb = static_cast<size_t>(elems) * dtype_bytes(dtype);
  const int sets = sets_for(in_place ? xb : 2 * xb, ctx.l2_bytes);
  std::vector<Buffer> x(sets), out(sets), cs(sets), sn(sets);
  for (int i = 0; i < sets; ++i) {
    cudaError_t e = x[i].alloc(xb);
    if (e == cudaSuccess && !in_place) e = out[i].alloc(xb);
    if (e == cudaSuccess) e = cs[i].alloc(cs_elems * sizeof(float));
    if (e == cudaSuccess) e = sn[i].alloc(cs_elems * sizeof(float));
    if (e == cudaSuccess) e = fill(x[i].ptr, dtype, elems, 17 + i, ctx.stream);
    if (e == cudaSuccess)
      e = fill_cos_sin(static_cast<float *>(cs[i].ptr), static_cast<float *>(sn[i].ptr), cs_elems, 31 + i, ctx.stream);
    if (e != cudaSuccess) return setup_failed(ctx, r, e);
  }
  bool api_failed = false;
  const bool ok = ctx.h->time_case(&r, sets, [&](int s, std::string *why) {
    hope_rope_apply_params_t p;
    std::memset(&p, 0, sizeof p);
    p.backend = HOPE_BACKEND_CUDA;
    p.dtype = dtype;
    p.num_tokens = kRopeTokens;
    p.num_heads = kRopeHeads;
    p.head_dim = kRopeDim;
    p.x = x[s].ptr;
    p.out = in_place ? x[s].ptr : out[s].ptr;
    p.cos = static_cast<const float *>(cs[s].ptr);
    p.sin = static_cast<const float *>(sn[s].ptr);
    return api_call(hope_rope_apply(&p, ctx.stream), why, &api_failed);
  });
  if (!r.skipped && ctx.copy_gbps > 0) r.fraction_of_copy = r.gbps / ctx.copy_gbps;
  finish(ctx, r, ok && !api_failed);
}

// ---- case: the unfused attention path ---------------------------------------------------------------------
void bench_unfused(Context &ctx, int n, bool causal) {
  const int hq = 28, hk = 4, d = 128, dtype = HOPE_DTYPE_BFLOAT16;
  Result r;
  r.name = std::string("attention_unfused_bf16_d128_hq28_hk4_n") + std::to_string(n) + (causal ? "_causal" : "_full");
  r.shape = "batch 1, " + std::to_string(n) + "x" + std::to_string(n) + ", rotated q/k";
  r.flops = 4.0 * n * n * d * hq * (causal ? 0.5 : 1.0);
  if (!Harness::matches(r.name, ctx.filter)) return;
  const int sets = 4;
  std::vector<PrefillSet> b(sets);
  Buffer cu, ws;
  const int32_t cu_host[2] = {0, n};
  cudaError_t e = cu.alloc(sizeof cu_host);
  if (e == cudaSuccess) e = cudaMemcpy(cu.ptr, cu_host, sizeof cu_host, cudaMemcpyHostToDevice);
  for (int i = 0; e == cudaSuccess && i < sets; ++i)
    e = alloc_prefill_set(&b[i], dtype, n, hq, hk, d, true, false, 100 + i, ctx.stream);
  if (e != cudaSuccess) return setup_failed(ctx, r, e);
  auto params = [&](int s) {
    hope_attention_params_t p = prefill_params(dtype, hq, hk, d, n, causal, cu, b[s]);
    p.cos_q = p.cos_k = static_cast<const float *>(b[s].cs.ptr);
    p.sin_q = p.sin_k = static_cast<const float *>(b[s].sn.ptr);
    return p;
  };
  hope_attention_params_t p0 = params(0);
  size_t ws_bytes = 0;
  const hope_status_t st = hope_attention_unfused_workspace_size(&p0, &ws_bytes);
  if (st != HOPE_SUCCESS) return query_failed(ctx, r, st);
  r.note = "workspace " + std::to_string(ws_bytes >> 20) + " MiB";
  if (ws.alloc(ws_bytes) != cudaSuccess) {
    (void)cudaGetLastError();
    r.skipped = true;
    r.note += ": does not fit on this GPU";
    return finish(ctx, r, true);
  }
  bool api_failed = false;
  const bool ok = ctx.h->time_case(&r, sets, [&](int s, std::string *why) {
    const hope_attention_params_t p = params(s);
    return api_call(hope_attention_forward_unfused(&p, ws.ptr, ws_bytes, ctx.stream), why, &api_failed);
  });
  finish(ctx, r, ok && !api_failed);
}

// ---- serving-path helpers ---------------------------------------------------------------------------------
// A device int buffer filled from the host (setup only, synchronous).
template <typename T>
cudaError_t upload(Buffer *b, const std::vector<T> &host) {
  cudaError_t e = b->alloc(std::max<size_t>(host.size(), 1) * sizeof(T));
  if (e == cudaSuccess && !host.empty())
    e = cudaMemcpy(b->ptr, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice);
  return e;
}

// A deterministic random permutation of [0, n) (splitmix64 draws, Fisher-Yates).
std::vector<int32_t> shuffled(int32_t n, uint64_t seed) {
  std::vector<int32_t> p(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) p[static_cast<size_t>(i)] = i;
  uint64_t state = seed;
  for (int32_t i = n - 1; i > 0; --i) {
    state += 0x9E3779B97F4A7C15ull;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    std::swap(p[static_cast<size_t>(i)], p[static_cast<size_t>(z % static_cast<uint64_t>(i + 1))]);
  }
  return p;
}

// The Qwen2-VL-7B layer the serving cases use.
constexpr int kHq = 28, kHk = 4, kDim = 128, kPage = 16;

// ---- case: paged decode (hope_decode_forward) -----------------------------------------------------------------
// batch sequences of ctx keys each (the new tokens included) in pages of 16 scattered over the pool in a
// random order; nq query tokens per sequence (1: decode, 8: speculative), q rotated from cos/sin in the
// kernel, lse written, the planner's default split. Bytes: K and V pages read once + q read + out written.
void bench_decode(Context &ctx, int batch, int ctx_len, int nq) {
  const int dtype = HOPE_DTYPE_BFLOAT16;
  const size_t eb = dtype_bytes(dtype);
  Result r;
  r.name = "decode_bf16_d128_hq28_hk4_p16_b" + std::to_string(batch) + "_ctx" + std::to_string(ctx_len) + "_q" +
           std::to_string(nq);
  r.shape = "batch " + std::to_string(batch) + ", " + std::to_string(nq) + "q x " + std::to_string(ctx_len) + "k";
  const int64_t keys = static_cast<int64_t>(batch) * ctx_len, total_q = static_cast<int64_t>(batch) * nq;
  const size_t kv_bytes = static_cast<size_t>(keys) * kHk * kDim * eb;  // one of K, V
  const size_t q_bytes = static_cast<size_t>(total_q) * kHq * kDim * eb;
  r.bytes = 2.0 * kv_bytes + 2.0 * q_bytes;
  if (!Harness::matches(r.name, ctx.filter)) return;
  const int pages_per_seq = (ctx_len + kPage - 1) / kPage;
  const int32_t num_pages = batch * pages_per_seq;
  const int sets = sets_for(2 * kv_bytes, ctx.l2_bytes);

  std::vector<Buffer> kp(sets), vp(sets), table(sets), q(sets), out(sets), lse(sets), cs(sets), sn(sets);
  Buffer cu, lens, ws;
  std::vector<int32_t> cu_host(static_cast<size_t>(batch) + 1), lens_host(static_cast<size_t>(batch), ctx_len);
  for (int b = 0; b <= batch; ++b) cu_host[static_cast<size_t>(b)] = b * nq;
  cudaError_t e = upload(&cu, cu_host);
  if (e == cudaSuccess) e = upload(&lens, lens_host);
  const int64_t cs_elems = total_q * (kDim / 2);
  for (int i = 0; e == cudaSuccess && i < sets; ++i) {
    e = kp[i].alloc(kv_bytes);
    if (e == cudaSuccess) e = vp[i].alloc(kv_bytes);
    if (e == cudaSuccess) e = upload(&table[i], shuffled(num_pages, 1000 + static_cast<uint64_t>(i)));
    if (e == cudaSuccess) e = q[i].alloc(q_bytes);
    if (e == cudaSuccess) e = out[i].alloc(q_bytes);
    if (e == cudaSuccess) e = lse[i].alloc(static_cast<size_t>(total_q) * kHq * sizeof(float));
    if (e == cudaSuccess) e = cs[i].alloc(static_cast<size_t>(cs_elems) * sizeof(float));
    if (e == cudaSuccess) e = sn[i].alloc(static_cast<size_t>(cs_elems) * sizeof(float));
    if (e == cudaSuccess) e = fill(kp[i].ptr, dtype, keys * kHk * kDim, 500 + i, ctx.stream);
    if (e == cudaSuccess) e = fill(vp[i].ptr, dtype, keys * kHk * kDim, 600 + i, ctx.stream);
    if (e == cudaSuccess) e = fill(q[i].ptr, dtype, total_q * kHq * kDim, 700 + i, ctx.stream);
    if (e == cudaSuccess)
      e = fill_cos_sin(static_cast<float *>(cs[i].ptr), static_cast<float *>(sn[i].ptr), cs_elems, 800 + i, ctx.stream);
  }
  if (e == cudaSuccess) e = cudaStreamSynchronize(ctx.stream);
  if (e != cudaSuccess) return setup_failed(ctx, r, e);

  auto params = [&](int s) {
    hope_decode_params_t p;
    std::memset(&p, 0, sizeof p);
    p.backend = HOPE_BACKEND_CUDA;
    p.cache.dtype = dtype;
    p.cache.num_pages = num_pages;
    p.cache.page_size = kPage;
    p.cache.num_kv_heads = kHk;
    p.cache.head_dim = kDim;
    p.cache.k_pages = kp[s].ptr;
    p.cache.v_pages = vp[s].ptr;
    p.batch = batch;
    p.num_q_heads = kHq;
    p.cu_seqlens_q = static_cast<const int32_t *>(cu.ptr);
    p.max_seqlen_q = nq;
    p.seq_lens = static_cast<const int32_t *>(lens.ptr);
    p.max_seqlen_k = ctx_len;
    p.page_table = static_cast<const int32_t *>(table[s].ptr);
    p.max_pages_per_seq = pages_per_seq;
    p.q = q[s].ptr;
    p.out = out[s].ptr;
    p.lse = static_cast<float *>(lse[s].ptr);
    p.cos_q = static_cast<const float *>(cs[s].ptr);
    p.sin_q = static_cast<const float *>(sn[s].ptr);
    p.causal = 1;
    p.num_splits = 0;  // the planner's default
    return p;
  };
  const hope_decode_params_t p0 = params(0);
  size_t ws_bytes = 0;
  const hope_status_t st = hope_decode_workspace_size(&p0, &ws_bytes);
  if (st != HOPE_SUCCESS) return query_failed(ctx, r, st);
  r.note = "workspace " + std::to_string(ws_bytes >> 10) + " KiB";
  if (ws_bytes > 0 && (e = ws.alloc(ws_bytes)) != cudaSuccess) return setup_failed(ctx, r, e);
  bool api_failed = false;
  const bool ok = ctx.h->time_case(&r, sets, [&](int s, std::string *why) {
    const hope_decode_params_t p = params(s);
    return api_call(hope_decode_forward(&p, ws.ptr, ws_bytes, ctx.stream), why, &api_failed);
  });
  if (!r.skipped && ctx.copy_gbps > 0) r.fraction_of_copy = r.gbps / ctx.copy_gbps;
  finish(ctx, r, ok && !api_failed);
}

// ---- case: hope_kv_append (a prefill chunk written into the paged cache, K rotated on the way) ------------------
void bench_kv_append(Context &ctx) {
  const int dtype = HOPE_DTYPE_BFLOAT16;
  const int64_t tokens = 8192;
  const size_t eb = dtype_bytes(dtype);
  Result r;
  r.name = "kv_append_bf16_d128_hk4_p16_rotate";
  r.shape = std::to_string(tokens) + "x4x128, cos/sin";
  const size_t kb = static_cast<size_t>(tokens) * kHk * kDim * eb;
  const size_t csb = static_cast<size_t>(tokens) * (kDim / 2) * sizeof(float);
  r.bytes = 4.0 * kb + 2.0 * csb;  // k, v read; k, v written; cos, sin read
  if (!Harness::matches(r.name, ctx.filter)) return;
  const int32_t num_pages = static_cast<int32_t>(tokens / kPage);
  const int sets = sets_for(static_cast<size_t>(r.bytes), ctx.l2_bytes);
  std::vector<Buffer> k(sets), v(sets), kp(sets), vp(sets), slots(sets), cs(sets), sn(sets);
  cudaError_t e = cudaSuccess;
  for (int i = 0; e == cudaSuccess && i < sets; ++i) {
    // Slots: the chunk's pages in a random order through the pool.
    const std::vector<int32_t> perm = shuffled(num_pages, 2000 + static_cast<uint64_t>(i));
    std::vector<int64_t> slot_host(static_cast<size_t>(tokens));
    for (int64_t t = 0; t < tokens; ++t)
      slot_host[static_cast<size_t>(t)] = static_cast<int64_t>(perm[static_cast<size_t>(t / kPage)]) * kPage + t % kPage;
    e = k[i].alloc(kb);
    if (e == cudaSuccess) e = v[i].alloc(kb);
    if (e == cudaSuccess) e = kp[i].alloc(kb);
    if (e == cudaSuccess) e = vp[i].alloc(kb);
    if (e == cudaSuccess) e = upload(&slots[i], slot_host);
    if (e == cudaSuccess) e = cs[i].alloc(csb);
    if (e == cudaSuccess) e = sn[i].alloc(csb);
    if (e == cudaSuccess) e = fill(k[i].ptr, dtype, tokens * kHk * kDim, 900 + i, ctx.stream);
    if (e == cudaSuccess) e = fill(v[i].ptr, dtype, tokens * kHk * kDim, 950 + i, ctx.stream);
    if (e == cudaSuccess)
      e = fill_cos_sin(static_cast<float *>(cs[i].ptr), static_cast<float *>(sn[i].ptr), tokens * (kDim / 2), 990 + i,
                       ctx.stream);
  }
  if (e == cudaSuccess) e = cudaStreamSynchronize(ctx.stream);
  if (e != cudaSuccess) return setup_failed(ctx, r, e);
  bool api_failed = false;
  const bool ok = ctx.h->time_case(&r, sets, [&](int s, std::string *why) {
    hope_kv_append_params_t p;
    std::memset(&p, 0, sizeof p);
    p.backend = HOPE_BACKEND_CUDA;
    p.cache.dtype = dtype;
    p.cache.num_pages = num_pages;
    p.cache.page_size = kPage;
    p.cache.num_kv_heads = kHk;
    p.cache.head_dim = kDim;
    p.cache.k_pages = kp[s].ptr;
    p.cache.v_pages = vp[s].ptr;
    p.num_tokens = tokens;
    p.k = k[s].ptr;
    p.v = v[s].ptr;
    p.slot_mapping = static_cast<const int64_t *>(slots[s].ptr);
    p.cos_k = static_cast<const float *>(cs[s].ptr);
    p.sin_k = static_cast<const float *>(sn[s].ptr);
    return api_call(hope_kv_append(&p, ctx.stream), why, &api_failed);
  });
  if (!r.skipped && ctx.copy_gbps > 0) r.fraction_of_copy = r.gbps / ctx.copy_gbps;
  finish(ctx, r, ok && !api_failed);
}

// ---- case: hope_merge_states -------------------------------------------------------------------------------------
void bench_merge(Context &ctx) {
  const int dtype = HOPE_DTYPE_BFLOAT16;
  const int64_t tokens = 8192;
  Result r;
  r.name = "merge_states_bf16_d128_h28";
  r.shape = std::to_string(tokens) + "x28x128, lse out";
  const size_t ob = static_cast<size_t>(tokens) * kHq * kDim * dtype_bytes(dtype);
  const size_t lb = static_cast<size_t>(tokens) * kHq * sizeof(float);
  r.bytes = 3.0 * ob + 3.0 * lb;  // o_a, o_b, lse_a, lse_b read; out, lse_out written
  if (!Harness::matches(r.name, ctx.filter)) return;
  const int sets = sets_for(static_cast<size_t>(r.bytes), ctx.l2_bytes);
  std::vector<Buffer> oa(sets), obuf(sets), out(sets), la(sets), lbuf(sets), lo(sets);
  cudaError_t e = cudaSuccess;
  for (int i = 0; e == cudaSuccess && i < sets; ++i) {
    e = oa[i].alloc(ob);
    if (e == cudaSuccess) e = obuf[i].alloc(ob);
    if (e == cudaSuccess) e = out[i].alloc(ob);
    if (e == cudaSuccess) e = la[i].alloc(lb);
    if (e == cudaSuccess) e = lbuf[i].alloc(lb);
    if (e == cudaSuccess) e = lo[i].alloc(lb);
    if (e == cudaSuccess) e = fill(oa[i].ptr, dtype, tokens * kHq * kDim, 1100 + i, ctx.stream);
    if (e == cudaSuccess) e = fill(obuf[i].ptr, dtype, tokens * kHq * kDim, 1200 + i, ctx.stream);
    if (e == cudaSuccess) e = fill(la[i].ptr, HOPE_DTYPE_FLOAT32, tokens * kHq, 1300 + i, ctx.stream);
    if (e == cudaSuccess) e = fill(lbuf[i].ptr, HOPE_DTYPE_FLOAT32, tokens * kHq, 1400 + i, ctx.stream);
  }
  if (e == cudaSuccess) e = cudaStreamSynchronize(ctx.stream);
  if (e != cudaSuccess) return setup_failed(ctx, r, e);
  bool api_failed = false;
  const bool ok = ctx.h->time_case(&r, sets, [&](int s, std::string *why) {
    hope_merge_params_t p;
    std::memset(&p, 0, sizeof p);
    p.backend = HOPE_BACKEND_CUDA;
    p.dtype = dtype;
    p.num_tokens = tokens;
    p.num_heads = kHq;
    p.head_dim = kDim;
    p.o_a = oa[s].ptr;
    p.o_b = obuf[s].ptr;
    p.lse_a = static_cast<const float *>(la[s].ptr);
    p.lse_b = static_cast<const float *>(lbuf[s].ptr);
    p.out = out[s].ptr;
    p.lse_out = static_cast<float *>(lo[s].ptr);
    return api_call(hope_merge_states(&p, ctx.stream), why, &api_failed);
  });
  if (!r.skipped && ctx.copy_gbps > 0) r.fraction_of_copy = r.gbps / ctx.copy_gbps;
  finish(ctx, r, ok && !api_failed);
}

// ---- case: the fused prefill forward (hope_attention_forward, CUDA backend) ------------------------------------
enum class KRot { kInKernel, kPrePass, kNone };

void bench_fused(Context &ctx, int n, KRot mode) {
  const int dtype = HOPE_DTYPE_BFLOAT16;
  const size_t eb = dtype_bytes(dtype);
  Result r;
  const char *suffix = mode == KRot::kInKernel ? "_cossin" : mode == KRot::kPrePass ? "_krotated" : "_norope";
  r.name = "attention_fused_bf16_d128_hq28_hk4_n" + std::to_string(n) + "_causal" + suffix;
  r.shape = "batch 1, " + std::to_string(n) + "x" + std::to_string(n) +
            (mode == KRot::kInKernel ? ", K rotated in-kernel" : mode == KRot::kPrePass ? ", k_rotated pre-pass" : ", no rotation");
  r.flops = 4.0 * n * n * kDim * kHq * 0.5;
  if (!Harness::matches(r.name, ctx.filter)) return;
  const size_t qb = static_cast<size_t>(n) * kHq * kDim * eb, kb = static_cast<size_t>(n) * kHk * kDim * eb;
  const int sets = sets_for(2 * qb + 3 * kb, ctx.l2_bytes);
  std::vector<PrefillSet> b(sets);
  Buffer cu;
  const std::vector<int32_t> cu_host = {0, n};
  cudaError_t e = upload(&cu, cu_host);
  for (int i = 0; e == cudaSuccess && i < sets; ++i)
    e = alloc_prefill_set(&b[i], dtype, n, kHq, kHk, kDim, mode != KRot::kNone, mode == KRot::kPrePass, 1500 + i,
                          ctx.stream);
  if (e == cudaSuccess) e = cudaStreamSynchronize(ctx.stream);
  if (e != cudaSuccess) return setup_failed(ctx, r, e);
  bool api_failed = false;
  const bool ok = ctx.h->time_case(&r, sets, [&](int s, std::string *why) {
    hope_attention_params_t p = prefill_params(dtype, kHq, kHk, kDim, n, true, cu, b[s]);
    if (mode != KRot::kNone) {
      p.cos_q = p.cos_k = static_cast<const float *>(b[s].cs.ptr);
      p.sin_q = p.sin_k = static_cast<const float *>(b[s].sn.ptr);
    }
    p.k_rotated = mode == KRot::kPrePass ? b[s].krot.ptr : nullptr;
    return api_call(hope_attention_forward(&p, ctx.stream), why, &api_failed);
  });
  finish(ctx, r, ok && !api_failed);
}

void usage() {
  std::printf("usage: hope_bench [--json PATH] [--filter SUBSTR[,SUBSTR...]] [--reps N] [--warmup N] [--list]\n");
}

}  // namespace

int main(int argc, char **argv) {
  std::string json, filter;
  int reps = 50, warmup = 5;
  bool list = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const char *name) -> const char * {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "hope_bench: %s needs a value\n", name);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--json") json = value("--json");
    else if (a == "--filter") filter = value("--filter");
    else if (a == "--reps") reps = std::atoi(value("--reps"));
    else if (a == "--warmup") warmup = std::atoi(value("--warmup"));
    else if (a == "--list") list = true;
    else if (a == "--help" || a == "-h") {
      usage();
      return 0;
    } else {
      std::fprintf(stderr, "hope_bench: unknown argument %s\n", a.c_str());
      usage();
      return 2;
    }
  }
  if (reps < 1 || warmup < 0) {
    std::fprintf(stderr, "hope_bench: --reps must be >= 1 and --warmup >= 0\n");
    return 2;
  }
  if (list) {
    std::printf("copy_d2d\nrope_apply_{bf16,f16}_{inplace,outofplace}\n"
                "attention_unfused_bf16_d128_hq28_hk4_n{1024,2048,4096}_{full,causal}\n"
                "attention_fused_bf16_d128_hq28_hk4_n{2048,8192}_causal_{cossin,krotated,norope}\n"
                "decode_bf16_d128_hq28_hk4_p16_b1_ctx{32768,131072}_q1\n"
                "decode_bf16_d128_hq28_hk4_p16_b64_ctx4096_q1\n"
                "decode_bf16_d128_hq28_hk4_p16_b1_ctx32768_q8\n"
                "kv_append_bf16_d128_hk4_p16_rotate\nmerge_states_bf16_d128_h28\n");
    return 0;
  }
  int32_t devices = 0;
  if (hope_cuda_device_count(&devices) != HOPE_SUCCESS || devices == 0) {
    std::printf("no CUDA device: benchmarks skipped\n");
    return 0;
  }
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
    std::printf("no CUDA device: benchmarks skipped\n");
    return 0;
  }
  std::printf("GPU: %s (sm_%d%d, %d SMs, L2 %d MiB), hope_attn %d\n", prop.name, prop.major, prop.minor,
              prop.multiProcessorCount, prop.l2CacheSize >> 20, hope_version());
  cudaStream_t stream = nullptr;
  if (cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) != cudaSuccess) {
    std::fprintf(stderr, "hope_bench: cudaStreamCreate failed\n");
    return 1;
  }
  int rc = 0;
  {
    Harness h(stream, warmup, reps);
    Context ctx{&h, stream, filter, prop.l2CacheSize};
    // The copy runs first so the memory-bound cases can report their fraction of it; when --filter leaves it
    // out it still runs, unreported.
    if (!Harness::matches("copy_d2d", filter)) {
      Harness quiet(stream, warmup, reps);
      Context c2{&quiet, stream, "copy_d2d", prop.l2CacheSize};
      bench_copy(c2);
      ctx.copy_gbps = c2.copy_gbps;
    }
    bench_copy(ctx);
    for (int dtype : {HOPE_DTYPE_BFLOAT16, HOPE_DTYPE_FLOAT16})
      for (bool in_place : {true, false}) bench_rope(ctx, dtype, in_place);
    for (int n : {1024, 2048, 4096})
      for (bool causal : {false, true}) bench_unfused(ctx, n, causal);
    for (int n : {2048, 8192})
      for (KRot mode : {KRot::kInKernel, KRot::kPrePass, KRot::kNone}) bench_fused(ctx, n, mode);
    bench_decode(ctx, 1, 32768, 1);
    bench_decode(ctx, 1, 131072, 1);
    bench_decode(ctx, 64, 4096, 1);
    bench_decode(ctx, 1, 32768, 8);  // speculative decoding: 8 query tokens
    bench_kv_append(ctx);
    bench_merge(ctx);
    h.print_table(stdout);
    if (!json.empty()) {
      if (!h.write_json(json, prop.name)) {
        std::fprintf(stderr, "hope_bench: cannot write %s\n", json.c_str());
        rc = 1;
      } else {
        std::printf("wrote %s\n", json.c_str());
      }
    }
    if (ctx.failed) rc = 1;
  }
  cudaStreamDestroy(stream);
  return rc;
}
