/* isa_report.c — the CPU backend's answer to hope_build_info: which kernel paths are compiled in and which one
 * runs on this machine. The CPU backend is portable C today, so both are "generic"; a run-time ISA dispatch
 * reports its own paths and choice here (names: "generic", "avx2", "avx512", "neon", ...). */
#include "internal.h"

const char *hopei_cpu_isa_paths(void) { return "generic"; }
const char *hopei_cpu_isa_selected(void) { return "generic"; }
