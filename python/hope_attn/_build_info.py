"""hope_attn.build_info(): how the loaded libhope_attn was built, what it finds on this machine, and, for a
package installed from a wheel, the build configuration the wheel recorded in its metadata."""

from __future__ import annotations

import ctypes
import json
import pathlib

from ._lib import check, lib, library_path

_WHEEL_BUILD_FILE = "hope_attn_build.json"  # written into the wheel's .dist-info by cmake/python_package.cmake


def _wheel_build() -> dict | None:
    """The wheel's recorded build (backends, CUDA version and architectures, build type) when this package was
    installed from a wheel, else None (a source checkout on PYTHONPATH)."""
    try:
        from importlib import metadata
        dist = metadata.distribution("hope_attn")
        here = pathlib.Path(__file__).resolve().parent
        if pathlib.Path(dist.locate_file("hope_attn")).resolve() != here:
            return None  # another copy is installed; this one was imported from elsewhere
        text = dist.read_text(_WHEEL_BUILD_FILE)
        return json.loads(text) if text else None
    except Exception:
        return None


def build_info() -> dict:
    """A dict of the library's hope_build_info() keys (all values are strings as the library reports them:
    version, cuda ("on"/"off"), cuda_version, cuda_architectures, cuda_devices, attention_families, nvtx,
    cpu_isa_paths, cpu_isa_selected, cpu_features, compiler, build_type, system, and any key a newer library
    adds), plus
    "library" (the path of the loaded libhope_attn.so) and "wheel" (the wheel's recorded build, or None)."""
    text = ctypes.c_char_p()
    check(lib.hope_build_info(ctypes.byref(text)))
    info = {}
    for line in (text.value or b"").decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            info[key] = value
    info["library"] = library_path()
    info["wheel"] = _wheel_build()
    return info
