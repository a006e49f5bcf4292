/* cpu/isa.c — which micro-kernels run: CPUID (and the OS's saved vector state) decides what the CPU can do;
 * HOPE_CPU_ISA=portable|avx2|avx512|avx512bf16 forces one path (tests run every path the machine can). */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>

static uint64_t xgetbv0(void) {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return ((uint64_t)hi << 32) | lo;
}

/* The best ISA this CPU and OS support. */
static hopei_isa_t detect(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return HOPEI_ISA_PORTABLE;
  const bool osxsave = (c >> 27) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
  if (!osxsave) return HOPEI_ISA_PORTABLE;
  const uint64_t xcr0 = xgetbv0();
  const bool ymm_state = (xcr0 & 0x6) == 0x6, zmm_state = (xcr0 & 0xe6) == 0xe6;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return HOPEI_ISA_PORTABLE;
  const bool avx2 = (b >> 5) & 1, avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1, avx512bw = (b >> 30) & 1,
             avx512vl = (b >> 31) & 1;
  const unsigned max_sub = a;
  if (!(ymm_state && avx2 && fma && f16c)) return HOPEI_ISA_PORTABLE;
  if (!(zmm_state && avx512f && avx512dq && avx512bw && avx512vl)) return HOPEI_ISA_AVX2;
  if (max_sub >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d) && ((a >> 5) & 1)) return HOPEI_ISA_AVX512BF16;
  return HOPEI_ISA_AVX512;
}
#else
static hopei_isa_t detect(void) { return HOPEI_ISA_PORTABLE; }
#endif

static const char *const kNames[] = {"portable", "avx2", "avx512", "avx512bf16"};

static hopei_isa_t best_isa(void) {
  static atomic_int cached = -1;
  int v = atomic_load_explicit(&cached, memory_order_relaxed);
  if (v < 0) {
    v = (int)detect();
    atomic_store_explicit(&cached, v, memory_order_relaxed);
  }
  return (hopei_isa_t)v;
}

bool hopei_cpu_isa_supported(hopei_isa_t isa) { return isa <= best_isa(); }

static const hopei_cpu_kernels_t *table(hopei_isa_t isa) {
  switch (isa) {
    case HOPEI_ISA_AVX512BF16: return hopei_cpu_kernels_avx512bf16();
    case HOPEI_ISA_AVX512: return hopei_cpu_kernels_avx512();
    case HOPEI_ISA_AVX2: return hopei_cpu_kernels_avx2();
    default: return hopei_cpu_kernels_portable();
  }
}

hope_status_t hopei_cpu_kernels(const char *fn, const hopei_cpu_kernels_t **out) {
  const char *env = getenv("HOPE_CPU_ISA");
  if (env == NULL || env[0] == '\0') {
    *out = hopei_cpu_kernels_portable();
    for (int isa = (int)best_isa(); isa > HOPEI_ISA_PORTABLE; --isa)
      if (table((hopei_isa_t)isa) != NULL) {
        *out = table((hopei_isa_t)isa);
        break;
      }
    return HOPE_SUCCESS;
  }
  for (int isa = 0; isa < (int)(sizeof kNames / sizeof kNames[0]); ++isa) {
    if (strcmp(env, kNames[isa]) != 0) continue;
    if (!hopei_cpu_isa_supported((hopei_isa_t)isa) || table((hopei_isa_t)isa) == NULL)
      return hopei_fail(HOPE_ERROR_NOT_SUPPORTED,
                        "%s: HOPE_CPU_ISA=%s, but this CPU (or this build) cannot run that path; the best it can "
                        "is %s", fn, env, kNames[best_isa()]);
    *out = table((hopei_isa_t)isa);
    return HOPE_SUCCESS;
  }
  return hopei_fail(HOPE_ERROR_INVALID_VALUE,
                    "%s: HOPE_CPU_ISA=%s is not one of portable, avx2, avx512, avx512bf16 (unset it to choose from "
                    "the CPU)", fn, env);
}
