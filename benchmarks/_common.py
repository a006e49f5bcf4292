"""Shared pieces of the Python benchmarks (decode_bench.py, prefill_bench.py, cpu_bench.py): ctypes mirrors of
the params structs, finding and loading libhope_attn.so, turning a failing status into an exception, and NVTX
ranges."""
import ctypes
import os
import pathlib

REPO = pathlib.Path(__file__).resolve().parent.parent


# ---- ctypes mirrors of the params structs (include/hope_attn.h, version 0.2: every field, so the library never
# reads past the end of a struct built here; fields left unset are zero, which means the default) ----------------

class AttentionParams(ctypes.Structure):
    """Mirror of hope_attention_params_t."""
    _fields_ = [
        ("backend", ctypes.c_int32), ("dtype", ctypes.c_int32), ("batch", ctypes.c_int32),
        ("num_q_heads", ctypes.c_int32), ("num_kv_heads", ctypes.c_int32), ("head_dim", ctypes.c_int32),
        ("cu_seqlens_q", ctypes.c_void_p), ("cu_seqlens_k", ctypes.c_void_p),
        ("max_seqlen_q", ctypes.c_int32), ("max_seqlen_k", ctypes.c_int32),
        ("q", ctypes.c_void_p), ("k", ctypes.c_void_p), ("v", ctypes.c_void_p),
        ("out", ctypes.c_void_p), ("lse", ctypes.c_void_p),
        ("cos_q", ctypes.c_void_p), ("sin_q", ctypes.c_void_p), ("cos_k", ctypes.c_void_p), ("sin_k", ctypes.c_void_p),
        ("softmax_scale", ctypes.c_float), ("causal", ctypes.c_int32),
        ("q_row_stride", ctypes.c_int64), ("k_row_stride", ctypes.c_int64), ("v_row_stride", ctypes.c_int64),
        ("k_rotated", ctypes.c_void_p), ("rope_pairing", ctypes.c_int32), ("rotary_dim", ctypes.c_int32),
    ]


class RopeApplyParams(ctypes.Structure):
    """Mirror of hope_rope_apply_params_t."""
    _fields_ = [
        ("backend", ctypes.c_int32), ("dtype", ctypes.c_int32), ("num_tokens", ctypes.c_int64),
        ("num_heads", ctypes.c_int32), ("head_dim", ctypes.c_int32),
        ("x", ctypes.c_void_p), ("x_row_stride", ctypes.c_int64),
        ("out", ctypes.c_void_p), ("out_row_stride", ctypes.c_int64),
        ("cos", ctypes.c_void_p), ("sin", ctypes.c_void_p),
        ("rope_pairing", ctypes.c_int32), ("rotary_dim", ctypes.c_int32),
    ]


class PagedKV(ctypes.Structure):
    """Mirror of hope_paged_kv_t."""
    _fields_ = [
        ("dtype", ctypes.c_int32), ("num_pages", ctypes.c_int32), ("page_size", ctypes.c_int32),
        ("num_kv_heads", ctypes.c_int32), ("head_dim", ctypes.c_int32),
        ("k_pages", ctypes.c_void_p), ("v_pages", ctypes.c_void_p),
    ]


class DecodeParams(ctypes.Structure):
    """Mirror of hope_decode_params_t."""
    _fields_ = [
        ("backend", ctypes.c_int32), ("cache", PagedKV),
        ("batch", ctypes.c_int32), ("num_q_heads", ctypes.c_int32),
        ("cu_seqlens_q", ctypes.c_void_p), ("max_seqlen_q", ctypes.c_int32),
        ("seq_lens", ctypes.c_void_p), ("max_seqlen_k", ctypes.c_int32),
        ("page_table", ctypes.c_void_p), ("max_pages_per_seq", ctypes.c_int32),
        ("q", ctypes.c_void_p), ("q_row_stride", ctypes.c_int64),
        ("out", ctypes.c_void_p), ("lse", ctypes.c_void_p),
        ("cos_q", ctypes.c_void_p), ("sin_q", ctypes.c_void_p),
        ("softmax_scale", ctypes.c_float), ("causal", ctypes.c_int32), ("num_splits", ctypes.c_int32),
        ("rope_pairing", ctypes.c_int32), ("rotary_dim", ctypes.c_int32),
    ]


def find_library():
    """$HOPE_ATTN_LIBRARY, else build-gpu/ or build/ under the repository; None when none exists."""
    env = os.environ.get("HOPE_ATTN_LIBRARY")
    candidates = [pathlib.Path(env)] if env else []
    candidates += [REPO / "build-gpu" / "libhope_attn.so", REPO / "build" / "libhope_attn.so"]
    for c in candidates:
        if c.exists():
            return c
    return None


def load_library(path, functions):
    """The library at `path` with the status helpers declared and each (name, argtypes) of `functions`
    declared as returning hope_status_t (int)."""
    lib = ctypes.CDLL(str(path))
    lib.hope_last_error.restype = ctypes.c_char_p
    lib.hope_status_string.restype = ctypes.c_char_p
    lib.hope_status_string.argtypes = [ctypes.c_int]
    for name, args in functions:
        fn = getattr(lib, name)
        fn.restype = ctypes.c_int
        fn.argtypes = args
    return lib


def open_library(results, functions):
    """find_library + load_library; records the path in results["library"] or the reason in
    results["errors"], and returns the library or None."""
    lib_path = find_library()
    if lib_path is None:
        results["errors"].append("libhope_attn.so not found (set HOPE_ATTN_LIBRARY or build into build-gpu/)")
        return None
    try:
        lib = load_library(lib_path, functions)
    except (OSError, AttributeError) as e:
        results["errors"].append(f"cannot load {lib_path}: {e}")
        return None
    results["library"] = str(lib_path)
    return lib


def check(lib, status, what):
    if status != 0:
        raise RuntimeError(f"{what}: {lib.hope_status_string(status).decode()}: {lib.hope_last_error().decode()}")


class NvtxRange:
    """`with NvtxRange(torch, name):` pushes an NVTX range for the block (silently nothing without NVTX)."""

    def __init__(self, torch, name):
        self.torch, self.name = torch, name

    def __enter__(self):
        try:
            self.torch.cuda.nvtx.range_push(self.name)
        except Exception:  # noqa: BLE001
            pass

    def __exit__(self, *exc):
        try:
            self.torch.cuda.nvtx.range_pop()
        except Exception:  # noqa: BLE001
            pass
