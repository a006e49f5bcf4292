"""Low-level ctypes mirror of include/hope_attn.h: enums, structs, function prototypes, library loading.

Every struct here has the same fields, in the same order and with the same C types, as the header, so ctypes
lays it out exactly as the C compiler does (tests/test_abi.py checks sizes and offsets against the compiler).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import enum
import os
import pathlib
import threading

__all__ = [
    "Status", "Layout", "SegmentKind", "ScalePolicy", "RopeKind", "Component", "Memory", "DType", "Backend",
    "hope_segment_t", "hope_scale_params_t", "hope_rope_config_t", "hope_rope_apply_params_t",
    "hope_attention_params_t", "hope_paged_kv_t", "hope_kv_append_params_t", "hope_decode_params_t",
    "hope_merge_params_t", "HopeError", "lib", "library_path", "check", "has_function",
]

# ----------------------------------------------------------------------------------------------------------
# Enums (explicit values, as in the header)
# ----------------------------------------------------------------------------------------------------------


class Status(enum.IntEnum):
    SUCCESS = 0
    ERROR_INVALID_VALUE = 1
    ERROR_NOT_SUPPORTED = 2
    ERROR_OUT_OF_MEMORY = 3
    ERROR_CUDA = 4
    ERROR_NO_DEVICE = 5
    ERROR_INTERNAL = 6


class Layout(enum.IntEnum):
    SEQUENTIAL = 0
    MROPE = 1
    DIAGONAL = 2
    MROPE_TIMED = 3


class SegmentKind(enum.IntEnum):
    TEXT = 0
    IMAGE = 1
    VIDEO = 2


class ScalePolicy(enum.IntEnum):
    FIXED = 0
    RANDOM = 1
    FIT = 2


class RopeKind(enum.IntEnum):
    VANILLA = 0
    MROPE = 1
    MROPE_INTERLEAVED = 2
    VIDEOROPE = 3
    HOPE = 4


class Pairing(enum.IntEnum):
    ROTATE_HALF = 0
    INTERLEAVED = 1


class Component(enum.IntEnum):
    NONE = -1
    T = 0
    H = 1
    W = 2


class Memory(enum.IntEnum):
    HOST = 0
    DEVICE = 1


class DType(enum.IntEnum):
    FLOAT16 = 0
    BFLOAT16 = 1
    FLOAT32 = 2


class Backend(enum.IntEnum):
    CUDA = 0
    CPU = 1


DEFAULT_SCALE_CANDIDATES = (0.5, 0.75, 1.0, 1.25, 1.5)

# ----------------------------------------------------------------------------------------------------------
# Structs
# ----------------------------------------------------------------------------------------------------------

_i32 = ctypes.c_int32
_i64 = ctypes.c_int64
_u64 = ctypes.c_uint64
_f32 = ctypes.c_float
_f64 = ctypes.c_double
_vp = ctypes.c_void_p
_fp = ctypes.POINTER(ctypes.c_float)
_ip = ctypes.POINTER(ctypes.c_int32)
_lp = ctypes.POINTER(ctypes.c_int64)


class hope_segment_t(ctypes.Structure):
    _fields_ = [("kind", _i32), ("length", _i32), ("grid_t", _i32), ("grid_h", _i32), ("grid_w", _i32),
                ("temporal_scale", _f32)]


class hope_positions_params_t(ctypes.Structure):
    _fields_ = [("layout", _i32), ("default_temporal_scale", _f32), ("start", _f32), ("seconds_per_grid", _fp),
                ("tokens_per_second", _f32)]


class hope_scale_params_t(ctypes.Structure):
    _fields_ = [("policy", _i32), ("num_candidates", _i32), ("candidates", _fp), ("fixed_scale", _f32),
                ("seed", _u64), ("position_budget", _f64), ("start", _f32)]


class hope_rope_config_t(ctypes.Structure):
    _fields_ = [("kind", _i32), ("head_dim", _i32), ("sections", _i32 * 3), ("theta", _f64),
                # added in 0.2
                ("pairing", _i32), ("rotary_dim", _i32), ("model_exact_freqs", _i32)]


class hope_rope_apply_params_t(ctypes.Structure):
    _fields_ = [("backend", _i32), ("dtype", _i32), ("num_tokens", _i64), ("num_heads", _i32),
                ("head_dim", _i32), ("x", _vp), ("x_row_stride", _i64), ("out", _vp), ("out_row_stride", _i64),
                ("cos", _vp), ("sin", _vp),
                # added in 0.2
                ("rope_pairing", _i32), ("rotary_dim", _i32)]


class hope_attention_params_t(ctypes.Structure):
    _fields_ = [("backend", _i32), ("dtype", _i32), ("batch", _i32), ("num_q_heads", _i32),
                ("num_kv_heads", _i32), ("head_dim", _i32), ("cu_seqlens_q", _vp), ("cu_seqlens_k", _vp),
                ("max_seqlen_q", _i32), ("max_seqlen_k", _i32), ("q", _vp), ("k", _vp), ("v", _vp),
                ("out", _vp), ("lse", _vp), ("cos_q", _vp), ("sin_q", _vp), ("cos_k", _vp), ("sin_k", _vp),
                ("softmax_scale", _f32), ("causal", _i32),
                # added in 0.1
                ("q_row_stride", _i64), ("k_row_stride", _i64), ("v_row_stride", _i64), ("k_rotated", _vp),
                # added in 0.2
                ("rope_pairing", _i32), ("rotary_dim", _i32)]


class hope_paged_kv_t(ctypes.Structure):
    _fields_ = [("dtype", _i32), ("num_pages", _i32), ("page_size", _i32), ("num_kv_heads", _i32),
                ("head_dim", _i32), ("k_pages", _vp), ("v_pages", _vp)]


class hope_kv_append_params_t(ctypes.Structure):
    _fields_ = [("backend", _i32), ("cache", hope_paged_kv_t), ("num_tokens", _i64), ("k", _vp), ("v", _vp),
                ("k_row_stride", _i64), ("v_row_stride", _i64), ("slot_mapping", _vp), ("cos_k", _vp),
                ("sin_k", _vp),
                # added in 0.2
                ("rope_pairing", _i32), ("rotary_dim", _i32)]


class hope_decode_params_t(ctypes.Structure):
    _fields_ = [("backend", _i32), ("cache", hope_paged_kv_t), ("batch", _i32), ("num_q_heads", _i32),
                ("cu_seqlens_q", _vp), ("max_seqlen_q", _i32), ("seq_lens", _vp), ("max_seqlen_k", _i32),
                ("page_table", _vp), ("max_pages_per_seq", _i32), ("q", _vp), ("q_row_stride", _i64),
                ("out", _vp), ("lse", _vp), ("cos_q", _vp), ("sin_q", _vp), ("softmax_scale", _f32),
                ("causal", _i32), ("num_splits", _i32),
                # added in 0.2
                ("rope_pairing", _i32), ("rotary_dim", _i32)]


class hope_merge_params_t(ctypes.Structure):
    _fields_ = [("backend", _i32), ("dtype", _i32), ("num_tokens", _i64), ("num_heads", _i32),
                ("head_dim", _i32), ("o_a", _vp), ("o_b", _vp), ("lse_a", _vp), ("lse_b", _vp), ("out", _vp),
                ("lse_out", _vp)]


hope_rope_cache_t = _vp  # struct hope_rope_cache_s *

# ----------------------------------------------------------------------------------------------------------
# Prototypes: name -> (restype, argtypes). Every function of the header.
# ----------------------------------------------------------------------------------------------------------

_st = ctypes.c_int  # hope_status_t (a C enum: int)
_P = ctypes.POINTER
_PROTOTYPES = {
    "hope_status_string": (ctypes.c_char_p, [ctypes.c_int]),
    "hope_last_error": (ctypes.c_char_p, []),
    "hope_version": (ctypes.c_int, []),
    "hope_cuda_device_count": (_st, [_P(_i32)]),
    "hope_build_info": (_st, [_P(ctypes.c_char_p)]),
    "hope_positions_count": (_st, [_P(hope_segment_t), _i32, _P(_i64)]),
    "hope_positions_build": (_st, [_P(hope_segment_t), _i32, ctypes.c_int, _f32, _f32, _fp, _i64, _fp]),
    "hope_positions_build_ex": (_st, [_P(hope_positions_params_t), _P(hope_segment_t), _i32, _fp, _i64, _fp]),
    "hope_positions_generated": (_st, [_f32, _i64, _i64, _fp]),
    "hope_segment_from_vision_grid": (_st, [_i32, _i32, _i32, _i32, _i32, _f32, _P(hope_segment_t)]),
    "hope_segment_from_vision_grid_ex": (_st, [_i32, _i32, _i32, _i32, _i32, _i32, _f32, _P(hope_segment_t)]),
    "hope_temporal_scales_select": (_st, [_P(hope_scale_params_t), _P(hope_segment_t), _i32, _fp]),
    "hope_rope_components": (_st, [_P(hope_rope_config_t), _ip]),
    "hope_rope_cos_sin": (_st, [_P(hope_rope_config_t), _fp, _i64, _fp, _fp]),
    "hope_rope_cache_create": (_st, [_P(hope_rope_config_t), _i64, ctypes.c_int, _P(hope_rope_cache_t)]),
    "hope_rope_cache_fill": (_st, [hope_rope_cache_t, _i64, _vp, _i64, _i64, ctypes.c_int, _vp]),
    "hope_rope_cache_get": (_st, [hope_rope_cache_t, _P(_vp), _P(_vp), _P(_i64), _P(ctypes.c_int)]),
    "hope_rope_cache_destroy": (_st, [hope_rope_cache_t]),
    "hope_rope_apply": (_st, [_P(hope_rope_apply_params_t), _vp]),
    "hope_attention_forward": (_st, [_P(hope_attention_params_t), _vp]),
    "hope_attention_unfused_workspace_size": (_st, [_P(hope_attention_params_t), _P(ctypes.c_size_t)]),
    "hope_attention_forward_unfused": (_st, [_P(hope_attention_params_t), _vp, ctypes.c_size_t, _vp]),
    "hope_kv_append": (_st, [_P(hope_kv_append_params_t), _vp]),
    "hope_decode_workspace_size": (_st, [_P(hope_decode_params_t), _P(ctypes.c_size_t)]),
    "hope_decode_forward": (_st, [_P(hope_decode_params_t), _vp, ctypes.c_size_t, _vp]),
    "hope_merge_states": (_st, [_P(hope_merge_params_t), _vp]),
}

# ----------------------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------------------

_LIB_NAME = "libhope_attn.so"


def _candidates():
    env = os.environ.get("HOPE_ATTN_LIBRARY")
    if env:
        yield env  # an explicit choice: only this one
        return
    here = pathlib.Path(__file__).resolve().parent
    for name in (_LIB_NAME, _LIB_NAME + ".0"):
        p = here / name
        if p.exists():
            yield str(p)
    found = ctypes.util.find_library("hope_attn")
    if found:
        yield found
    yield _LIB_NAME  # the dynamic loader's search path (LD_LIBRARY_PATH, ldconfig cache, rpath)
    # Last resort for a source checkout: the build trees of run.sh / test.sh.
    repo = here.parent.parent
    for build in ("build", *sorted(p.name for p in repo.glob("build*") if p.is_dir())):
        p = repo / build / _LIB_NAME
        if p.exists():
            yield str(p)


_lock = threading.Lock()
_lib = None
_lib_path = None


def _load():
    global _lib, _lib_path
    with _lock:
        if _lib is not None:
            return _lib
        errors = []
        for cand in _candidates():
            try:
                handle = ctypes.CDLL(cand)
            except OSError as e:
                errors.append(f"{cand}: {e}")
                continue
            for name, (restype, argtypes) in _PROTOTYPES.items():
                fn = getattr(handle, name, None)
                if fn is not None:
                    fn.restype = restype
                    fn.argtypes = argtypes
            _lib, _lib_path = handle, cand
            return handle
        raise OSError("hope_attn: cannot load libhope_attn.so (pip install the repository, which builds it into "
                      "the package, or set HOPE_ATTN_LIBRARY to its path). Tried:\n  "
                      + "\n  ".join(errors))


class _LazyLib:
    """Loads the shared library on first use, so importing the package never fails."""

    def __getattr__(self, name):
        handle = _load()
        try:
            return getattr(handle, name)
        except AttributeError:
            raise HopeError(Status.ERROR_NOT_SUPPORTED,
                            f"{name} is not exported by {_lib_path} (an older build?)") from None


lib = _LazyLib()


def library_path() -> str:
    """The path of the loaded libhope_attn.so (loads it if needed)."""
    _load()
    return _lib_path


def has_function(name: str) -> bool:
    return getattr(_load(), name, None) is not None


# ----------------------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------------------


class HopeError(RuntimeError):
    """A hope_* call failed. .status is the Status, .status_name its hope_status_string, .message the
    library's hope_last_error() text."""

    def __init__(self, status, message: str, status_name: str | None = None):
        try:
            status = Status(int(status))
        except ValueError:
            status = int(status)
        self.status = status
        self.status_name = status_name or (f"HOPE_{status.name}" if isinstance(status, Status) else str(status))
        self.message = message
        super().__init__(f"{self.status_name}: {message}" if message else self.status_name)


def check(status: int, what: str = "") -> None:
    """Raises HopeError for a non-zero status, with the calling thread's hope_last_error() message."""
    if status == 0:
        return
    msg = lib.hope_last_error()
    msg = msg.decode("utf-8", "replace") if msg else ""
    name = lib.hope_status_string(status)
    name = name.decode() if name else str(status)
    if not msg and what:
        msg = what
    raise HopeError(status, msg, name)
