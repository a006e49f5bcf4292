// bench_main.cu — hope_attn benchmarks: the D2D copy yardstick, hope_rope_apply, the unfused attention path.
//
//   hope_bench [--json PATH] [--filter SUBSTR[,SUBSTR...]] [--reps N] [--warmup N] [--list]
//
// Prints a table; with --json writes one JSON object per case (name, shape, gpu, median_ms, gbps, tflops,
// fraction_of_copy, ...). Exits 0 after "no CUDA device: benchmarks skipped" on a machine without a GPU.
// Exit status 1 when a case failed with a CUDA or hope_attn error.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
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
    if (e != cudaSuccess) {
      r.skipped = true;
      r.note = std::string("setup: ") + cudaGetErrorString(e);
      (void)cudaGetLastError();
      return finish(ctx, r, e == cudaErrorMemoryAllocation);
    }
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
    const hope_status_t st = hope_rope_apply(&p, ctx.stream);
    if (st != HOPE_SUCCESS) {
      *why = fail_msg(st);
      api_failed = st != HOPE_ERROR_NOT_SUPPORTED;
    }
    return st == HOPE_SUCCESS;
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
  const size_t qb = static_cast<size_t>(n) * hq * d * dtype_bytes(dtype);
  const size_t kb = static_cast<size_t>(n) * hk * d * dtype_bytes(dtype);
  const size_t csb = static_cast<size_t>(n) * (d / 2) * sizeof(float);
  const int sets = 4;
  std::vector<Buffer> q(sets), k(sets), v(sets), out(sets), lse(sets), cs(sets), sn(sets);
  Buffer cu, ws;
  const int32_t cu_host[2] = {0, n};
  cudaError_t e = cu.alloc(sizeof cu_host);
  if (e == cudaSuccess) e = cudaMemcpy(cu.ptr, cu_host, sizeof cu_host, cudaMemcpyHostToDevice);
  for (int i = 0; e == cudaSuccess && i < sets; ++i) {
    e = q[i].alloc(qb);
    if (e == cudaSuccess) e = k[i].alloc(kb);
    if (e == cudaSuccess) e = v[i].alloc(kb);
    if (e == cudaSuccess) e = out[i].alloc(qb);
    if (e == cudaSuccess) e = lse[i].alloc(static_cast<size_t>(n) * hq * sizeof(float));
    if (e == cudaSuccess) e = cs[i].alloc(csb);
    if (e == cudaSuccess) e = sn[i].alloc(csb);
    if (e == cudaSuccess) e = fill(q[i].ptr, dtype, static_cast<int64_t>(n) * hq * d, 100 + i, ctx.stream);
    if (e == cudaSuccess) e = fill(k[i].ptr, dtype, static_cast<int64_t>(n) * hk * d, 200 + i, ctx.stream);
    if (e == cudaSuccess) e = fill(v[i].ptr, dtype, static_cast<int64_t>(n) * hk * d, 300 + i, ctx.stream);
    if (e == cudaSuccess)
      e = fill_cos_sin(static_cast<float *>(cs[i].ptr), static_cast<float *>(sn[i].ptr), static_cast<int64_t>(n) * d / 2,
                       400 + i, ctx.stream);
  }
  if (e != cudaSuccess) {
    r.skipped = true;
    r.note = std::string("setup: ") + cudaGetErrorString(e);
    (void)cudaGetLastError();
    return finish(ctx, r, e == cudaErrorMemoryAllocation);
  }
  auto params = [&](int s) {
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
    p.q = q[s].ptr;
    p.k = k[s].ptr;
    p.v = v[s].ptr;
    p.out = out[s].ptr;
    p.lse = static_cast<float *>(lse[s].ptr);
    p.cos_q = p.cos_k = static_cast<const float *>(cs[s].ptr);
    p.sin_q = p.sin_k = static_cast<const float *>(sn[s].ptr);
    p.causal = causal ? 1 : 0;
    return p;
  };
  hope_attention_params_t p0 = params(0);
  size_t ws_bytes = 0;
  hope_status_t st = hope_attention_unfused_workspace_size(&p0, &ws_bytes);
  if (st != HOPE_SUCCESS) {
    r.skipped = true;
    r.note = fail_msg(st);
    return finish(ctx, r, st == HOPE_ERROR_NOT_SUPPORTED);
  }
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
    const hope_status_t st2 = hope_attention_forward_unfused(&p, ws.ptr, ws_bytes, ctx.stream);
    if (st2 != HOPE_SUCCESS) {
      *why = fail_msg(st2);
      api_failed = st2 != HOPE_ERROR_NOT_SUPPORTED;
    }
    return st2 == HOPE_SUCCESS;
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
                "attention_unfused_bf16_d128_hq28_hk4_n{1024,2048,4096}_{full,causal}\n");
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
    // The copy runs first (unless filtered out) so the rope cases can report their fraction of it.
    if (!Harness::matches("copy_d2d", filter) && Harness::matches("rope_apply", filter)) {
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
