/* build_info.c — what this library was built with and what it finds on this machine: hope_build_info, and
 * hope_cuda_device_count (the CUDA backend's probe, or 0 in a build without CUDA). */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#elif defined(__aarch64__) && defined(__linux__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

#include "hope_build_config.h" /* generated: HOPEI_BUILD_* (cmake/hope_build_config.h.in) */
#include "internal.h"

hope_status_t hope_cuda_device_count(int32_t *count) {
  HOPEI_NVTX_SCOPE(HOPEI_RANGE_CUDA_DEVICE_COUNT);
  HOPEI_CHECK_NOT_NULL("hope_cuda_device_count", count);
  *count = hopei_cuda_device_count();
  return HOPE_SUCCESS;
}

typedef struct {
  char *p;
  size_t left;
} text_t;

static void add(text_t *t, const char *fmt, ...) {
  va_list args;
  va_start(args, fmt);
  const int n = vsnprintf(t->p, t->left, fmt, args);
  va_end(args);
  if (n < 0 || (size_t)n >= t->left) { /* full (the buffer is far larger than the text): drop the rest */
    t->left = 0;
    return;
  }
  t->p += n;
  t->left -= (size_t)n;
}

/* ISA extensions this CPU offers, comma-separated (the ones a CPU kernel path could use). */
static void cpu_features(text_t *t) {
  const char *sep = "";
#define HOPEI_FEATURE(cond, name) \
  do {                            \
    if (cond) {                   \
      add(t, "%s%s", sep, name);  \
      sep = ",";                  \
    }                             \
  } while (0)
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  const int f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
  HOPEI_FEATURE(__builtin_cpu_supports("sse4.2"), "sse4.2");
  HOPEI_FEATURE(__builtin_cpu_supports("avx"), "avx");
  HOPEI_FEATURE(__builtin_cpu_supports("avx2"), "avx2");
  HOPEI_FEATURE(__builtin_cpu_supports("fma"), "fma");
  HOPEI_FEATURE(f16c, "f16c");
  HOPEI_FEATURE(__builtin_cpu_supports("avx512f"), "avx512f");
  HOPEI_FEATURE(__builtin_cpu_supports("avx512bw"), "avx512bw");
  HOPEI_FEATURE(__builtin_cpu_supports("avx512dq"), "avx512dq");
  HOPEI_FEATURE(__builtin_cpu_supports("avx512vl"), "avx512vl");
  HOPEI_FEATURE(__builtin_cpu_supports("avx512vnni"), "avx512vnni");
  HOPEI_FEATURE(__builtin_cpu_supports("avx512bf16"), "avx512bf16");
#elif defined(__aarch64__) && defined(__linux__)
  const unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
  (void)hw2;
#ifdef HWCAP_ASIMD
  HOPEI_FEATURE(hw & HWCAP_ASIMD, "asimd");
#endif
#ifdef HWCAP_ASIMDHP
  HOPEI_FEATURE(hw & HWCAP_ASIMDHP, "asimdhp");
#endif
#ifdef HWCAP_ASIMDDP
  HOPEI_FEATURE(hw & HWCAP_ASIMDDP, "asimddp");
#endif
#ifdef HWCAP_SVE
  HOPEI_FEATURE(hw & HWCAP_SVE, "sve");
#endif
#ifdef HWCAP2_SVE2
  HOPEI_FEATURE(hw2 & HWCAP2_SVE2, "sve2");
#endif
#ifdef HWCAP2_BF16
  HOPEI_FEATURE(hw2 & HWCAP2_BF16, "bf16");
#endif
#endif
#undef HOPEI_FEATURE
  (void)sep;
}

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static char g_info[2048];

static void build_info_init(void) {
  text_t t = {g_info, sizeof g_info};
  add(&t, "version=%d.%d.%d\n", HOPE_VERSION_MAJOR, HOPE_VERSION_MINOR, HOPE_VERSION_PATCH);
  add(&t, "cuda=%s\n", HOPEI_BUILD_CUDA);
  add(&t, "cuda_version=%s\n", HOPEI_BUILD_CUDA_VERSION);
  add(&t, "cuda_architectures=%s\n", HOPEI_BUILD_CUDA_ARCHITECTURES);
  add(&t, "cuda_devices=%d\n", hopei_cuda_device_count());
  add(&t, "attention_families=%s\n", HOPEI_BUILD_ATTENTION_FAMILIES);
#if defined(HOPE_HAVE_NVTX) && HOPE_HAVE_NVTX
  add(&t, "nvtx=on\n");
#else
  add(&t, "nvtx=off\n");
#endif
  add(&t, "cpu_isa_paths=%s\n", hopei_cpu_isa_paths());
  add(&t, "cpu_isa_selected=%s\n", hopei_cpu_isa_selected());
  add(&t, "cpu_features=");
  cpu_features(&t);
  add(&t, "\n");
  add(&t, "compiler=%s\n", HOPEI_BUILD_COMPILER);
  add(&t, "build_type=%s\n", HOPEI_BUILD_TYPE);
  add(&t, "system=%s\n", HOPEI_BUILD_SYSTEM);
}

hope_status_t hope_build_info(const char **info) {
  HOPEI_NVTX_SCOPE(HOPEI_RANGE_BUILD_INFO);
  HOPEI_CHECK_NOT_NULL("hope_build_info", info);
  pthread_once(&g_once, build_info_init);
  *info = g_info;
  return HOPE_SUCCESS;
}
