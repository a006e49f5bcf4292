/* nvtx_recorder.h — the query side of nvtx_recorder.c, an NVTX v3 tool library for the tests.
 *
 * NVTX v3 (header-only) loads the library named by NVTX_INJECTION64_PATH at the first NVTX call of each client
 * (libhope_attn.so, the test itself) and hands it the client's function tables; the recorder fills the
 * entries for domains, registered strings, push/pop, start/end and marks, and records every call. A test links
 * the same file and reads the events through the functions below (the dynamic loader maps it only once). */
#ifndef HOPE_TESTS_NVTX_RECORDER_H_
#define HOPE_TESTS_NVTX_RECORDER_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  NVTXREC_PUSH = 1,  /* a range opened with a push (nvtxRangePush*, nvtxDomainRangePushEx) */
  NVTXREC_POP = 2,   /* the matching pop */
  NVTXREC_MARK = 3,  /* an instantaneous marker */
  NVTXREC_START = 4, /* a start/end range (not nested) opened */
  NVTXREC_END = 5
} nvtxrec_kind_t;

typedef struct {
  int kind;        /* nvtxrec_kind_t */
  uint64_t thread; /* the calling thread (pthread_self) */
  char domain[64]; /* the domain's name; "" for the default (global) domain */
  char name[128];  /* the message (ASCII or registered string); "" for a pop or end */
  int depth;       /* push: this thread's depth in the domain after the push (1 = outermost);
                      pop: the depth after the pop (0 = nothing left open); -1 for a pop with nothing open */
} nvtxrec_event_t;

/* Number of recorded events (also those beyond the storage, see nvtxrec_dropped). */
int nvtxrec_count(void);
/* Copies event i (0 <= i < nvtxrec_count() - nvtxrec_dropped()); 0 if there is no such event. */
int nvtxrec_get(int i, nvtxrec_event_t *event);
/* Forgets the events (domains and registered strings stay known). */
void nvtxrec_clear(void);
/* Events that did not fit the storage. */
int nvtxrec_dropped(void);
/* NVTX clients that initialised this tool (one per copy of the NVTX headers that made a call). */
int nvtxrec_clients(void);
/* Whether a domain of this name was created by any client. */
int nvtxrec_domain_created(const char *name);
/* Calls the recorder could not interpret (an unknown domain or string handle, a message type it does not
 * read); a test expects 0. */
int nvtxrec_problems(void);

#ifdef __cplusplus
}
#endif

#endif /* HOPE_TESTS_NVTX_RECORDER_H_ */
