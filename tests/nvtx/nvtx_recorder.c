/* nvtx_recorder.c — an NVTX v3 tool library that records what its clients do (see nvtx_recorder.h).
 *
 * Loaded by NVTX through NVTX_INJECTION64_PATH: InitializeInjectionNvtx2 is called once per client (each copy
 * of the NVTX headers in the process) with that client's export tables; it points the client's CORE (global
 * domain) and CORE2 (domains) entries at the functions below. Entries it leaves alone stay no-ops. */
#include "nvtx_recorder.h"

#include <nvtx3/nvToolsExt.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

enum { kMaxDomains = 32, kMaxStrings = 512, kMaxEvents = 1 << 16 };

typedef struct {
  char name[64];
} domain_t; /* what a nvtxDomainHandle_t points to */
typedef struct {
  char text[128];
} string_t; /* what a nvtxStringHandle_t points to */

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static domain_t g_domains[kMaxDomains];
static int g_num_domains;
static string_t g_strings[kMaxStrings];
static int g_num_strings;
static nvtxrec_event_t g_events[kMaxEvents];
static int g_num_events, g_dropped, g_clients, g_problems;
/* Per thread and domain (0: the global domain, 1 + i: g_domains[i]): ranges open now. */
static _Thread_local int t_depth[kMaxDomains + 1];

static void copy_text(char *dst, size_t cap, const char *src) { snprintf(dst, cap, "%s", src != NULL ? src : ""); }

/* Index into t_depth of a domain handle; -1 (and a problem) for a handle this recorder did not make. */
static int domain_slot(nvtxDomainHandle_t domain) {
  if (domain == NULL) return 0;
  const domain_t *d = (const domain_t *)(const void *)domain;
  if (d < g_domains || d >= g_domains + kMaxDomains) return -1;
  return 1 + (int)(d - g_domains);
}

static void note_problem(void) {
  pthread_mutex_lock(&g_lock);
  ++g_problems;
  pthread_mutex_unlock(&g_lock);
}

static void record(int kind, int slot, const char *name, int depth) {
  nvtxrec_event_t e;
  memset(&e, 0, sizeof e);
  e.kind = kind;
  e.thread = (uint64_t)pthread_self();
  e.depth = depth;
  copy_text(e.name, sizeof e.name, name);
  pthread_mutex_lock(&g_lock);
  if (slot > 0) copy_text(e.domain, sizeof e.domain, g_domains[slot - 1].name);
  if (g_num_events < kMaxEvents)
    g_events[g_num_events] = e;
  else
    ++g_dropped;
  ++g_num_events;
  pthread_mutex_unlock(&g_lock);
}

/* The message of an event, or NULL (and a problem) for a kind this recorder does not read. */
static const char *message_of(const nvtxEventAttributes_t *attr) {
  if (attr == NULL) return NULL;
  switch (attr->messageType) {
    case NVTX_MESSAGE_TYPE_ASCII:
      return attr->message.ascii;
    case NVTX_MESSAGE_TYPE_REGISTERED: {
      const string_t *s = (const string_t *)(const void *)attr->message.registered;
      if (s >= g_strings && s < g_strings + kMaxStrings) return s->text;
      return NULL;
    }
    case NVTX_MESSAGE_UNKNOWN:
      return "";
    default:
      return NULL;
  }
}

static int push(int slot, const char *name) {
  if (slot < 0 || name == NULL) {
    note_problem();
    return -1;
  }
  const int depth = ++t_depth[slot];
  record(NVTXREC_PUSH, slot, name, depth);
  return depth - 1; /* NVTX: the 0-based level of the range just opened */
}

static int pop(int slot) {
  if (slot < 0) {
    note_problem();
    return -1;
  }
  if (t_depth[slot] == 0) {
    record(NVTXREC_POP, slot, "", -1);
    return -1;
  }
  const int depth = --t_depth[slot];
  record(NVTXREC_POP, slot, "", depth);
  return depth;
}

/* ---- CORE2: domains ------------------------------------------------------------------------------------- */

static nvtxDomainHandle_t NVTX_API domain_create_a(const char *name) {
  pthread_mutex_lock(&g_lock);
  domain_t *d = NULL;
  for (int i = 0; i < g_num_domains && d == NULL; ++i)
    if (strcmp(g_domains[i].name, name != NULL ? name : "") == 0) d = &g_domains[i];
  if (d == NULL && g_num_domains < kMaxDomains) {
    d = &g_domains[g_num_domains++];
    copy_text(d->name, sizeof d->name, name);
  }
  if (d == NULL) ++g_problems;
  pthread_mutex_unlock(&g_lock);
  return (nvtxDomainHandle_t)(void *)d;
}

static void NVTX_API domain_destroy(nvtxDomainHandle_t domain) { (void)domain; }

static nvtxStringHandle_t NVTX_API domain_register_string_a(nvtxDomainHandle_t domain, const char *text) {
  (void)domain;
  pthread_mutex_lock(&g_lock);
  string_t *s = NULL;
  if (g_num_strings < kMaxStrings) {
    s = &g_strings[g_num_strings++];
    copy_text(s->text, sizeof s->text, text);
  } else {
    ++g_problems;
  }
  pthread_mutex_unlock(&g_lock);
  return (nvtxStringHandle_t)(void *)s;
}

static int NVTX_API domain_range_push_ex(nvtxDomainHandle_t domain, const nvtxEventAttributes_t *attr) {
  return push(domain_slot(domain), message_of(attr));
}

static int NVTX_API domain_range_pop(nvtxDomainHandle_t domain) { return pop(domain_slot(domain)); }

static void NVTX_API domain_mark_ex(nvtxDomainHandle_t domain, const nvtxEventAttributes_t *attr) {
  const int slot = domain_slot(domain);
  const char *name = message_of(attr);
  if (slot < 0 || name == NULL)
    note_problem();
  else
    record(NVTXREC_MARK, slot, name, 0);
}

static nvtxRangeId_t NVTX_API domain_range_start_ex(nvtxDomainHandle_t domain, const nvtxEventAttributes_t *attr) {
  const int slot = domain_slot(domain);
  const char *name = message_of(attr);
  if (slot < 0 || name == NULL)
    note_problem();
  else
    record(NVTXREC_START, slot, name, 0);
  return 1;
}

static void NVTX_API domain_range_end(nvtxDomainHandle_t domain, nvtxRangeId_t id) {
  (void)id;
  const int slot = domain_slot(domain);
  if (slot < 0)
    note_problem();
  else
    record(NVTXREC_END, slot, "", 0);
}

/* ---- CORE: the global domain ------------------------------------------------------------------------------ */

static int NVTX_API range_push_a(const char *message) { return push(0, message != NULL ? message : ""); }
static int NVTX_API range_push_ex(const nvtxEventAttributes_t *attr) { return push(0, message_of(attr)); }
static int NVTX_API range_pop(void) { return pop(0); }
static void NVTX_API mark_a(const char *message) { record(NVTXREC_MARK, 0, message, 0); }
static void NVTX_API mark_ex(const nvtxEventAttributes_t *attr) { domain_mark_ex(NULL, attr); }
static nvtxRangeId_t NVTX_API range_start_a(const char *message) {
  record(NVTXREC_START, 0, message, 0);
  return 1;
}
static nvtxRangeId_t NVTX_API range_start_ex(const nvtxEventAttributes_t *attr) {
  return domain_range_start_ex(NULL, attr);
}
static void NVTX_API range_end(nvtxRangeId_t id) { domain_range_end(NULL, id); }

/* ---- the injection entry point ------------------------------------------------------------------------------ */

static int install(const NvtxExportTableCallbacks *cb, NvtxCallbackModule module, const unsigned *ids,
                   const NvtxFunctionPointer *fns, int count) {
  NvtxFunctionTable table = NULL;
  unsigned size = 0;
  if (!cb->GetModuleFunctionTable(module, &table, &size) || table == NULL) return 0;
  for (int i = 0; i < count; ++i) {
    if (ids[i] >= size || table[ids[i]] == NULL) return 0;
    *table[ids[i]] = fns[i];
  }
  return 1;
}

EXPORT int NVTX_API InitializeInjectionNvtx2(NvtxGetExportTableFunc_t get_export_table) {
  const NvtxExportTableCallbacks *cb = (const NvtxExportTableCallbacks *)get_export_table(NVTX_ETID_CALLBACKS);
  if (cb == NULL || cb->struct_size < sizeof(NvtxExportTableCallbacks)) return 0;
  const NvtxExportTableVersionInfo *vi = (const NvtxExportTableVersionInfo *)get_export_table(NVTX_ETID_VERSIONINFO);
  if (vi != NULL && vi->struct_size >= sizeof(NvtxExportTableVersionInfo) && vi->SetInjectionNvtxVersion != NULL)
    vi->SetInjectionNvtxVersion(NVTX_VERSION);

  static const unsigned core2_ids[] = {NVTX_CBID_CORE2_DomainCreateA,         NVTX_CBID_CORE2_DomainDestroy,
                                       NVTX_CBID_CORE2_DomainRegisterStringA, NVTX_CBID_CORE2_DomainRangePushEx,
                                       NVTX_CBID_CORE2_DomainRangePop,        NVTX_CBID_CORE2_DomainMarkEx,
                                       NVTX_CBID_CORE2_DomainRangeStartEx,    NVTX_CBID_CORE2_DomainRangeEnd};
  const NvtxFunctionPointer core2_fns[] = {
      (NvtxFunctionPointer)domain_create_a,          (NvtxFunctionPointer)domain_destroy,
      (NvtxFunctionPointer)domain_register_string_a, (NvtxFunctionPointer)domain_range_push_ex,
      (NvtxFunctionPointer)domain_range_pop,         (NvtxFunctionPointer)domain_mark_ex,
      (NvtxFunctionPointer)domain_range_start_ex,    (NvtxFunctionPointer)domain_range_end};
  static const unsigned core_ids[] = {
      NVTX_CBID_CORE_RangePushA, NVTX_CBID_CORE_RangePushEx, NVTX_CBID_CORE_RangePop,     NVTX_CBID_CORE_MarkA,
      NVTX_CBID_CORE_MarkEx,     NVTX_CBID_CORE_RangeStartA, NVTX_CBID_CORE_RangeStartEx, NVTX_CBID_CORE_RangeEnd};
  const NvtxFunctionPointer core_fns[] = {(NvtxFunctionPointer)range_push_a,   (NvtxFunctionPointer)range_push_ex,
                                          (NvtxFunctionPointer)range_pop,      (NvtxFunctionPointer)mark_a,
                                          (NvtxFunctionPointer)mark_ex,        (NvtxFunctionPointer)range_start_a,
                                          (NvtxFunctionPointer)range_start_ex, (NvtxFunctionPointer)range_end};
  if (!install(cb, NVTX_CB_MODULE_CORE2, core2_ids, core2_fns, 8)) return 0;
  if (!install(cb, NVTX_CB_MODULE_CORE, core_ids, core_fns, 8)) return 0;
  pthread_mutex_lock(&g_lock);
  ++g_clients;
  pthread_mutex_unlock(&g_lock);
  return 1;
}

/* ---- queries (nvtx_recorder.h) ------------------------------------------------------------------------------ */

EXPORT int nvtxrec_count(void) {
  pthread_mutex_lock(&g_lock);
  const int n = g_num_events;
  pthread_mutex_unlock(&g_lock);
  return n;
}

EXPORT int nvtxrec_get(int i, nvtxrec_event_t *event) {
  pthread_mutex_lock(&g_lock);
  const int ok = i >= 0 && i < g_num_events && i < kMaxEvents && event != NULL;
  if (ok) *event = g_events[i];
  pthread_mutex_unlock(&g_lock);
  return ok;
}

EXPORT void nvtxrec_clear(void) {
  pthread_mutex_lock(&g_lock);
  g_num_events = 0;
  g_dropped = 0;
  pthread_mutex_unlock(&g_lock);
}

EXPORT int nvtxrec_dropped(void) {
  pthread_mutex_lock(&g_lock);
  const int n = g_dropped;
  pthread_mutex_unlock(&g_lock);
  return n;
}

EXPORT int nvtxrec_clients(void) {
  pthread_mutex_lock(&g_lock);
  const int n = g_clients;
  pthread_mutex_unlock(&g_lock);
  return n;
}

EXPORT int nvtxrec_domain_created(const char *name) {
  int found = 0;
  pthread_mutex_lock(&g_lock);
  for (int i = 0; i < g_num_domains && !found; ++i) found = name != NULL && strcmp(g_domains[i].name, name) == 0;
  pthread_mutex_unlock(&g_lock);
  return found;
}

EXPORT int nvtxrec_problems(void) {
  pthread_mutex_lock(&g_lock);
  const int n = g_problems;
  pthread_mutex_unlock(&g_lock);
  return n;
}
