/* control.h — what tests and tools may ask the emulated GPU (plain C; only in emulated builds). */
#ifndef HOPE_EMU_CONTROL_H_
#define HOPE_EMU_CONTROL_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Errors the emulator has found in kernel code in this process so far (hazards, divergence, deadlocks, ...).
 * A test harness compares it before and after each test: any increase fails the test. */
long hopeemu_error_count(void);
/* The thread schedule of this process (HOPE_EMU_SCHEDULE): "lockstep", "forward", "reverse" or "random". */
const char *hopeemu_schedule(void);
/* A fresh launch index (seeds the random schedule of each launch). */
uint64_t hopeemu_next_launch_index(void);

#ifdef __cplusplus
}
#endif

#endif /* HOPE_EMU_CONTROL_H_ */
