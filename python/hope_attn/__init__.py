"""hope_attn — Python binding (ctypes) of the hope_attn C library: multimodal 3-D rotary position embeddings
(HoPE, VideoRoPE, M-RoPE, plain RoPE) fused into FlashAttention-style varlen attention.

numpy arrays run on the library's CPU backend; CUDA arrays (PyTorch tensors, CuPy arrays, anything with
__cuda_array_interface__) run on the GPU on the array's stream. The shared library is found next to this
package, at $HOPE_ATTN_LIBRARY, or on the dynamic loader's path.

    import hope_attn as ha
    pos, nxt = ha.positions([ha.text(24), ha.video(8, 18, 32, scale=0.75), ha.text(40)], "diagonal")
    cos, sin = ha.cos_sin("hope", pos, head_dim=128, sections=(16, 24, 24), theta=1e6)
    out = ha.attention(q, k, v, causal=True, cos_q=cos, sin_q=sin, cos_k=cos, sin_k=sin)
"""

from ._lib import (DEFAULT_SCALE_CANDIDATES, Backend, Component, DType, HopeError, Layout, Memory, Pairing, RopeKind,
                   ScalePolicy, SegmentKind, Status, has_function, library_path)
from .api import (RopeCache, RopeConfig, Segment, as_segment, attention, cos_sin, cuda_device_count, decode,
                  default_sections, image, kv_append, last_error, merge_states, num_tokens, positions,
                  positions_generated, rope_apply, rope_components, rope_config, segment_from_vision_grid,
                  select_temporal_scales, status_string, text, version, version_int, video, video_frame_segments)
from ._arrays import BFLOAT16_NP
from ._build_info import build_info

__version__ = "0.2.0"

__all__ = [
    "Backend", "Component", "DType", "HopeError", "Layout", "Memory", "Pairing", "RopeKind", "ScalePolicy", "SegmentKind",
    "Status", "DEFAULT_SCALE_CANDIDATES", "BFLOAT16_NP", "build_info", "has_function", "library_path",
    "RopeCache", "RopeConfig", "Segment", "as_segment", "attention", "cos_sin", "cuda_device_count", "decode",
    "default_sections", "image", "kv_append", "last_error", "merge_states", "num_tokens", "positions",
    "positions_generated", "rope_apply", "rope_components", "rope_config", "segment_from_vision_grid",
    "select_temporal_scales", "status_string", "text", "version", "version_int", "video", "video_frame_segments",
]
