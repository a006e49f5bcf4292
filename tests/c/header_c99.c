/* Compiled with -std=c99 -pedantic -Werror (and as C++) by ctest: the public header needs nothing else. */
#include "hope_attn.h"

int main(void) {
  hope_segment_t seg = {HOPE_SEGMENT_VIDEO, 0, 2, 3, 4, 0.75f};
  hope_rope_config_t cfg = {HOPE_ROPE_HOPE, 128, {16, 24, 24}, 1e6, HOPE_PAIRING_ROTATE_HALF, 0, 0};
  hope_attention_params_t params;
  params.backend = HOPE_BACKEND_CPU;
  (void)seg; (void)cfg; (void)params;
  return HOPE_VERSION == 0 ? 1 : 0;
}
