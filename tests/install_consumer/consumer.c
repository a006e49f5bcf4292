/* A user's program: built against the installed header and library only. */
#include <stdio.h>

#include <hope_attn.h>

int main(void) {
  if (hope_version() != HOPE_VERSION) {
    fprintf(stderr, "header says %d, library says %d\n", HOPE_VERSION, hope_version());
    return 1;
  }
  hope_segment_t segs[3] = {{HOPE_SEGMENT_TEXT, 4, 0, 0, 0, 0.f},
                            {HOPE_SEGMENT_VIDEO, 0, 2, 2, 3, 0.f},
                            {HOPE_SEGMENT_TEXT, 2, 0, 0, 0, 0.f}};
  int64_t n = 0;
  if (hope_positions_count(segs, 3, &n) != HOPE_SUCCESS || n != 18) {
    fprintf(stderr, "count failed: %s\n", hope_last_error());
    return 1;
  }
  float pos[3 * 18], next = 0.f;
  hope_status_t s = hope_positions_build(segs, 3, HOPE_LAYOUT_DIAGONAL, 1.0f, 0.f, pos, n, &next);
  if (s != HOPE_SUCCESS) {
    fprintf(stderr, "build failed: %s\n", hope_last_error());
    return 1;
  }
  /* text 0..3; video base 4: frames t = 4, 5; text resumes at 1 + 5 = 6; 2 text tokens -> next = 8 */
  if (next != 8.f) {
    fprintf(stderr, "next_position %g, expected 8\n", next);
    return 1;
  }
  if (hope_positions_build(segs, 3, HOPE_LAYOUT_DIAGONAL, -1.f, 0.f, pos, n, &next) != HOPE_ERROR_INVALID_VALUE) {
    fprintf(stderr, "a negative default scale was accepted\n");
    return 1;
  }
  printf("consumer OK: hope_attn %d, %lld tokens, next position %g\n", hope_version(), (long long)n, next);
  return 0;
}
