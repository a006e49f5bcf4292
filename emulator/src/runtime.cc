// runtime.cc — the CUDA runtime API subset that hope_attn, its tests, the demo and the examples call,
// implemented on the host for the emulated GPU. The declarations are the toolkit's own (cuda_runtime_api.h),
// so the library's host code compiles unchanged and links against this instead of cudart.
//
// The device is one H100-like GPU (compute capability 9.0, 132 SMs, 227 KB opt-in shared memory; or 8.0
// A100-like with HOPE_EMU_CC=80); CUDA_VISIBLE_DEVICES that does not list device 0 hides it. Device memory
// is host memory from posix_memalign (256-byte aligned, exact size, so AddressSanitizer builds catch every
// out-of-bounds access); copies check that device pointers lie inside an allocation. Work runs synchronously
// at the call (streams are trivially ordered); launches on a capturing stream are recorded into a graph and
// run by cudaGraphLaunch. Calls that a real capture forbids (synchronous copies, allocation, device-wide
// synchronisation, the legacy stream while a blocking stream captures) fail and invalidate the capture, so
// the library's "capturable" promise is checked.
#include <sys/sysinfo.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>
#include <vector>

#include <cuda_runtime_api.h>

#include "hope_emu/control.h"
#include "internal.h"

// The opaque handle types of the runtime API, defined here.
struct CUstream_st {
  unsigned flags = 0;
  bool capturing = false;
  bool invalidated = false;
  cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
  std::thread::id capture_thread;
  struct CUgraph_st *graph = nullptr;
};
struct CUevent_st {
  bool recorded = false;
  double ms = 0.0;
};
struct CUgraph_st {
  std::vector<std::function<void()>> ops;
};
struct CUgraphExec_st {
  std::vector<std::function<void()>> ops;
};

namespace hope {
namespace emu {

namespace {

std::mutex g_mu;  // guards everything below
struct Alloc {
  size_t bytes;
  bool pinned_host;
};
std::map<uintptr_t, Alloc> g_allocs;
size_t g_allocated = 0;
std::set<cudaStream_t> g_streams;
std::set<cudaEvent_t> g_events;
std::unordered_map<const void *, size_t> g_max_dyn_smem;
int g_captures_global = 0;  // streams capturing in global mode
int g_captures_blocking = 0;  // capturing streams that are blocking (synchronise with the legacy stream)
cudaError_t g_async_error = cudaSuccess;
thread_local cudaError_t t_last_error = cudaSuccess;
thread_local int t_captures_thread_local = 0;

double now_ms() {
  using namespace std::chrono;
  return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

// The allocation containing [p, p + bytes), or nullptr.
const Alloc *find_alloc(const void *p, size_t bytes, uintptr_t *base = nullptr) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  auto it = g_allocs.upper_bound(a);
  if (it == g_allocs.begin()) return nullptr;
  --it;
  if (a < it->first || a + bytes > it->first + it->second.bytes || (bytes == 0 && a >= it->first + it->second.bytes))
    return nullptr;
  if (base) *base = it->first;
  return &it->second;
}
bool is_device(const void *p, size_t bytes) {
  const Alloc *a = find_alloc(p, bytes);
  return a != nullptr && !a->pinned_host;
}

size_t memory_capacity() {
  struct sysinfo si;
  if (sysinfo(&si) != 0) return size_t{16} << 30;
  return static_cast<size_t>(si.totalram) * si.mem_unit / 2;  // half the host's memory plays the device's
}

cudaError_t fail(cudaError_t e) {
  t_last_error = e;
  return e;
}

// A call that a stream capture forbids: fails (and invalidates the captures) while one is active.
bool capture_forbids(const char *what) {
  if (g_captures_global == 0 && t_captures_thread_local == 0) return false;
  std::fprintf(stderr, "hope_emu: %s during a stream capture (not allowed in a captured region)\n", what);
  return true;
}
void invalidate_captures() {
  for (cudaStream_t s : g_streams)
    if (s->capturing) s->invalidated = true;
}

}  // namespace

void set_last_error(cudaError_t e) { t_last_error = e; }
bool device_range(const void *p, size_t bytes) {
  std::lock_guard<std::mutex> lock(g_mu);
  return is_device(p, bytes);
}
void set_async_error(cudaError_t e) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_async_error == cudaSuccess) g_async_error = e;
}

const DeviceLimits &device_limits() {
  static const DeviceLimits h100{132, 48 * 1024, 227 * 1024, 228 * 1024, 1024};
  static const DeviceLimits a100{108, 48 * 1024, 163 * 1024, 164 * 1024, 1024};
  return config().cc_major == 9 ? h100 : a100;
}

size_t max_dynamic_smem(const void *kernel) {
  std::lock_guard<std::mutex> lock(g_mu);
  auto it = g_max_dyn_smem.find(kernel);
  return it == g_max_dyn_smem.end() ? device_limits().smem_per_block : it->second;
}

bool capture_if_capturing(cudaStream_t stream, std::function<void()> op, cudaError_t *err) {
  std::lock_guard<std::mutex> lock(g_mu);
  *err = cudaSuccess;
  if (stream != nullptr && stream != cudaStreamLegacy && stream != cudaStreamPerThread) {
    if (g_streams.count(stream) == 0) {
      *err = cudaErrorInvalidResourceHandle;
      return true;
    }
    if (stream->capturing) {
      stream->graph->ops.push_back(std::move(op));
      return true;
    }
    return false;
  }
  // The legacy stream synchronises with every blocking stream: using it while one captures is illegal.
  if (stream != cudaStreamPerThread && g_captures_blocking > 0) {
    std::fprintf(stderr, "hope_emu: work on the legacy default stream while a blocking stream captures\n");
    invalidate_captures();
    *err = cudaErrorStreamCaptureImplicit;
    return true;
  }
  return false;
}

// ---- launches (called from exec.h's template) ----------------------------------------------------------------

void launch_body(KernelBody body, dim3 grid, dim3 block, size_t smem_bytes, cudaStream_t stream, const void *kernel) {
  const Config &cfg = config();
  if (cfg.no_device) {
    set_last_error(cudaErrorNoDevice);
    return;
  }
  const uint64_t threads = static_cast<uint64_t>(block.x) * block.y * block.z;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535 ||
      threads == 0 || threads > static_cast<uint64_t>(device_limits().max_threads) || block.x > 1024 ||
      block.y > 1024 || block.z > 64) {
    set_last_error(cudaErrorInvalidConfiguration);
    return;
  }
  if (smem_bytes > max_dynamic_smem(kernel)) {
    // More than 48 KB of dynamic shared memory needs cudaFuncSetAttribute(MaxDynamicSharedMemorySize) first.
    set_last_error(cudaErrorInvalidValue);
    return;
  }
  auto launch = std::make_shared<Launch>();
  launch->grid = grid;
  launch->block = block;
  launch->smem = smem_bytes;
  launch->body = std::move(body);
  launch->index = hopeemu_next_launch_index();
  launch->seed = cfg.seed * 0x9E3779B97F4A7C15ull + launch->index;
  auto run = [launch] {
    Launch l = *launch;  // a graph may replay the same launch
    l.failed = false;
    l.errors = 0;
    execute_launch(l);
    if (l.failed) {
      set_last_error(cudaErrorLaunchFailure);
      set_async_error(cudaErrorLaunchFailure);
    }
  };
  cudaError_t err;
  if (capture_if_capturing(stream, run, &err)) {
    if (err != cudaSuccess) set_last_error(err);
    return;
  }
  run();
}

}  // namespace emu
}  // namespace hope

using namespace hope::emu;

extern "C" {

// ---- errors ------------------------------------------------------------------------------------------------------

#define HOPE_EMU_ERRORS(X)                                                                 \
  X(cudaSuccess, "no error")                                                               \
  X(cudaErrorInvalidValue, "invalid argument")                                             \
  X(cudaErrorMemoryAllocation, "out of memory")                                            \
  X(cudaErrorInitializationError, "initialization error")                                  \
  X(cudaErrorInvalidConfiguration, "invalid configuration argument")                       \
  X(cudaErrorInvalidDevice, "invalid device ordinal")                                      \
  X(cudaErrorInvalidDevicePointer, "invalid device pointer")                               \
  X(cudaErrorInvalidDeviceFunction, "invalid device function")                             \
  X(cudaErrorInvalidMemcpyDirection, "invalid copy direction for memcpy")                  \
  X(cudaErrorInvalidResourceHandle, "invalid resource handle")                             \
  X(cudaErrorNotReady, "device not ready")                                                 \
  X(cudaErrorNoDevice, "no CUDA-capable device is detected")                               \
  X(cudaErrorLaunchFailure, "unspecified launch failure")                                  \
  X(cudaErrorIllegalAddress, "an illegal memory access was encountered")                   \
  X(cudaErrorNotSupported, "operation not supported")                                      \
  X(cudaErrorStreamCaptureUnsupported, "operation not permitted when stream is capturing") \
  X(cudaErrorStreamCaptureInvalidated, "operation failed due to a previous error during capture") \
  X(cudaErrorStreamCaptureImplicit, "operation would make the legacy stream depend on a capturing blocking stream") \
  X(cudaErrorStreamCaptureWrongThread, "attempt to terminate a thread-local capture sequence from another thread") \
  X(cudaErrorIllegalState, "the operation is not permitted in the current state")

const char *cudaGetErrorString(cudaError_t error) {
#define X(e, s) \
  if (error == e) return s " (emulated GPU)";
  HOPE_EMU_ERRORS(X)
#undef X
  return "unrecognized error code (emulated GPU)";
}
const char *cudaGetErrorName(cudaError_t error) {
#define X(e, s) \
  if (error == e) return #e;
  HOPE_EMU_ERRORS(X)
#undef X
  return "cudaErrorUnknown";
}
cudaError_t cudaGetLastError(void) {
  const cudaError_t e = t_last_error;
  t_last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError(void) { return t_last_error; }

// ---- device -----------------------------------------------------------------------------------------------------

cudaError_t cudaGetDeviceCount(int *count) {
  if (count == nullptr) return fail(cudaErrorInvalidValue);
  if (config().no_device) {
    *count = 0;
    return fail(cudaErrorNoDevice);
  }
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int *device) {
  if (device == nullptr) return fail(cudaErrorInvalidValue);
  if (config().no_device) return fail(cudaErrorNoDevice);
  *device = 0;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  if (config().no_device) return fail(cudaErrorNoDevice);
  return device == 0 ? cudaSuccess : fail(cudaErrorInvalidDevice);
}
cudaError_t cudaDriverGetVersion(int *v) {
  if (v == nullptr) return fail(cudaErrorInvalidValue);
  *v = CUDART_VERSION;
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int *v) {
  if (v == nullptr) return fail(cudaErrorInvalidValue);
  *v = CUDART_VERSION;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *prop, int device) {
  if (prop == nullptr) return fail(cudaErrorInvalidValue);
  if (config().no_device) return fail(cudaErrorNoDevice);
  if (device != 0) return fail(cudaErrorInvalidDevice);
  const DeviceLimits &lim = device_limits();
  std::memset(prop, 0, sizeof(*prop));
  std::snprintf(prop->name, sizeof prop->name, "hope_attn emulated GPU (sm_%d%d)", config().cc_major,
                config().cc_minor);
  prop->totalGlobalMem = memory_capacity();
  prop->sharedMemPerBlock = lim.smem_per_block;
  prop->sharedMemPerBlockOptin = lim.smem_optin;
  prop->sharedMemPerMultiprocessor = lim.smem_per_sm;
  prop->regsPerBlock = 65536;
  prop->regsPerMultiprocessor = 65536;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = lim.max_threads;
  prop->maxThreadsDim[0] = 1024;
  prop->maxThreadsDim[1] = 1024;
  prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 2147483647;
  prop->maxGridSize[1] = 65535;
  prop->maxGridSize[2] = 65535;
  prop->totalConstMem = 65536;
  prop->major = config().cc_major;
  prop->minor = config().cc_minor;
  prop->multiProcessorCount = lim.sm_count;
  prop->maxThreadsPerMultiProcessor = 2048;
  prop->maxBlocksPerMultiProcessor = 32;
  prop->l2CacheSize = config().cc_major == 9 ? 50 * 1024 * 1024 : 40 * 1024 * 1024;
  prop->memoryBusWidth = 5120;
  prop->concurrentKernels = 1;
  prop->unifiedAddressing = 1;
  prop->managedMemory = 1;
  prop->canMapHostMemory = 1;
  prop->asyncEngineCount = 2;
  prop->cooperativeLaunch = 1;
  prop->clusterLaunch = config().cc_major >= 9;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *value, enum cudaDeviceAttr attr, int device) {
  if (value == nullptr) return fail(cudaErrorInvalidValue);
  if (config().no_device) return fail(cudaErrorNoDevice);
  if (device != 0) return fail(cudaErrorInvalidDevice);
  const DeviceLimits &lim = device_limits();
  switch (attr) {
    case cudaDevAttrMultiProcessorCount: *value = lim.sm_count; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = static_cast<int>(lim.smem_optin); break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = static_cast<int>(lim.smem_per_block); break;
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor: *value = static_cast<int>(lim.smem_per_sm); break;
    case cudaDevAttrComputeCapabilityMajor: *value = config().cc_major; break;
    case cudaDevAttrComputeCapabilityMinor: *value = config().cc_minor; break;
    case cudaDevAttrMaxThreadsPerBlock: *value = lim.max_threads; break;
    case cudaDevAttrWarpSize: *value = 32; break;
    case cudaDevAttrMaxGridDimX: *value = 2147483647; break;
    case cudaDevAttrMaxGridDimY: *value = 65535; break;
    case cudaDevAttrMaxGridDimZ: *value = 65535; break;
    case cudaDevAttrMaxThreadsPerMultiProcessor: *value = 2048; break;
    case cudaDevAttrL2CacheSize: *value = config().cc_major == 9 ? 50 * 1024 * 1024 : 40 * 1024 * 1024; break;
    default: return fail(cudaErrorInvalidValue);
  }
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (capture_forbids("cudaDeviceSynchronize")) {
    invalidate_captures();
    return fail(cudaErrorStreamCaptureUnsupported);
  }
  const cudaError_t e = g_async_error;
  g_async_error = cudaSuccess;
  return e == cudaSuccess ? cudaSuccess : fail(e);
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total) {
  if (free_bytes == nullptr || total == nullptr) return fail(cudaErrorInvalidValue);
  std::lock_guard<std::mutex> lock(g_mu);
  *total = memory_capacity();
  *free_bytes = *total > g_allocated ? *total - g_allocated : 0;
  return cudaSuccess;
}

// ---- memory -------------------------------------------------------------------------------------------------------

static cudaError_t emu_alloc(void **p, size_t bytes, bool pinned) {
  if (p == nullptr) return fail(cudaErrorInvalidValue);
  std::lock_guard<std::mutex> lock(g_mu);
  if (config().no_device) return fail(cudaErrorNoDevice);
  if (capture_forbids(pinned ? "cudaMallocHost" : "cudaMalloc")) {
    invalidate_captures();
    return fail(cudaErrorStreamCaptureUnsupported);
  }
  *p = nullptr;
  if (bytes == 0) return cudaSuccess;
  if (bytes > memory_capacity() || g_allocated + bytes > memory_capacity()) return fail(cudaErrorMemoryAllocation);
  void *m = nullptr;
  if (posix_memalign(&m, 256, bytes) != 0 || m == nullptr) return fail(cudaErrorMemoryAllocation);
  g_allocs[reinterpret_cast<uintptr_t>(m)] = Alloc{bytes, pinned};
  g_allocated += bytes;
  *p = m;
  return cudaSuccess;
}
static cudaError_t emu_free(void *p, bool pinned) {
  if (p == nullptr) return cudaSuccess;
  std::lock_guard<std::mutex> lock(g_mu);
  auto it = g_allocs.find(reinterpret_cast<uintptr_t>(p));
  if (it == g_allocs.end() || it->second.pinned_host != pinned) return fail(cudaErrorInvalidValue);
  g_allocated -= it->second.bytes;
  g_allocs.erase(it);
  std::free(p);
  return cudaSuccess;
}

cudaError_t cudaMalloc(void **devPtr, size_t size) { return emu_alloc(devPtr, size, false); }
cudaError_t cudaFree(void *devPtr) { return emu_free(devPtr, false); }
cudaError_t cudaMallocHost(void **ptr, size_t size) { return emu_alloc(ptr, size, true); }
cudaError_t cudaFreeHost(void *ptr) { return emu_free(ptr, true); }

// Checks a copy's pointers against its direction (a device side must lie inside one allocation).
static cudaError_t check_copy(void *dst, const void *src, size_t count, cudaMemcpyKind *kind) {
  const bool dd = is_device(dst, count), sd = is_device(src, count);
  switch (*kind) {
    case cudaMemcpyHostToHost: return (!dd && !sd) ? cudaSuccess : cudaErrorInvalidValue;
    case cudaMemcpyHostToDevice: return (dd && !sd) ? cudaSuccess : cudaErrorInvalidValue;
    case cudaMemcpyDeviceToHost: return (!dd && sd) ? cudaSuccess : cudaErrorInvalidValue;
    case cudaMemcpyDeviceToDevice: return (dd && sd) ? cudaSuccess : cudaErrorInvalidValue;
    case cudaMemcpyDefault: return cudaSuccess;
    default: return cudaErrorInvalidMemcpyDirection;
  }
}

static cudaError_t emu_memcpy(void *dst, const void *src, size_t count, cudaMemcpyKind kind, cudaStream_t stream,
                              bool async) {
  if (count == 0) return cudaSuccess;
  if (dst == nullptr || src == nullptr) return fail(cudaErrorInvalidValue);
  {
    std::lock_guard<std::mutex> lock(g_mu);
    if (!async && capture_forbids("cudaMemcpy")) {
      invalidate_captures();
      return fail(cudaErrorStreamCaptureUnsupported);
    }
    const cudaError_t e = check_copy(dst, src, count, &kind);
    if (e != cudaSuccess) return fail(e);
  }
  auto op = [dst, src, count] { std::memmove(dst, src, count); };
  cudaError_t err;
  if (async && capture_if_capturing(stream, op, &err)) return err == cudaSuccess ? cudaSuccess : fail(err);
  op();
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind) {
  return emu_memcpy(dst, src, count, kind, nullptr, false);
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind, cudaStream_t stream) {
  return emu_memcpy(dst, src, count, kind, stream, true);
}

static cudaError_t emu_memset(void *dst, int value, size_t count, cudaStream_t stream, bool async) {
  if (count == 0) return cudaSuccess;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    if (!async && capture_forbids("cudaMemset")) {
      invalidate_captures();
      return fail(cudaErrorStreamCaptureUnsupported);
    }
    if (!is_device(dst, count)) return fail(cudaErrorInvalidValue);
  }
  auto op = [dst, value, count] { std::memset(dst, value, count); };
  cudaError_t err;
  if (async && capture_if_capturing(stream, op, &err)) return err == cudaSuccess ? cudaSuccess : fail(err);
  op();
  return cudaSuccess;
}
cudaError_t cudaMemset(void *devPtr, int value, size_t count) { return emu_memset(devPtr, value, count, nullptr, false); }
cudaError_t cudaMemsetAsync(void *devPtr, int value, size_t count, cudaStream_t stream) {
  return emu_memset(devPtr, value, count, stream, true);
}

cudaError_t cudaPointerGetAttributes(struct cudaPointerAttributes *attributes, const void *ptr) {
  if (attributes == nullptr) return fail(cudaErrorInvalidValue);
  std::lock_guard<std::mutex> lock(g_mu);
  std::memset(attributes, 0, sizeof(*attributes));
  const Alloc *a = find_alloc(ptr, 1);
  if (a == nullptr) {
    attributes->type = cudaMemoryTypeUnregistered;
    attributes->device = -2;
    return cudaSuccess;
  }
  attributes->type = a->pinned_host ? cudaMemoryTypeHost : cudaMemoryTypeDevice;
  attributes->device = 0;
  attributes->devicePointer = const_cast<void *>(ptr);
  attributes->hostPointer = a->pinned_host ? const_cast<void *>(ptr) : nullptr;
  return cudaSuccess;
}

// ---- kernels' attributes ----------------------------------------------------------------------------------------

// ---- driver entry points: cuTensorMapEncodeTiled only (the emulated one, in ptx_sm90.cc) --------------------------
static cudaError_t driver_entry_point(const char *symbol, void **fn, unsigned int version,
                                      enum cudaDriverEntryPointQueryResult *status) {
  if (symbol == nullptr || fn == nullptr) return fail(cudaErrorInvalidValue);
  *fn = nullptr;
  cudaDriverEntryPointQueryResult r = cudaDriverEntryPointSymbolNotFound;
  if (std::strcmp(symbol, "cuTensorMapEncodeTiled") == 0) {
    if (version < 12000) {
      r = cudaDriverEntryPointVersionNotSufficent;
    } else {
      *fn = tensor_map_encode_tiled_entry();
      r = cudaDriverEntryPointSuccess;
    }
  }
  if (status != nullptr) *status = r;
  return cudaSuccess;
}
cudaError_t cudaGetDriverEntryPoint(const char *symbol, void **funcPtr, unsigned long long flags,
                                    enum cudaDriverEntryPointQueryResult *driverStatus) {
  (void)flags;
  return driver_entry_point(symbol, funcPtr, CUDART_VERSION, driverStatus);
}
cudaError_t cudaGetDriverEntryPointByVersion(const char *symbol, void **funcPtr, unsigned int cudaVersion,
                                             unsigned long long flags,
                                             enum cudaDriverEntryPointQueryResult *driverStatus) {
  (void)flags;
  return driver_entry_point(symbol, funcPtr, cudaVersion, driverStatus);
}

cudaError_t cudaFuncSetAttribute(const void *func, enum cudaFuncAttribute attr, int value) {
  if (func == nullptr) return fail(cudaErrorInvalidDeviceFunction);
  if (config().no_device) return fail(cudaErrorNoDevice);
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (value < 0 || static_cast<size_t>(value) > device_limits().smem_optin) return fail(cudaErrorInvalidValue);
    std::lock_guard<std::mutex> lock(g_mu);
    g_max_dyn_smem[func] = static_cast<size_t>(value);
    return cudaSuccess;
  }
  if (attr == cudaFuncAttributePreferredSharedMemoryCarveout) return cudaSuccess;
  return fail(cudaErrorInvalidValue);
}

// ---- streams ---------------------------------------------------------------------------------------------------------

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *pStream, unsigned int flags) {
  if (pStream == nullptr) return fail(cudaErrorInvalidValue);
  if (config().no_device) return fail(cudaErrorNoDevice);
  auto *s = new CUstream_st;
  s->flags = flags;
  std::lock_guard<std::mutex> lock(g_mu);
  g_streams.insert(s);
  *pStream = s;
  return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t *pStream) { return cudaStreamCreateWithFlags(pStream, cudaStreamDefault); }
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_streams.erase(stream) == 0) return fail(cudaErrorInvalidResourceHandle);
  if (stream->capturing) {
    delete stream->graph;
    if (stream->mode == cudaStreamCaptureModeGlobal) g_captures_global--;
    if (!(stream->flags & cudaStreamNonBlocking)) g_captures_blocking--;
  }
  delete stream;
  return cudaSuccess;
}
static bool valid_stream(cudaStream_t s) {
  return s == nullptr || s == cudaStreamLegacy || s == cudaStreamPerThread || g_streams.count(s) != 0;
}
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (!valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
  if ((stream != nullptr && g_streams.count(stream) && stream->capturing) || capture_forbids("cudaStreamSynchronize")) {
    invalidate_captures();
    return fail(cudaErrorStreamCaptureUnsupported);
  }
  const cudaError_t e = g_async_error;
  g_async_error = cudaSuccess;
  return e == cudaSuccess ? cudaSuccess : fail(e);
}
cudaError_t cudaStreamQuery(cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(g_mu);
  return valid_stream(stream) ? cudaSuccess : fail(cudaErrorInvalidResourceHandle);
}

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, enum cudaStreamCaptureMode mode) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (stream == nullptr || stream == cudaStreamLegacy || g_streams.count(stream) == 0)
    return fail(stream == nullptr || stream == cudaStreamLegacy ? cudaErrorStreamCaptureUnsupported
                                                                : cudaErrorInvalidResourceHandle);
  if (stream->capturing) return fail(cudaErrorIllegalState);
  stream->capturing = true;
  stream->invalidated = false;
  stream->mode = mode;
  stream->capture_thread = std::this_thread::get_id();
  stream->graph = new CUgraph_st;
  if (mode == cudaStreamCaptureModeGlobal) g_captures_global++;
  if (mode == cudaStreamCaptureModeThreadLocal) t_captures_thread_local++;
  if (!(stream->flags & cudaStreamNonBlocking)) g_captures_blocking++;
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t *pGraph) {
  if (pGraph == nullptr) return fail(cudaErrorInvalidValue);
  std::lock_guard<std::mutex> lock(g_mu);
  if (stream == nullptr || g_streams.count(stream) == 0 || !stream->capturing) return fail(cudaErrorIllegalState);
  if (stream->mode == cudaStreamCaptureModeThreadLocal && stream->capture_thread != std::this_thread::get_id())
    return fail(cudaErrorStreamCaptureWrongThread);
  stream->capturing = false;
  if (stream->mode == cudaStreamCaptureModeGlobal) g_captures_global--;
  if (stream->mode == cudaStreamCaptureModeThreadLocal) t_captures_thread_local--;
  if (!(stream->flags & cudaStreamNonBlocking)) g_captures_blocking--;
  if (stream->invalidated) {
    delete stream->graph;
    stream->graph = nullptr;
    *pGraph = nullptr;
    return fail(cudaErrorStreamCaptureInvalidated);
  }
  *pGraph = stream->graph;
  stream->graph = nullptr;
  return cudaSuccess;
}
cudaError_t cudaStreamIsCapturing(cudaStream_t stream, enum cudaStreamCaptureStatus *status) {
  if (status == nullptr) return fail(cudaErrorInvalidValue);
  std::lock_guard<std::mutex> lock(g_mu);
  if (!valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
  const bool cap = stream != nullptr && stream != cudaStreamLegacy && stream != cudaStreamPerThread && stream->capturing;
  *status = !cap ? cudaStreamCaptureStatusNone
                 : (stream->invalidated ? cudaStreamCaptureStatusInvalidated : cudaStreamCaptureStatusActive);
  return cudaSuccess;
}

// ---- graphs -------------------------------------------------------------------------------------------------------------

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *pGraphExec, cudaGraph_t graph, unsigned long long flags) {
  (void)flags;
  if (pGraphExec == nullptr || graph == nullptr) return fail(cudaErrorInvalidValue);
  auto *e = new CUgraphExec_st;
  e->ops = graph->ops;
  *pGraphExec = e;
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t graphExec, cudaStream_t stream) {
  if (graphExec == nullptr) return fail(cudaErrorInvalidValue);
  {
    std::lock_guard<std::mutex> lock(g_mu);
    if (!valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
  }
  for (auto &op : graphExec->ops) op();
  return cudaSuccess;
}
cudaError_t cudaGraphGetNodes(cudaGraph_t graph, cudaGraphNode_t *nodes, size_t *numNodes) {
  if (graph == nullptr || numNodes == nullptr) return fail(cudaErrorInvalidValue);
  if (nodes != nullptr) {
    const size_t n = std::min(*numNodes, graph->ops.size());
    for (size_t i = 0; i < n; ++i) nodes[i] = reinterpret_cast<cudaGraphNode_t>(&graph->ops[i]);
  }
  *numNodes = graph->ops.size();
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t graphExec) {
  delete graphExec;
  return cudaSuccess;
}

// ---- events -------------------------------------------------------------------------------------------------------------

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int flags) {
  (void)flags;
  if (event == nullptr) return fail(cudaErrorInvalidValue);
  if (config().no_device) return fail(cudaErrorNoDevice);
  auto *e = new CUevent_st;
  std::lock_guard<std::mutex> lock(g_mu);
  g_events.insert(e);
  *event = e;
  return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t *event) { return cudaEventCreateWithFlags(event, cudaEventDefault); }
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_events.erase(event) == 0) return fail(cudaErrorInvalidResourceHandle);
  delete event;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  {
    std::lock_guard<std::mutex> lock(g_mu);
    if (g_events.count(event) == 0) return fail(cudaErrorInvalidResourceHandle);
  }
  auto op = [event] {
    event->recorded = true;
    event->ms = now_ms();
  };
  cudaError_t err;
  if (capture_if_capturing(stream, op, &err)) return err == cudaSuccess ? cudaSuccess : fail(err);
  op();
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_events.count(event) == 0) return fail(cudaErrorInvalidResourceHandle);
  const cudaError_t e = g_async_error;
  g_async_error = cudaSuccess;
  return e == cudaSuccess ? cudaSuccess : fail(e);
}
cudaError_t cudaEventQuery(cudaEvent_t event) {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_events.count(event) ? cudaSuccess : fail(cudaErrorInvalidResourceHandle);
}
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end) {
  if (ms == nullptr) return fail(cudaErrorInvalidValue);
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_events.count(start) == 0 || g_events.count(end) == 0) return fail(cudaErrorInvalidResourceHandle);
  if (!start->recorded || !end->recorded) return fail(cudaErrorInvalidResourceHandle);
  *ms = static_cast<float>(end->ms - start->ms);
  return cudaSuccess;
}

}  // extern "C"
