/* nvtx.c — the NVTX domain "hope_attn" and one registered range name per public entry point.
 * nvtx3 is header-only: without a tool attached (nsys, ncu) each push/pop is a cheap no-op.
 * HOPE_NVTX_DISABLE=1 in the environment turns the ranges off entirely. Built only when the nvtx3 headers were
 * found (cmake/cuda_backend.cmake); tests/nvtx/ records the ranges through an NVTX injection library. */
#include <pthread.h>
#include <stdlib.h>

#include <nvtx3/nvToolsExt.h>

#include "internal.h"

static const char *const kRangeNames[HOPEI_RANGE_COUNT_] = {
    [HOPEI_RANGE_POSITIONS_COUNT] = "hope_positions_count",
    [HOPEI_RANGE_POSITIONS_BUILD] = "hope_positions_build",
    [HOPEI_RANGE_POSITIONS_BUILD_EX] = "hope_positions_build_ex",
    [HOPEI_RANGE_POSITIONS_GENERATED] = "hope_positions_generated",
    [HOPEI_RANGE_SEGMENT_FROM_GRID] = "hope_segment_from_vision_grid",
    [HOPEI_RANGE_SEGMENT_FROM_GRID_EX] = "hope_segment_from_vision_grid_ex",
    [HOPEI_RANGE_SCALES_SELECT] = "hope_temporal_scales_select",
    [HOPEI_RANGE_ROPE_COMPONENTS] = "hope_rope_components",
    [HOPEI_RANGE_ROPE_COS_SIN] = "hope_rope_cos_sin",
    [HOPEI_RANGE_ROPE_CACHE_CREATE] = "hope_rope_cache_create",
    [HOPEI_RANGE_ROPE_CACHE_FILL] = "hope_rope_cache_fill",
    [HOPEI_RANGE_ROPE_CACHE_GET] = "hope_rope_cache_get",
    [HOPEI_RANGE_ROPE_CACHE_DESTROY] = "hope_rope_cache_destroy",
    [HOPEI_RANGE_ROPE_APPLY] = "hope_rope_apply",
    [HOPEI_RANGE_ATTENTION_FORWARD] = "hope_attention_forward",
    [HOPEI_RANGE_ATTENTION_UNFUSED_WORKSPACE] = "hope_attention_unfused_workspace_size",
    [HOPEI_RANGE_ATTENTION_FORWARD_UNFUSED] = "hope_attention_forward_unfused",
    [HOPEI_RANGE_KV_APPEND] = "hope_kv_append",
    [HOPEI_RANGE_DECODE_WORKSPACE] = "hope_decode_workspace_size",
    [HOPEI_RANGE_DECODE_FORWARD] = "hope_decode_forward",
    [HOPEI_RANGE_MERGE_STATES] = "hope_merge_states",
    [HOPEI_RANGE_CUDA_DEVICE_COUNT] = "hope_cuda_device_count",
    [HOPEI_RANGE_BUILD_INFO] = "hope_build_info",
};

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_enabled;
static nvtxDomainHandle_t g_domain;
static nvtxStringHandle_t g_names[HOPEI_RANGE_COUNT_];

static void nvtx_init(void) {
  const char *off = getenv("HOPE_NVTX_DISABLE");
  g_enabled = !(off != NULL && off[0] != '\0' && off[0] != '0');
  if (!g_enabled) return;
  g_domain = nvtxDomainCreateA("hope_attn");
  for (int i = 0; i < HOPEI_RANGE_COUNT_; ++i) g_names[i] = nvtxDomainRegisterStringA(g_domain, kRangeNames[i]);
}

void hopei_nvtx_push(hopei_range_t range) {
  pthread_once(&g_once, nvtx_init);
  if (!g_enabled || range < 0 || range >= HOPEI_RANGE_COUNT_) return;
  nvtxEventAttributes_t attr = {0};
  attr.version = NVTX_VERSION;
  attr.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
  attr.messageType = NVTX_MESSAGE_TYPE_REGISTERED;
  attr.message.registered = g_names[range];
  nvtxDomainRangePushEx(g_domain, &attr);
}

void hopei_nvtx_pop(int *unused) {
  (void)unused;
  if (g_enabled) nvtxDomainRangePop(g_domain);
}
