// softmax_rows.cuh — pieces of the online softmax that both fused-attention families share. In both, a thread
// holds two rows of the tile (g and g + 8 of its warp's 16) and the four threads of a quad hold one row's
// columns between them.
#pragma once

#include <cmath>

namespace hope {

// The end of the online softmax for this thread's two rows: the quad's partial row sums added up, then
// inv = 1 / sum and lse = max * softmax_scale + log(sum) (natural log; row_max is the raw score maximum). A row
// that saw no visible key (sum 0) gets inv = 0 (so o = 0) and lse = -inf, never NaN.
__device__ __forceinline__ void finalize_rows(const float (&row_max)[2], const float (&row_sum)[2],
                                              float softmax_scale, float (&inv)[2], float (&lse)[2]) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float s = row_sum[r];
    s += __shfl_xor_sync(0xffffffffu, s, 1);
    s += __shfl_xor_sync(0xffffffffu, s, 2);
    const bool any = s > 0.f;
    inv[r] = any ? 1.f / s : 0.f;
    lse[r] = any ? row_max[r] * softmax_scale + logf(s) : -INFINITY;
  }
}

}  // namespace hope
