// cpu_isa_util.h — the CPU backend's instruction-set paths (README: HOPE_CPU_ISA) for the tests: which of them
// this machine can run, decided here from CPUID independently of the library's own detection, and a scoped
// environment variable to force one. The float64-reference tests run every path in this list.
#pragma once

#include <cstdlib>
#include <string>
#include <vector>

namespace hope_test {

// HOPE_CPU_ISA values this CPU can run, the plain C path first.
inline std::vector<std::string> cpu_isa_paths() {
  std::vector<std::string> paths = {"portable"};
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) paths.push_back("avx2");
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
    paths.push_back("avx512");
    if (__builtin_cpu_supports("avx512bf16")) paths.push_back("avx512bf16");
  }
#endif
  return paths;
}

// Sets an environment variable for the lifetime of the object (nullptr unsets it), then restores it.
class ScopedEnv {
 public:
  ScopedEnv(const char *name, const char *value) : name_(name) {
    const char *old = std::getenv(name);
    had_ = old != nullptr;
    if (had_) old_ = old;
    if (value != nullptr) setenv(name, value, 1);
    else unsetenv(name);
  }
  ~ScopedEnv() {
    if (had_) setenv(name_.c_str(), old_.c_str(), 1);
    else unsetenv(name_.c_str());
  }
  ScopedEnv(const ScopedEnv &) = delete;
  ScopedEnv &operator=(const ScopedEnv &) = delete;

 private:
  std::string name_, old_;
  bool had_ = false;
};

}  // namespace hope_test
