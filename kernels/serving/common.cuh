// common.cuh — the serving kernels' launch-error check, and the shared device helpers they use from
// kernels/common/: dtype conversion (to_float / from_float / round_to), paired 8-element vector <-> float
// conversion (unpack8 / pack8, Pair) and cp.async with zero fill.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "../../csrc/internal.h"
#include "common/cp_async.cuh"
#include "common/dtype.cuh"
#include "common/launch.cuh"
#include "common/vec.cuh"

namespace hope {
namespace serving {

// Checks the launch just made; returns a status with a message naming `fn` and `what`.
inline hope_status_t check_launch(const char *fn, const char *what) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return hopei_cuda_fail(static_cast<int>(e), fn, what);
  return HOPE_SUCCESS;
}

}  // namespace serving
}  // namespace hope
