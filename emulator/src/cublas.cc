// cublas.cc — the cuBLAS calls of the unfused attention path (kernels/attention/unfused.cu), on the host.
//
// Semantics of cuBLAS's documentation ("cublasGemmStridedBatchedEx", column-major storage): for each batch
// b, C_b = alpha op(A_b) op(B_b) + beta C_b with op(X) = X or X^T, A_b = A + b strideA, ... Every product is
// accumulated in double and rounded once to C's type: at least as accurate as CUBLAS_COMPUTE_32F. The
// reduced-precision compute modes are emulated by rounding the inputs first (TF32 keeps 10 mantissa bits,
// FAST_16F / FAST_16BF round to half / bfloat16), so a path that must not use them shows the loss. C is not
// read when beta is 0 (it may hold NaN). Every matrix must lie inside a device allocation, and the handle's
// stream decides whether the call runs now or is recorded into a capturing stream's graph. cublasCreate
// allocates device memory like the real library, so creating a handle inside a stream capture fails.
#include <cmath>
#include <cstring>
#include <functional>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "internal.h"

struct cublasContext {
  cudaStream_t stream = nullptr;
  void *internal = nullptr;  // the allocation every real handle makes
  void *workspace = nullptr;
  size_t workspace_bytes = 0;
  cublasPointerMode_t pointer_mode = CUBLAS_POINTER_MODE_HOST;
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
};

namespace hope {
namespace emu {
bool device_range(const void *p, size_t bytes);
}  // namespace emu
}  // namespace hope

namespace {

using hope::emu::device_range;

double load(const void *p, cudaDataType t, size_t i) {
  switch (t) {
    case CUDA_R_32F: return static_cast<const float *>(p)[i];
    case CUDA_R_64F: return static_cast<const double *>(p)[i];
    case CUDA_R_16F: {
      uint16_t h;
      std::memcpy(&h, static_cast<const uint16_t *>(p) + i, 2);
      const int e = (h >> 10) & 0x1f, m = h & 0x3ff;
      const double s = (h & 0x8000) ? -1.0 : 1.0;
      if (e == 0x1f) return m ? NAN : s * INFINITY;
      return e == 0 ? s * std::ldexp(m, -24) : s * std::ldexp(m | 0x400, e - 25);
    }
    case CUDA_R_16BF: {
      uint16_t b;
      std::memcpy(&b, static_cast<const uint16_t *>(p) + i, 2);
      const uint32_t bits = static_cast<uint32_t>(b) << 16;
      float f;
      std::memcpy(&f, &bits, 4);
      return f;
    }
    default: return NAN;
  }
}

uint16_t to_half(float f) {  // round to nearest even
  const __half h = __float2half_rn(f);
  uint16_t b;
  std::memcpy(&b, &h, 2);
  return b;
}
uint16_t to_bf16(float f) {
  const __nv_bfloat16 h = __float2bfloat16_rn(f);
  uint16_t b;
  std::memcpy(&b, &h, 2);
  return b;
}

void store(void *p, cudaDataType t, size_t i, double v) {
  switch (t) {
    case CUDA_R_32F: static_cast<float *>(p)[i] = static_cast<float>(v); break;
    case CUDA_R_64F: static_cast<double *>(p)[i] = v; break;
    case CUDA_R_16F: static_cast<uint16_t *>(p)[i] = to_half(static_cast<float>(v)); break;
    case CUDA_R_16BF: static_cast<uint16_t *>(p)[i] = to_bf16(static_cast<float>(v)); break;
    default: break;
  }
}

size_t type_bytes(cudaDataType t) {
  switch (t) {
    case CUDA_R_32F: return 4;
    case CUDA_R_64F: return 8;
    case CUDA_R_16F:
    case CUDA_R_16BF: return 2;
    default: return 0;
  }
}

// Rounds an input as a reduced-precision compute mode would (0: keep).
double round_input(double x, int mode) {
  if (mode == 0 || !std::isfinite(x)) return x;
  const float f = static_cast<float>(x);
  if (mode == 1) {  // TF32: 10 explicit mantissa bits, round to nearest even
    uint32_t b;
    std::memcpy(&b, &f, 4);
    b = (b + 0xfffu + ((b >> 13) & 1u)) & ~0x1fffu;
    float r;
    std::memcpy(&r, &b, 4);
    return r;
  }
  if (mode == 2) return __half2float(__float2half_rn(f));
  return __bfloat162float(__float2bfloat16_rn(f));
}

// Elements spanned by a column-major matrix of `rows` x `cols` (as stored) with leading dimension ld.
size_t span(int rows, int cols, int ld) {
  if (rows <= 0 || cols <= 0) return 0;
  return static_cast<size_t>(cols - 1) * static_cast<size_t>(ld) + static_cast<size_t>(rows);
}

}  // namespace

extern "C" {

const char *cublasGetStatusString(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS (emulated)";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED (emulated)";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED (emulated)";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE (emulated)";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED (emulated)";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED (emulated)";
    default: return "CUBLAS_STATUS_INTERNAL_ERROR (emulated)";
  }
}

cublasStatus_t cublasCreate_v2(cublasHandle_t *handle) {
  if (handle == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  auto *h = new cublasContext;
  if (cudaMalloc(&h->internal, 4096) != cudaSuccess) {
    (void)cudaGetLastError();
    delete h;
    return CUBLAS_STATUS_ALLOC_FAILED;
  }
  *handle = h;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy_v2(cublasHandle_t handle) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  (void)cudaFree(handle->internal);
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->stream = stream;
  handle->workspace = nullptr;  // as documented: setting the stream resets the user workspace
  handle->workspace_bytes = 0;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t handle, void *workspace, size_t bytes) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (bytes > 0 && (workspace == nullptr || !device_range(workspace, bytes))) return CUBLAS_STATUS_INVALID_VALUE;
  handle->workspace = workspace;
  handle->workspace_bytes = bytes;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetPointerMode_v2(cublasHandle_t handle, cublasPointerMode_t mode) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (mode != CUBLAS_POINTER_MODE_HOST && mode != CUBLAS_POINTER_MODE_DEVICE) return CUBLAS_STATUS_INVALID_VALUE;
  handle->pointer_mode = mode;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->math = mode;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                          int m, int n, int k, const void *alpha, const void *A, cudaDataType Atype,
                                          int lda, long long strideA, const void *B, cudaDataType Btype, int ldb,
                                          long long strideB, const void *beta, void *C, cudaDataType Ctype, int ldc,
                                          long long strideC, int batchCount, cublasComputeType_t computeType,
                                          cublasGemmAlgo_t algo) {
  (void)algo;
  if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  const bool ta = transa != CUBLAS_OP_N, tb = transb != CUBLAS_OP_N;
  if (m < 0 || n < 0 || k < 0 || batchCount < 0 || alpha == nullptr || beta == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  if (lda < (ta ? k : m) || lda < 1 || ldb < (tb ? n : k) || ldb < 1 || ldc < m || ldc < 1)
    return CUBLAS_STATUS_INVALID_VALUE;
  if (type_bytes(Atype) == 0 || type_bytes(Btype) == 0 || type_bytes(Ctype) == 0) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (m == 0 || n == 0 || batchCount == 0) return CUBLAS_STATUS_SUCCESS;
  int mode = 0;  // reduced-precision inputs of the compute type / math mode
  if (computeType == CUBLAS_COMPUTE_32F_FAST_TF32 ||
      (computeType == CUBLAS_COMPUTE_32F && (handle->math & CUBLAS_TF32_TENSOR_OP_MATH) && Atype == CUDA_R_32F))
    mode = 1;
  else if (computeType == CUBLAS_COMPUTE_32F_FAST_16F)
    mode = 2;
  else if (computeType == CUBLAS_COMPUTE_32F_FAST_16BF)
    mode = 3;
  // Every batch's matrices must lie in device memory.
  const size_t a_span = span(ta ? k : m, ta ? m : k, lda), b_span = span(tb ? n : k, tb ? k : n, ldb);
  const size_t c_span = span(m, n, ldc);
  for (int b = 0; b < batchCount; ++b) {
    const char *a = static_cast<const char *>(A) + static_cast<long long>(b) * strideA * type_bytes(Atype);
    const char *bb = static_cast<const char *>(B) + static_cast<long long>(b) * strideB * type_bytes(Btype);
    const char *c = static_cast<const char *>(C) + static_cast<long long>(b) * strideC * type_bytes(Ctype);
    if ((k > 0 && (!device_range(a, a_span * type_bytes(Atype)) || !device_range(bb, b_span * type_bytes(Btype)))) ||
        !device_range(c, c_span * type_bytes(Ctype))) {
      hope::emu::note_host_error("cublasGemmStridedBatchedEx: batch %d reaches outside device memory", b);
      return CUBLAS_STATUS_INVALID_VALUE;
    }
  }
  const bool device_scalars = handle->pointer_mode == CUBLAS_POINTER_MODE_DEVICE;
  const float host_alpha = device_scalars ? 0.f : *static_cast<const float *>(alpha);
  const float host_beta = device_scalars ? 0.f : *static_cast<const float *>(beta);
  auto op = [=] {
    const double al = device_scalars ? *static_cast<const float *>(alpha) : host_alpha;
    const double be = device_scalars ? *static_cast<const float *>(beta) : host_beta;
    for (int b = 0; b < batchCount; ++b) {
      const char *a = static_cast<const char *>(A) + static_cast<long long>(b) * strideA * type_bytes(Atype);
      const char *bm = static_cast<const char *>(B) + static_cast<long long>(b) * strideB * type_bytes(Btype);
      char *c = static_cast<char *>(C) + static_cast<long long>(b) * strideC * type_bytes(Ctype);
      for (int j = 0; j < n; ++j)
        for (int i = 0; i < m; ++i) {
          double s = 0.0;
          for (int l = 0; l < k; ++l) {
            const size_t ai = ta ? static_cast<size_t>(l) + static_cast<size_t>(i) * lda
                                 : static_cast<size_t>(i) + static_cast<size_t>(l) * lda;
            const size_t bi = tb ? static_cast<size_t>(j) + static_cast<size_t>(l) * ldb
                                 : static_cast<size_t>(l) + static_cast<size_t>(j) * ldb;
            s += round_input(load(a, Atype, ai), mode) * round_input(load(bm, Btype, bi), mode);
          }
          const size_t ci = static_cast<size_t>(i) + static_cast<size_t>(j) * ldc;
          double v = al * s;
          if (be != 0.0) v += be * load(c, Ctype, ci);
          store(c, Ctype, ci, v);
        }
    }
  };
  cudaError_t err;
  if (hope::emu::capture_if_capturing(handle->stream, op, &err)) {
    if (err != cudaSuccess) return CUBLAS_STATUS_EXECUTION_FAILED;
    return CUBLAS_STATUS_SUCCESS;
  }
  op();
  return CUBLAS_STATUS_SUCCESS;
}

}  // extern "C"
