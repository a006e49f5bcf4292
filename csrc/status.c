/* status.c — status strings, the per-thread last error, version, overflow-checked arithmetic. */
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

#define HOPEI_ERROR_CAPACITY 1024

static _Thread_local char tls_last_error[HOPEI_ERROR_CAPACITY];

const char *hope_status_string(hope_status_t status) {
  switch (status) {
    case HOPE_SUCCESS: return "HOPE_SUCCESS";
    case HOPE_ERROR_INVALID_VALUE: return "HOPE_ERROR_INVALID_VALUE";
    case HOPE_ERROR_NOT_SUPPORTED: return "HOPE_ERROR_NOT_SUPPORTED";
    case HOPE_ERROR_OUT_OF_MEMORY: return "HOPE_ERROR_OUT_OF_MEMORY";
    case HOPE_ERROR_CUDA: return "HOPE_ERROR_CUDA";
    case HOPE_ERROR_NO_DEVICE: return "HOPE_ERROR_NO_DEVICE";
    case HOPE_ERROR_INTERNAL: return "HOPE_ERROR_INTERNAL";
  }
  return "HOPE_ERROR_UNKNOWN_STATUS";
}

const char *hope_last_error(void) { return tls_last_error; }

int hope_version(void) { return HOPE_VERSION; }

hope_status_t hopei_fail(hope_status_t status, const char *fmt, ...) {
  va_list args;
  va_start(args, fmt);
  vsnprintf(tls_last_error, sizeof tls_last_error, fmt, args);
  va_end(args);
  return status;
}

bool hopei_mul_i64(int64_t a, int64_t b, int64_t *out) { return !__builtin_mul_overflow(a, b, out); }
bool hopei_add_i64(int64_t a, int64_t b, int64_t *out) { return !__builtin_add_overflow(a, b, out); }
