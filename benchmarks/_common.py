"""Shared pieces of the Python benchmarks (decode_bench.py, prefill_bench.py): finding and loading
libhope_attn.so through ctypes, turning a failing status into an exception, and NVTX ranges."""
import ctypes
import os
import pathlib

REPO = pathlib.Path(__file__).resolve().parent.parent


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
