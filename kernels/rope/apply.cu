// apply.cu — hope_rope_apply on the GPU (SPEC §4): x[token][head][d] -> out, rotate-half, float32 registers.
//
// Memory-bound, so the fast path moves 16 bytes per access: a work item is one 16-byte chunk of the first
// half of a head (8 float16/bfloat16 or 4 float32 elements) together with the matching chunk of the second
// half, plus the matching float4s of cos and sin (shared by every head of a token, so they come from L1/L2).
// Items run chunk-fastest, then head, then token, so a warp reads and writes whole contiguous segments. Each
// thread handles kUnroll items, issuing all loads before any store, to keep more bytes in flight. x is read
// with the evict-first hint (read once) and out is written the same way.
//
// When a pointer or a row stride is not 16-byte aligned, or head_dim/2 is not a multiple of the vector width,
// or the call rotates interleaved pairs or only the first rotary_dim dims (SPEC §8), a scalar kernel (one thread
// per unit of pairs.cuh: a rotary pair or two pass-through dims) takes over. In place (out == x) is safe in both:
// each element is read and then written by the same thread only.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <limits>

#include "../../csrc/internal.h"
#include "common/dtype.cuh"
#include "common/launch.cuh"
#include "common/vec.cuh"
#include "launch.h"
#include "pairs.cuh"

namespace hope {

template <typename T>
struct RopeApplyArgs {
  const T *x;
  T *out;
  const float *cos, *sin;
  int64_t num_tokens;
  int64_t x_stride, out_stride;  // elements between tokens
  int32_t num_heads, head_dim, half;  // half: head_dim / 2, the units of a head
  RotaryLayout rl;                    // pairing and rotary dimension; cos/sin rows are rl.rot_half wide
};

constexpr int kRopeThreads = 256;
constexpr int kRopeUnroll = 2;

// IDX: uint32_t when every index fits (the common case: cheaper division), else uint64_t.
template <typename T, typename IDX>
__global__ void __launch_bounds__(kRopeThreads) rope_apply_vec_kernel(RopeApplyArgs<T> a, IDX chunks_per_head,
                                                                      IDX items_per_token, IDX total) {
  constexpr int V = Vec16<T>::kElems;
  const IDX tile = static_cast<IDX>(kRopeThreads) * kRopeUnroll;
  for (IDX base = static_cast<IDX>(blockIdx.x) * tile + threadIdx.x; base < total;
       base += static_cast<IDX>(gridDim.x) * tile) {
    uint4 raw0[kRopeUnroll], raw1[kRopeUnroll];
    float c[kRopeUnroll][V], s[kRopeUnroll][V];
    T *dst[kRopeUnroll];
#pragma unroll
    for (int u = 0; u < kRopeUnroll; ++u) {
      const IDX idx = base + static_cast<IDX>(u) * kRopeThreads;
      dst[u] = nullptr;
      if (idx < total) {
        const IDX tok = idx / items_per_token;
        const IDX rem = idx - tok * items_per_token;
        const IDX head = rem / chunks_per_head;
        const IDX chunk = rem - head * chunks_per_head;
        const int64_t col = static_cast<int64_t>(head) * a.head_dim + static_cast<int64_t>(chunk) * V;
        const T *src = a.x + static_cast<int64_t>(tok) * a.x_stride + col;
        dst[u] = a.out + static_cast<int64_t>(tok) * a.out_stride + col;
        raw0[u] = load16<true>(src);
        raw1[u] = load16<true>(src + a.half);
        const int64_t cs = static_cast<int64_t>(tok) * a.half + static_cast<int64_t>(chunk) * V;
        load_floats<V>(a.cos + cs, c[u]);
        load_floats<V>(a.sin + cs, s[u]);
      }
    }
#pragma unroll
    for (int u = 0; u < kRopeUnroll; ++u) {
      if (dst[u] == nullptr) continue;
      float x0[V], x1[V], y0[V], y1[V];
      unpack16<T>(raw0[u], x0);
      unpack16<T>(raw1[u], x1);
#pragma unroll
      for (int i = 0; i < V; ++i) {
        y0[i] = x0[i] * c[u][i] - x1[i] * s[u][i];
        y1[i] = x1[i] * c[u][i] + x0[i] * s[u][i];
      }
      store16_from_float<T, true>(dst[u], y0);
      store16_from_float<T, true>(dst[u] + a.half, y1);
    }
  }
}

// Fallback: one thread per (token, head, unit), any alignment, head_dim, pairing and rotary dimension.
template <typename T>
__global__ void __launch_bounds__(kRopeThreads) rope_apply_scalar_kernel(RopeApplyArgs<T> a, int64_t total) {
  const int64_t units_per_token = static_cast<int64_t>(a.num_heads) * a.half;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t tok = idx / units_per_token;
    const int64_t rem = idx - tok * units_per_token;
    const int64_t head = rem / a.half;
    const int32_t u = static_cast<int32_t>(rem - head * a.half);
    int32_t da, db;
    const bool rotary = rotary_unit(a.rl, u, &da, &db);
    const T *src = a.x + tok * a.x_stride + head * a.head_dim;
    T *dst = a.out + tok * a.out_stride + head * a.head_dim;
    const T e0 = src[da], e1 = src[db];
    if (!rotary) {  // past rotary_dim: the input's bits
      dst[da] = e0;
      dst[db] = e1;
      continue;
    }
    const float x0 = to_float(e0), x1 = to_float(e1);
    const float c = __ldg(a.cos + tok * a.rl.rot_half + u);
    const float s = __ldg(a.sin + tok * a.rl.rot_half + u);
    dst[da] = from_float<T>(x0 * c - x1 * s);
    dst[db] = from_float<T>(x1 * c + x0 * s);
  }
}

// True when the 16-byte path applies to these arguments.
template <typename T>
bool rope_vec_ok(const RopeApplyArgs<T> &a) {
  constexpr int V = Vec16<T>::kElems;
  return is_full_rotate_half(a.rl, a.head_dim) && a.half % V == 0 && is_aligned16(a.x) && is_aligned16(a.out) &&
         is_aligned16(a.cos) && is_aligned16(a.sin) && (a.x_stride * static_cast<int64_t>(sizeof(T))) % 16 == 0 &&
         (a.out_stride * static_cast<int64_t>(sizeof(T))) % 16 == 0;
}

inline unsigned grid_for(int64_t items, int64_t per_block) {
  const int64_t blocks = (items + per_block - 1) / per_block;
  // Beyond this the kernels grid-stride; 2^20 blocks of 256 threads is far more than any GPU holds at once.
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(blocks, int64_t{1} << 20)));
}

template <typename T>
hope_status_t rope_apply_launch(const hope_rope_apply_params_t *p, cudaStream_t stream) {
  RopeApplyArgs<T> a;
  a.x = static_cast<const T *>(p->x);
  a.out = static_cast<T *>(p->out);
  a.cos = p->cos;
  a.sin = p->sin;
  a.num_tokens = p->num_tokens;
  a.x_stride = p->x_row_stride;
  a.out_stride = p->out_row_stride;
  a.num_heads = p->num_heads;
  a.head_dim = p->head_dim;
  a.half = p->head_dim / 2;
  a.rl = make_rotary_layout(p->head_dim, p->rope_pairing, p->rotary_dim);
  if (a.num_tokens <= 0) return HOPE_SUCCESS;
  const char *kernel;
  if (rope_vec_ok(a)) {
    constexpr int V = Vec16<T>::kElems;
    const int64_t chunks = a.half / V;
    const int64_t per_token = chunks * a.num_heads;
    const int64_t total = per_token * a.num_tokens;  // validated: fits (it is <= the element count)
    const int64_t per_block = static_cast<int64_t>(kRopeThreads) * kRopeUnroll;
    const unsigned grid = grid_for(total, per_block);
    // uint32 indices when base + grid stride can never wrap.
    if (total + static_cast<int64_t>(grid) * per_block < (int64_t{1} << 32)) {
      hope::launch_kernel(&rope_apply_vec_kernel<T, uint32_t>, grid, kRopeThreads, 0, stream, a,
          static_cast<uint32_t>(chunks), static_cast<uint32_t>(per_token), static_cast<uint32_t>(total));
    } else {
      hope::launch_kernel(&rope_apply_vec_kernel<T, uint64_t>, grid, kRopeThreads, 0, stream, a,
          static_cast<uint64_t>(chunks), static_cast<uint64_t>(per_token), static_cast<uint64_t>(total));
    }
    kernel = "rope_apply_vec_kernel";
  } else {
    const int64_t total = a.num_tokens * a.num_heads * static_cast<int64_t>(a.half);
    hope::launch_kernel(&rope_apply_scalar_kernel<T>, grid_for(total, kRopeThreads), kRopeThreads, 0, stream, a,
        total);
    kernel = "rope_apply_scalar_kernel";
  }
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return hopei_cuda_fail(e, "hope_rope_apply", kernel);
  return HOPE_SUCCESS;
}

}  // namespace hope

extern "C" hope_status_t hopei_rope_apply_cuda(const hope_rope_apply_params_t *p, void *stream) {
  try {
    if (p == nullptr) return hopei_fail(HOPE_ERROR_INTERNAL, "hope_rope_apply: NULL launch parameters");
    hope_status_t status = HOPE_SUCCESS;
    const bool known = hope::dispatch_dtype(p->dtype, [&](auto tag) {
      status = hope::rope_apply_launch<decltype(tag)>(p, static_cast<cudaStream_t>(stream));
    });
    if (!known) return hopei_fail(HOPE_ERROR_INVALID_VALUE, "hope_rope_apply: dtype %d is unknown", p->dtype);
    return status;
  } catch (...) {
    return hopei_fail(HOPE_ERROR_INTERNAL, "hope_rope_apply: unexpected C++ exception");
  }
}
