// gpu_util.h — shared helpers of the GPU tests: ASSERT_CUDA / EXPECT_CUDA (a CUDA runtime call must return
// cudaSuccess; the message names the call and the error), DeviceBuffer (a device allocation freed on scope
// exit, poisoned with 0xff and followed by kGuardBytes of 0xff guard so an unwritten element or a write past
// the end shows, with upload/download helpers) and quick_mode() (HOPE_TEST_QUICK). Include only from the GPU
// test files (they link cudart).
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include <gtest/gtest.h>

#define ASSERT_CUDA(expr)                                                                                   \
  do {                                                                                                      \
    const cudaError_t e_ = (expr);                                                                          \
    ASSERT_EQ(e_, cudaSuccess) << #expr << ": " << cudaGetErrorName(e_) << ": " << cudaGetErrorString(e_); \
  } while (0)
#define EXPECT_CUDA(expr)                                                                                   \
  do {                                                                                                      \
    const cudaError_t e_ = (expr);                                                                          \
    EXPECT_EQ(e_, cudaSuccess) << #expr << ": " << cudaGetErrorName(e_) << ": " << cudaGetErrorString(e_); \
  } while (0)

namespace hope_test {

constexpr size_t kGuardBytes = 256;

// HOPE_TEST_QUICK set to anything but "" or "0" (compute-sanitizer runs): tests drop their longest cases.
inline bool quick_mode() {
  const char *v = std::getenv("HOPE_TEST_QUICK");
  return v != nullptr && v[0] != '\0' && v[0] != '0';
}

// A device allocation of bytes() bytes followed by kGuardBytes of guard, all set to 0xff (NaN for every
// dtype) when allocated. Even an empty buffer owns a (guard-only) allocation, so get() is non-null after a
// successful alloc: the API wants non-NULL pointers for tensors whose sequences are all empty. A failed
// cudaMalloc in the sizing constructor records a test failure and leaves get() null (check ok()); a failed
// cudaFree at scope exit is a test failure.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) {
    const cudaError_t e = alloc(bytes);
    if (e != cudaSuccess) ADD_FAILURE() << "cudaMalloc(" << bytes << "): " << cudaGetErrorString(e);
  }
  DeviceBuffer(const DeviceBuffer &) = delete;
  DeviceBuffer &operator=(const DeviceBuffer &) = delete;
  ~DeviceBuffer() {
    if (ptr_ != nullptr) {
      const cudaError_t e = cudaFree(ptr_);
      if (e != cudaSuccess) ADD_FAILURE() << "cudaFree: " << cudaGetErrorString(e);
    }
  }

  // Allocates (once) bytes plus the guard and poisons all of it.
  cudaError_t alloc(size_t bytes) {
    if (ptr_ != nullptr) return cudaErrorInvalidValue;
    bytes_ = bytes;
    cudaError_t e = cudaMalloc(&ptr_, bytes + kGuardBytes);
    if (e != cudaSuccess) {
      ptr_ = nullptr;
      return e;
    }
    e = cudaMemset(ptr_, 0xff, bytes + kGuardBytes);
    if (e != cudaSuccess) {
      (void)cudaFree(ptr_);
      ptr_ = nullptr;
    }
    return e;
  }
  // Like alloc, but an empty buffer stays unallocated (get() == nullptr), for optional outputs.
  cudaError_t alloc_or_null(size_t bytes) {
    if (bytes == 0) return ptr_ != nullptr ? cudaErrorInvalidValue : cudaSuccess;
    return alloc(bytes);
  }
  // alloc(bytes) and copy bytes from the host.
  cudaError_t alloc_upload(const void *src, size_t bytes) {
    const cudaError_t e = alloc(bytes);
    if (e != cudaSuccess || bytes == 0) return e;
    return upload(src, bytes);
  }
  // Host -> device / device -> host copies of the first n bytes.
  cudaError_t upload(const void *src, size_t n) {
    if (n == 0) return cudaSuccess;
    return cudaMemcpy(ptr_, src, n, cudaMemcpyHostToDevice);
  }
  cudaError_t download(void *dst, size_t n) const {
    if (n == 0) return cudaSuccess;
    return cudaMemcpy(dst, ptr_, n, cudaMemcpyDeviceToHost);
  }
  // Sets the first bytes() bytes to 0xff again (the guard is never written by a correct kernel).
  cudaError_t poison() { return ptr_ == nullptr ? cudaSuccess : cudaMemset(ptr_, 0xff, bytes_); }
  // true when the kGuardBytes after the buffer are still all 0xff.
  bool guard_intact() const {
    if (ptr_ == nullptr) return true;
    std::vector<uint8_t> g(kGuardBytes);
    if (cudaMemcpy(g.data(), static_cast<char *>(ptr_) + bytes_, kGuardBytes, cudaMemcpyDeviceToHost) != cudaSuccess)
      return false;
    return std::all_of(g.begin(), g.end(), [](uint8_t b) { return b == 0xff; });
  }

  void *get() const { return ptr_; }
  template <typename T>
  T *as() const { return static_cast<T *>(ptr_); }
  size_t bytes() const { return bytes_; }
  bool ok() const { return ptr_ != nullptr; }

 private:
  void *ptr_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace hope_test
