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

/* ---- memory ranges -------------------------------------------------------------------------------------- */

bool hopei_span(const void *p, uint64_t bytes, uintptr_t *lo, uintptr_t *hi) {
  *lo = (uintptr_t)p;
  *hi = *lo + (uintptr_t)bytes;
  return bytes <= HOPEI_ADDRESS_LIMIT && *lo <= HOPEI_ADDRESS_LIMIT - (uintptr_t)bytes;
}

hope_status_t hopei_check_span(const char *fn, const char *name, const void *p, uint64_t bytes) {
  uintptr_t lo, hi;
  HOPEI_CHECK(hopei_span(p, bytes, &lo, &hi),
              "%s: %s would span %llu bytes from %p, past the end of any address space: a count or a row stride "
              "is larger than any buffer can be", fn, name, (unsigned long long)bytes, p);
  return HOPE_SUCCESS;
}

hope_status_t hopei_check_alias(const char *fn, const char *a_name, const void *a, uint64_t a_bytes,
                                const char *b_name, const void *b, uint64_t b_bytes, bool may_equal) {
  if (a == NULL || b == NULL || a_bytes == 0 || b_bytes == 0) return HOPE_SUCCESS;
  uintptr_t alo, ahi, blo, bhi;
  HOPEI_TRY(hopei_check_span(fn, a_name, a, a_bytes));
  HOPEI_TRY(hopei_check_span(fn, b_name, b, b_bytes));
  hopei_span(a, a_bytes, &alo, &ahi);
  hopei_span(b, b_bytes, &blo, &bhi);
  if (ahi <= blo || bhi <= alo) return HOPE_SUCCESS;
  if (may_equal && a == b && a_bytes == b_bytes) return HOPE_SUCCESS;
  return hopei_fail(HOPE_ERROR_INVALID_VALUE,
                    "%s: %s [%p, +%llu bytes) and %s [%p, +%llu bytes) overlap; %s (for separate buffers this "
                    "means a count or row stride larger than they are)", fn, a_name, a, (unsigned long long)a_bytes,
                    b_name, b, (unsigned long long)b_bytes,
                    may_equal ? "only the very same array is allowed (in place)" : "they must not share memory");
}
