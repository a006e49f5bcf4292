// Placeholder until the fused kernel lands (issue 7): reports NOT_SUPPORTED, never success.
#include "../../csrc/internal.h"
#include "launch.h"

extern "C" hope_status_t hopei_attention_fused_cuda(const hope_attention_params_t *p, int supported_only,
                                                    void *stream) {
  (void)p; (void)supported_only; (void)stream;
  return hopei_fail(HOPE_ERROR_NOT_SUPPORTED, "hope_attention_forward: the fused CUDA kernel is not built yet");
}
