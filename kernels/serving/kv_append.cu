// kv_append.cu — hope_kv_append on the GPU: rotate the new keys with their cos/sin (float32, products rounded
// separately as on the CPU backend), round to the cache dtype, and write keys and values into their slots.
//
// Memory-bound. The fast path moves 16 bytes per access: a work item is one 16-byte chunk (8 elements) of
// the first half of a head plus the matching chunk of the second half, of both K and V, with the matching
// cos/sin float4s (shared by the token's heads, so they come from L1/L2). Items run chunk-fastest, then head,
// then token, so a warp reads and writes contiguous runs; every load of an item is issued before any store.
// A negative slot skips the token. When a pointer or row stride is not 16-byte aligned, or head_dim is not a
// multiple of 16, or the keys rotate (cos/sin given) interleaved pairs or only their first rotary_dim dims
// (SPEC §8), a scalar kernel (one thread per unit of kernels/rope/pairs.cuh: a rotary pair or two pass-through
// dims) takes over.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <exception>

#include "common.cuh"
#include "launch.h"
#include "rope/pairs.cuh"

namespace hope {
namespace serving {

struct KvAppendArgs {
  const void *k, *v;
  void *k_pages, *v_pages;
  const int64_t *slots;
  const float *cos, *sin;
  int64_t num_tokens, k_stride, v_stride;
  int32_t hk, d, half;  // half: d / 2, the units of a head
  RotaryLayout rl;      // pairing and rotary dimension of the keys; cos/sin rows are rl.rot_half wide
};

constexpr int kAppendThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kAppendThreads) kv_append_vec_kernel(const KvAppendArgs a, int64_t total) {
  const int chunks = a.half / 8;
  for (int64_t u = static_cast<int64_t>(blockIdx.x) * kAppendThreads + threadIdx.x; u < total;
       u += static_cast<int64_t>(gridDim.x) * kAppendThreads) {
    const int c = static_cast<int>(u % chunks);
    const int64_t th = u / chunks;
    const int h = static_cast<int>(th % a.hk);
    const int64_t t = th / a.hk;
    const int64_t slot = __ldg(a.slots + t);
    if (slot < 0) continue;
    const int64_t col = static_cast<int64_t>(h) * a.d + c * 8;
    const T *ks = static_cast<const T *>(a.k) + t * a.k_stride + col;
    const T *vs = static_cast<const T *>(a.v) + t * a.v_stride + col;
    const uint4 k_lo = __ldg(reinterpret_cast<const uint4 *>(ks));
    const uint4 k_hi = __ldg(reinterpret_cast<const uint4 *>(ks + a.half));
    const uint4 v_lo = __ldg(reinterpret_cast<const uint4 *>(vs));
    const uint4 v_hi = __ldg(reinterpret_cast<const uint4 *>(vs + a.half));
    const int64_t dst = (slot * a.hk + h) * a.d + c * 8;
    T *kd = static_cast<T *>(a.k_pages) + dst;
    T *vd = static_cast<T *>(a.v_pages) + dst;
    if (a.cos != nullptr) {
      const float4 *cp = reinterpret_cast<const float4 *>(a.cos + t * a.half + c * 8);
      const float4 *sp = reinterpret_cast<const float4 *>(a.sin + t * a.half + c * 8);
      const float4 c0 = __ldg(cp), c1 = __ldg(cp + 1), s0 = __ldg(sp), s1 = __ldg(sp + 1);
      const float cs[8] = {c0.x, c0.y, c0.z, c0.w, c1.x, c1.y, c1.z, c1.w};
      const float sn[8] = {s0.x, s0.y, s0.z, s0.w, s1.x, s1.y, s1.z, s1.w};
      float x1[8], x2[8], y1[8], y2[8];
      unpack8<T>(k_lo, x1);
      unpack8<T>(k_hi, x2);
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        y1[e] = __fsub_rn(__fmul_rn(x1[e], cs[e]), __fmul_rn(x2[e], sn[e]));
        y2[e] = __fadd_rn(__fmul_rn(x2[e], cs[e]), __fmul_rn(x1[e], sn[e]));
      }
      *reinterpret_cast<uint4 *>(kd) = pack8<T>(y1);
      *reinterpret_cast<uint4 *>(kd + a.half) = pack8<T>(y2);
    } else {
      *reinterpret_cast<uint4 *>(kd) = k_lo;
      *reinterpret_cast<uint4 *>(kd + a.half) = k_hi;
    }
    *reinterpret_cast<uint4 *>(vd) = v_lo;
    *reinterpret_cast<uint4 *>(vd + a.half) = v_hi;
  }
}

template <typename T>
__global__ void __launch_bounds__(kAppendThreads) kv_append_scalar_kernel(const KvAppendArgs a, int64_t total) {
  for (int64_t u = static_cast<int64_t>(blockIdx.x) * kAppendThreads + threadIdx.x; u < total;
       u += static_cast<int64_t>(gridDim.x) * kAppendThreads) {
    const int i = static_cast<int>(u % a.half);
    const int64_t th = u / a.half;
    const int h = static_cast<int>(th % a.hk);
    const int64_t t = th / a.hk;
    const int64_t slot = a.slots[t];
    if (slot < 0) continue;
    int32_t da, db;
    const bool rotary = rotary_unit(a.rl, i, &da, &db);
    const int64_t col = static_cast<int64_t>(h) * a.d;
    const T *ks = static_cast<const T *>(a.k) + t * a.k_stride + col;
    const T *vs = static_cast<const T *>(a.v) + t * a.v_stride + col;
    const T k1 = ks[da], k2 = ks[db], v1 = vs[da], v2 = vs[db];
    const int64_t dst = (slot * a.hk + h) * a.d;
    T *kd = static_cast<T *>(a.k_pages) + dst;
    T *vd = static_cast<T *>(a.v_pages) + dst;
    if (a.cos != nullptr && rotary) {
      const float c = a.cos[t * a.rl.rot_half + i], s = a.sin[t * a.rl.rot_half + i];
      const float x1 = to_float(k1), x2 = to_float(k2);
      kd[da] = from_float<T>(__fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s)));
      kd[db] = from_float<T>(__fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s)));
    } else {
      kd[da] = k1;
      kd[db] = k2;
    }
    vd[da] = v1;
    vd[db] = v2;
  }
}

inline bool aligned16(const void *p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

template <typename T>
hope_status_t launch(const KvAppendArgs &a, cudaStream_t stream) {
  // The vector kernel pairs (i, i + d/2): any layout when nothing rotates, the default one when it does.
  const bool vec = a.half % 8 == 0 && aligned16(a.k) && aligned16(a.v) && aligned16(a.k_pages) &&
                   aligned16(a.v_pages) && a.k_stride % 8 == 0 && a.v_stride % 8 == 0 &&
                   (a.cos == nullptr || (is_full_rotate_half(a.rl, a.d) && aligned16(a.cos) && aligned16(a.sin)));
  const int64_t per_token = static_cast<int64_t>(a.hk) * (vec ? a.half / 8 : a.half);
  const int64_t total = a.num_tokens * per_token;
  int sm = hopei_device_sm_count();
  if (sm <= 0) sm = 108;
  const int64_t blocks = std::max<int64_t>(
      1, std::min<int64_t>((total + kAppendThreads - 1) / kAppendThreads, static_cast<int64_t>(sm) * 16));
  if (vec)
    hope::launch_kernel(&kv_append_vec_kernel<T>, static_cast<unsigned>(blocks), kAppendThreads, 0, stream, a, total);
  else
    hope::launch_kernel(&kv_append_scalar_kernel<T>, static_cast<unsigned>(blocks), kAppendThreads, 0, stream, a,
        total);
  return check_launch("hope_kv_append", "the append kernel launch");
}

}  // namespace serving
}  // namespace hope

extern "C" hope_status_t hopei_kv_append_cuda(const hope_kv_append_params_t *p, void *stream) {
  try {
    using namespace hope::serving;
    KvAppendArgs a;
    a.k = p->k;
    a.v = p->v;
    a.k_pages = p->cache.k_pages;
    a.v_pages = p->cache.v_pages;
    a.slots = p->slot_mapping;
    a.cos = p->cos_k;
    a.sin = p->sin_k;
    a.num_tokens = p->num_tokens;
    a.k_stride = p->k_row_stride;
    a.v_stride = p->v_row_stride;
    a.hk = p->cache.num_kv_heads;
    a.d = p->cache.head_dim;
    a.half = a.d / 2;
    a.rl = hope::make_rotary_layout(a.d, p->rope_pairing, p->rotary_dim);
    cudaStream_t st = static_cast<cudaStream_t>(stream);
    if (p->cache.dtype == HOPE_DTYPE_FLOAT16) return launch<__half>(a, st);
    if (p->cache.dtype == HOPE_DTYPE_BFLOAT16) return launch<__nv_bfloat16>(a, st);
    return hopei_fail(HOPE_ERROR_NOT_SUPPORTED, "hope_kv_append: the CUDA backend takes float16 or bfloat16");
  } catch (const std::exception &e) {
    return hopei_fail(HOPE_ERROR_INTERNAL, "hope_kv_append: %s", e.what());
  } catch (...) {
    return hopei_fail(HOPE_ERROR_INTERNAL, "hope_kv_append: unknown exception");
  }
}
