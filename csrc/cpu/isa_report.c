/* isa_report.c — the CPU backend's answer to hope_build_info: which kernel paths this build compiled in
 * (cpu_isa_paths), and which one runs on this machine now (cpu_isa_selected: HOPE_CPU_ISA when it names a path
 * this CPU can run, else the best such path; see cpu/isa.c). */
#include <stdio.h>
#include <string.h>

#include "kernels.h"

static const hopei_cpu_kernels_t *path(int isa) {
  switch (isa) {
    case HOPEI_ISA_AVX512BF16: return hopei_cpu_kernels_avx512bf16();
    case HOPEI_ISA_AVX512: return hopei_cpu_kernels_avx512();
    case HOPEI_ISA_AVX2: return hopei_cpu_kernels_avx2();
    default: return hopei_cpu_kernels_portable();
  }
}

const char *hopei_cpu_isa_paths(void) {
  static char list[96];
  if (list[0] == '\0') { /* benign race: every writer writes the same text */
    char buf[96] = "";
    for (int isa = HOPEI_ISA_PORTABLE; isa <= HOPEI_ISA_AVX512BF16; ++isa) {
      const hopei_cpu_kernels_t *k = path(isa);
      if (k == NULL) continue;
      if (buf[0] != '\0') strncat(buf, ",", sizeof buf - strlen(buf) - 1);
      strncat(buf, k->name, sizeof buf - strlen(buf) - 1);
    }
    memcpy(list, buf, sizeof list);
  }
  return list;
}

const char *hopei_cpu_isa_selected(void) {
  const hopei_cpu_kernels_t *k = NULL;
  if (hopei_cpu_kernels("hope_build_info", &k) != HOPE_SUCCESS || k == NULL) return "invalid HOPE_CPU_ISA";
  return k->name;
}
