// Placeholder until the unfused cuBLAS path lands (issue 4): reports NOT_SUPPORTED, never success.
#include "../../csrc/internal.h"
#include "launch.h"

extern "C" hope_status_t hopei_attention_unfused_workspace(const hope_attention_params_t *p, size_t *bytes) {
  (void)p; *bytes = 0;
  return hopei_fail(HOPE_ERROR_NOT_SUPPORTED, "hope_attention_unfused_workspace_size: not built yet");
}

extern "C" hope_status_t hopei_attention_unfused_cuda(const hope_attention_params_t *p, void *workspace,
                                                      size_t workspace_bytes, void *stream) {
  (void)p; (void)workspace; (void)workspace_bytes; (void)stream;
  return hopei_fail(HOPE_ERROR_NOT_SUPPORTED, "hope_attention_forward_unfused: not built yet");
}
