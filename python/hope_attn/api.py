"""High-level functions over numpy (CPU backend) and CUDA arrays (PyTorch, CuPy, any __cuda_array_interface__)."""

from __future__ import annotations

import ctypes
import dataclasses
from typing import Iterable, Sequence

import numpy as np

from . import _lib
from ._arrays import (Arr, as_arr, empty_like_framework, host_int_array, is_device_array, parse_dtype,
                      to_device_like)
from ._lib import Backend, DType, Layout, Memory, RopeKind, ScalePolicy, SegmentKind, check, lib

_fp = ctypes.POINTER(ctypes.c_float)

# ----------------------------------------------------------------------------------------------------------
# Library facts
# ----------------------------------------------------------------------------------------------------------


def version() -> tuple:
    """The library's (major, minor, patch)."""
    v = int(lib.hope_version())
    return (v // 10000, (v // 100) % 100, v % 100)


def version_int() -> int:
    return int(lib.hope_version())


def cuda_device_count() -> int:
    n = ctypes.c_int32(0)
    check(lib.hope_cuda_device_count(ctypes.byref(n)))
    return int(n.value)


def status_string(status) -> str:
    return lib.hope_status_string(int(status)).decode()


def last_error() -> str:
    return lib.hope_last_error().decode("utf-8", "replace")


# ----------------------------------------------------------------------------------------------------------
# Segments and positions (SPEC §1)
# ----------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Segment:
    """One piece of a multimodal sequence: text(n), image(h, w) or video(t, h, w, scale)."""

    kind: SegmentKind
    length: int = 0
    grid_t: int = 1
    grid_h: int = 1
    grid_w: int = 1
    temporal_scale: float = 0.0

    @property
    def num_tokens(self) -> int:
        return self.length if self.kind == SegmentKind.TEXT else self.grid_t * self.grid_h * self.grid_w

    def to_c(self) -> _lib.hope_segment_t:
        return _lib.hope_segment_t(int(self.kind), int(self.length), int(self.grid_t), int(self.grid_h),
                                   int(self.grid_w), float(self.temporal_scale))


def text(n: int) -> Segment:
    return Segment(SegmentKind.TEXT, length=int(n), grid_t=0, grid_h=0, grid_w=0)


def image(h: int, w: int, scale: float = 0.0) -> Segment:
    return Segment(SegmentKind.IMAGE, grid_t=1, grid_h=int(h), grid_w=int(w), temporal_scale=float(scale))


def video(t: int, h: int, w: int, scale: float = 0.0) -> Segment:
    return Segment(SegmentKind.VIDEO, grid_t=int(t), grid_h=int(h), grid_w=int(w), temporal_scale=float(scale))


def segment_from_vision_grid(kind, grid_t: int, grid_h: int, grid_w: int, spatial_merge_size: int = 2,
                             temporal_scale: float = 0.0) -> Segment:
    """A segment from a vision encoder's raw patch grid (Qwen2-VL's grid_thw), divided by the merge size."""
    seg = _lib.hope_segment_t()
    check(lib.hope_segment_from_vision_grid(int(_segment_kind(kind)), int(grid_t), int(grid_h), int(grid_w),
                                            int(spatial_merge_size), float(temporal_scale), ctypes.byref(seg)))
    return _from_c(seg)


def _segment_kind(kind) -> SegmentKind:
    if isinstance(kind, str):
        try:
            return SegmentKind[kind.upper()]
        except KeyError:
            raise ValueError(f"unknown segment kind {kind!r}: use 'text', 'image' or 'video'") from None
    return SegmentKind(int(kind))


def as_segment(s) -> Segment:
    """Accepts a Segment, an int (text length), a tuple ("text", n) / ("image", h, w[, scale]) /
    ("video", t, h, w[, scale]), or a dict {"kind": ..., "length"/"t"/"h"/"w"/"grid_*"/"scale": ...}."""
    if isinstance(s, Segment):
        return s
    if isinstance(s, _lib.hope_segment_t):
        return _from_c(s)
    if isinstance(s, (int, np.integer)):
        return text(int(s))
    if isinstance(s, dict):
        kind = _segment_kind(s.get("kind", "text"))
        scale = float(s.get("scale", s.get("temporal_scale", 0.0)))
        if kind == SegmentKind.TEXT:
            return text(int(s.get("length", s.get("n", 0))))
        h = int(s.get("h", s.get("grid_h", 1)))
        w = int(s.get("w", s.get("grid_w", 1)))
        if kind == SegmentKind.IMAGE:
            return Segment(kind, grid_t=int(s.get("t", s.get("grid_t", 1))), grid_h=h, grid_w=w,
                           temporal_scale=scale)
        return video(int(s.get("t", s.get("grid_t", 1))), h, w, scale)
    if isinstance(s, (tuple, list)) and s:
        kind = _segment_kind(s[0])
        args = list(s[1:])
        if kind == SegmentKind.TEXT:
            if len(args) != 1:
                raise ValueError(f"text segment {s!r}: expected ('text', n)")
            return text(args[0])
        if kind == SegmentKind.IMAGE:
            if len(args) not in (2, 3):
                raise ValueError(f"image segment {s!r}: expected ('image', h, w[, scale])")
            return image(*args)
        if len(args) not in (3, 4):
            raise ValueError(f"video segment {s!r}: expected ('video', t, h, w[, scale])")
        return video(*args)
    raise TypeError(f"cannot turn {s!r} into a segment")


def _from_c(c: _lib.hope_segment_t) -> Segment:
    return Segment(SegmentKind(c.kind), c.length, c.grid_t, c.grid_h, c.grid_w, float(c.temporal_scale))


def _c_segments(segments: Iterable) -> tuple:
    segs = [as_segment(s) for s in segments]
    arr = (_lib.hope_segment_t * max(len(segs), 1))()
    for i, s in enumerate(segs):
        arr[i] = s.to_c()
    return segs, arr


def _layout(layout) -> Layout:
    if isinstance(layout, str):
        try:
            return Layout[layout.upper()]
        except KeyError:
            raise ValueError(f"unknown layout {layout!r}: use 'sequential', 'mrope' or 'diagonal'") from None
    return Layout(int(layout))


def num_tokens(segments) -> int:
    segs, arr = _c_segments(segments)
    n = ctypes.c_int64(0)
    check(lib.hope_positions_count(arr, len(segs), ctypes.byref(n)))
    return int(n.value)


def positions(segments, layout="diagonal", default_scale: float = 1.0, start: float = 0.0):
    """(t, h, w) positions of SPEC §1: returns (float32 array [3, n], next_position)."""
    segs, arr = _c_segments(segments)
    n = ctypes.c_int64(0)
    check(lib.hope_positions_count(arr, len(segs), ctypes.byref(n)))
    out = np.empty((3, n.value), dtype=np.float32)
    nxt = ctypes.c_float(0.0)
    check(lib.hope_positions_build(arr, len(segs), int(_layout(layout)), float(default_scale), float(start),
                                   out.ctypes.data_as(_fp), n.value, ctypes.byref(nxt)))
    return out, float(nxt.value)


def positions_generated(next_position: float, first: int, n: int) -> np.ndarray:
    """Positions [3, n] of generated tokens first .. first + n - 1."""
    out = np.empty((3, max(int(n), 0)), dtype=np.float32)
    check(lib.hope_positions_generated(float(next_position), int(first), int(n), out.ctypes.data_as(_fp)))
    return out


def _policy(policy) -> ScalePolicy:
    if isinstance(policy, str):
        try:
            return ScalePolicy[policy.upper()]
        except KeyError:
            raise ValueError(f"unknown scale policy {policy!r}: use 'fixed', 'random' or 'fit'") from None
    return ScalePolicy(int(policy))


def select_temporal_scales(segments, policy="fit", candidates: Sequence[float] | None = None,
                           fixed: float | None = None, seed: int = 0, budget: float | None = None,
                           start: float = 0.0):
    """Chooses each vision segment's temporal scale (SPEC §2). Returns (segments with their scales set, chosen):
    chosen is the one scale for fixed and fit, the first vision segment's draw for random."""
    pol = _policy(policy)
    segs, arr = _c_segments(segments)
    p = _lib.hope_scale_params_t()
    p.policy = int(pol)
    cand = None
    if candidates is not None:
        cand = np.ascontiguousarray(np.asarray(candidates, dtype=np.float32).reshape(-1))
        p.num_candidates = int(cand.size)
        p.candidates = cand.ctypes.data_as(_fp) if cand.size else None
    if pol == ScalePolicy.FIXED:
        if fixed is None:
            raise ValueError("select_temporal_scales: policy 'fixed' needs fixed=<scale>")
        p.fixed_scale = float(fixed)
    elif fixed is not None:
        p.fixed_scale = float(fixed)
    p.seed = int(seed) & 0xFFFFFFFFFFFFFFFF
    if pol == ScalePolicy.FIT:
        if budget is None:
            raise ValueError("select_temporal_scales: policy 'fit' needs budget=<largest next_position>")
        p.position_budget = float(budget)
    p.start = float(start)
    chosen = ctypes.c_float(0.0)
    check(lib.hope_temporal_scales_select(ctypes.byref(p), arr, len(segs), ctypes.byref(chosen)))
    del cand
    return [_from_c(arr[i]) for i in range(len(segs))], float(chosen.value)


# ----------------------------------------------------------------------------------------------------------
# Frequencies, cos/sin (SPEC §3)
# ----------------------------------------------------------------------------------------------------------


def _rope_kind(kind) -> RopeKind:
    if isinstance(kind, str):
        try:
            return RopeKind[kind.upper().replace("-", "_")]
        except KeyError:
            raise ValueError(f"unknown rope kind {kind!r}: use vanilla, mrope, mrope_interleaved, videorope "
                             "or hope") from None
    return RopeKind(int(kind))


def default_sections(head_dim: int) -> tuple:
    """Qwen2-VL's split generalised: (st, sh, sw) with sh = sw = 3/8 of the pairs; (16, 24, 24) for d = 128."""
    half = int(head_dim) // 2
    sh = (3 * half) // 8
    return (half - 2 * sh, sh, sh)


@dataclasses.dataclass
class RopeConfig:
    kind: RopeKind = RopeKind.HOPE
    head_dim: int = 128
    sections: tuple | None = None  # None: default_sections(head_dim) (unused by vanilla)
    theta: float = 1e6

    def to_c(self) -> _lib.hope_rope_config_t:
        c = _lib.hope_rope_config_t()
        c.kind = int(_rope_kind(self.kind))
        c.head_dim = int(self.head_dim)
        sec = self.sections
        if sec is None:
            sec = (0, 0, 0) if _rope_kind(self.kind) == RopeKind.VANILLA else default_sections(self.head_dim)
        if len(sec) != 3:
            raise ValueError(f"sections must be (st, sh, sw), got {sec!r}")
        for i in range(3):
            c.sections[i] = int(sec[i])
        c.theta = float(self.theta)
        return c


def rope_config(config=None, *, kind=None, head_dim=None, sections=None, theta=None) -> RopeConfig:
    """A RopeConfig from a RopeConfig, a dict, a kind (name or RopeKind) plus keywords, or keywords alone."""
    if isinstance(config, RopeConfig):
        base = dataclasses.replace(config)
    elif isinstance(config, dict):
        base = RopeConfig(**config)
    elif config is None:
        base = RopeConfig()
    else:
        base = RopeConfig(kind=_rope_kind(config))
    if kind is not None:
        base.kind = _rope_kind(kind)
    if head_dim is not None:
        base.head_dim = int(head_dim)
    if sections is not None:
        base.sections = tuple(int(s) for s in sections)
    if theta is not None:
        base.theta = float(theta)
    base.kind = _rope_kind(base.kind)
    return base


def rope_components(config=None, **kw) -> np.ndarray:
    """c(i) for each rotary pair: 0 = t, 1 = h, 2 = w, -1 = none (zero frequency)."""
    cfg = rope_config(config, **kw)
    c = cfg.to_c()
    out = np.empty(max(cfg.head_dim // 2, 1), dtype=np.int32)
    check(lib.hope_rope_components(ctypes.byref(c), out.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))))
    return out[: cfg.head_dim // 2]


def cos_sin(config=None, positions=None, *, kind=None, head_dim=None, sections=None, theta=None):
    """Host cos/sin tables of SPEC §3: returns (cos, sin), float32 [n, head_dim/2]. positions: [3, n] (or [n]
    for 1-D positions, used on all three rows)."""
    if positions is None:
        raise ValueError("cos_sin: positions are required")
    cfg = rope_config(config, kind=kind, head_dim=head_dim, sections=sections, theta=theta)
    c = cfg.to_c()
    pos = np.asarray(positions, dtype=np.float32)
    if pos.ndim == 1:
        pos = np.broadcast_to(pos, (3, pos.shape[0]))
    if pos.ndim != 2 or pos.shape[0] != 3:
        raise ValueError(f"cos_sin: positions must be [3, n] (or [n]), got shape {pos.shape}")
    pos = np.ascontiguousarray(pos)
    n = pos.shape[1]
    half = max(cfg.head_dim // 2, 0)
    cos = np.empty((n, half), dtype=np.float32)
    sin = np.empty((n, half), dtype=np.float32)
    check(lib.hope_rope_cos_sin(ctypes.byref(c), pos.ctypes.data_as(_fp), n, cos.ctypes.data_as(_fp),
                                sin.ctypes.data_as(_fp)))
    return cos, sin


class _DeviceView:
    """A float32 [rows, cols] view of device memory owned by someone else, with __cuda_array_interface__."""

    def __init__(self, ptr: int, rows: int, cols: int, owner):
        self._owner = owner
        self.ptr, self.shape = int(ptr), (int(rows), int(cols))
        self.__cuda_array_interface__ = {"shape": self.shape, "typestr": "<f4", "data": (self.ptr, False),
                                         "strides": None, "version": 3, "stream": None}


class RopeCache:
    """hope_rope_cache_t: cos/sin tables for `capacity` tokens on the host or the current CUDA device.
    .cos / .sin: numpy arrays (host cache) or __cuda_array_interface__ views (device cache) [capacity, d/2]."""

    def __init__(self, config=None, capacity: int = 1, memory="host", **kw):
        self.config = rope_config(config, **kw)
        mem = Memory[memory.upper()] if isinstance(memory, str) else Memory(int(memory))
        c = self.config.to_c()
        handle = ctypes.c_void_p(None)
        check(lib.hope_rope_cache_create(ctypes.byref(c), int(capacity), int(mem), ctypes.byref(handle)))
        self._handle = handle
        cos_p, sin_p = ctypes.c_void_p(), ctypes.c_void_p()
        cap, where = ctypes.c_int64(0), ctypes.c_int(0)
        check(lib.hope_rope_cache_get(handle, ctypes.byref(cos_p), ctypes.byref(sin_p), ctypes.byref(cap),
                                      ctypes.byref(where)))
        self.capacity, self.memory = int(cap.value), Memory(where.value)
        half = self.config.head_dim // 2
        if self.memory == Memory.HOST:
            self.cos = self._host_view(cos_p.value, half)
            self.sin = self._host_view(sin_p.value, half)
        else:
            self.cos = _DeviceView(cos_p.value, self.capacity, half, self)
            self.sin = _DeviceView(sin_p.value, self.capacity, half, self)

    def _host_view(self, ptr: int, half: int) -> np.ndarray:
        # The numpy view keeps this cache alive (through its ctypes base), so the table cannot dangle.
        buf = (ctypes.c_float * (self.capacity * half)).from_address(ptr)
        buf._owner = self
        return np.frombuffer(buf, dtype=np.float32).reshape(self.capacity, half)

    def fill(self, positions, offset: int = 0, stream=None):
        """Fills rows [offset, offset + n) from positions [3, n] (numpy, or a device array)."""
        if is_device_array(positions):
            a = as_arr(positions, "positions")
            if a.kind != "f4" or a.ndim != 2 or a.shape[0] != 3 or a.strides[1] != 1:
                raise ValueError("RopeCache.fill: device positions must be float32 [3, n] with packed rows")
            n, ld, mem = a.shape[1], a.strides[0], Memory.DEVICE
            ptr, keep = a.ptr, a
            stream = _stream_of(stream, [a])
        else:
            pos = np.ascontiguousarray(np.asarray(positions, dtype=np.float32))
            if pos.ndim != 2 or pos.shape[0] != 3:
                raise ValueError(f"RopeCache.fill: positions must be [3, n], got shape {pos.shape}")
            n, ld, mem, ptr, keep = pos.shape[1], pos.shape[1], Memory.HOST, pos.ctypes.data, pos
            stream = _stream_value(stream)
        check(lib.hope_rope_cache_fill(self._handle, int(offset), ptr, int(n), int(ld), int(mem), stream))
        del keep
        return self

    def close(self):
        if getattr(self, "_handle", None) is not None and self._handle.value:
            h, self._handle = self._handle, None
            check(lib.hope_rope_cache_destroy(h))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


# ----------------------------------------------------------------------------------------------------------
# Shared plumbing for the tensor calls
# ----------------------------------------------------------------------------------------------------------


def _stream_value(stream):
    """A cudaStream_t as an int (or None) from an int, a torch / cupy stream object, or None."""
    if stream is None:
        return None
    if isinstance(stream, (int, np.integer)):
        return int(stream) or None
    for attr in ("cuda_stream", "ptr", "handle"):
        v = getattr(stream, attr, None)
        if v is not None:
            return int(v) or None
    raise TypeError(f"cannot take a CUDA stream from {stream!r}")


def _stream_of(stream, arrs: Sequence[Arr]):
    """The explicit stream, else an input's interface "stream" entry, else torch's current stream for torch
    inputs, else NULL (the legacy default stream)."""
    if stream is not None:
        return _stream_value(stream)
    for a in arrs:
        if a is not None and a.stream is not None:
            return a.stream or None
    for a in arrs:
        if a is not None and a.framework == "torch" and a.device:
            import torch

            return int(torch.cuda.current_stream(a.obj.device).cuda_stream) or None
        if a is not None and a.framework == "cupy":
            import cupy

            return int(cupy.cuda.get_current_stream().ptr) or None
    return None


def _backend_for(backend, arrs: Sequence[Arr], what: str) -> Backend:
    devs = {a.device for a in arrs if a is not None}
    if len(devs) > 1:
        raise ValueError(f"{what}: mixes host (numpy) and device arrays; give all of them on one side")
    on_device = devs == {True}
    if backend is None:
        return Backend.CUDA if on_device else Backend.CPU
    b = Backend[backend.upper()] if isinstance(backend, str) else Backend(int(backend))
    if (b == Backend.CUDA) != on_device:
        raise ValueError(f"{what}: backend {b.name.lower()} needs {'device' if b == Backend.CUDA else 'host'} "
                         "arrays")
    return b


def _float_input(obj, name, dtype_hint, want_ndim=None) -> Arr:
    a = as_arr(obj, name, hint=dtype_hint)
    if want_ndim is not None and a.ndim != want_ndim:
        raise ValueError(f"{name}: expected {want_ndim} dimensions, got shape {a.shape}")
    return a


def _table(obj, name, rows, half, device) -> Arr | None:
    """A cos/sin table: float32 [rows, half] packed (host numpy copies are made as needed)."""
    if obj is None:
        return None
    if device:
        a = as_arr(obj, name)
    else:
        a = as_arr(np.ascontiguousarray(np.asarray(obj, dtype=np.float32)), name)
    if a.kind != "f4":
        raise ValueError(f"{name}: must be float32, got {a.kind}")
    if a.ndim != 2 or a.shape[1] != half or a.shape[0] < rows:
        raise ValueError(f"{name}: expected float32 [{rows}, {half}], got shape {a.shape}")
    if not a.contiguous():
        raise ValueError(f"{name}: must be packed (C-contiguous)")
    return a


def _packed_rows(a: Arr, name: str, inner: int) -> Arr:
    """For [tokens, heads, d] (inner = 2) or [tokens, d] (inner = 1): the inner dims must be packed."""
    extent = 1
    for dim in a.shape[1:]:
        extent *= dim
    rows_ok = a.ndim == 0 or a.shape[0] <= 1 or a.strides[0] >= extent  # no overlap, no broadcast, no reversal
    if not a.inner_contiguous(inner) or not rows_ok:
        if a.framework == "numpy":
            return as_arr(np.ascontiguousarray(a.obj), name, hint=DType.BFLOAT16 if a.kind == "bf16" else None)
        raise ValueError(f"{name}: the heads and head_dim dimensions must be packed, and tokens must be at least "
                         "heads * head_dim elements apart")
    return a


def _row_stride(a: Arr) -> int:
    return int(a.strides[0]) if a.ndim and a.shape[0] > 1 else 0


def _ptr(a: Arr | None):
    return None if a is None else (a.ptr or None)


# ----------------------------------------------------------------------------------------------------------
# Rotation (SPEC §4)
# ----------------------------------------------------------------------------------------------------------


def rope_apply(x, cos, sin, out=None, *, dtype=None, stream=None, backend=None):
    """Rotates x [tokens, heads, d] (or [tokens, d]) by its token's cos/sin [tokens, d/2]; returns out.
    numpy inputs run on the CPU backend; CUDA arrays (torch, cupy, __cuda_array_interface__) on the GPU.
    dtype="bfloat16" marks a uint16 array as bfloat16 bits. out may be x (in place)."""
    hint = parse_dtype(dtype)
    xa = _float_input(x, "x", hint)
    if xa.ndim not in (2, 3):
        raise ValueError(f"x: expected [tokens, heads, head_dim] or [tokens, head_dim], got shape {xa.shape}")
    inner = xa.ndim - 1
    xa = _packed_rows(xa, "x", inner)
    dt = xa.dtype if hint is None else hint
    tokens, d = xa.shape[0], xa.shape[-1]
    heads = xa.shape[1] if xa.ndim == 3 else 1
    ca = _table(cos, "cos", tokens, d // 2, xa.device)
    sa = _table(sin, "sin", tokens, d // 2, xa.device)
    if out is None:
        out = empty_like_framework(xa, xa.shape, xa.kind, "out")
    oa = as_arr(out, "out", hint=dt)
    if oa.shape != xa.shape or oa.kind != xa.kind:
        raise ValueError(f"out: expected shape {xa.shape} and the dtype of x, got {oa.shape} {oa.kind}")
    if not oa.inner_contiguous(inner) or (oa.shape[0] > 1 and oa.strides[0] < heads * d):
        raise ValueError("out: the heads and head_dim dimensions must be packed, tokens heads * head_dim apart")
    be = _backend_for(backend, [xa, ca, sa, oa], "rope_apply")
    p = _lib.hope_rope_apply_params_t()
    p.backend, p.dtype, p.num_tokens, p.num_heads, p.head_dim = int(be), int(dt), tokens, heads, d
    p.x, p.x_row_stride = _ptr(xa), _row_stride(xa)
    p.out, p.out_row_stride = _ptr(oa), _row_stride(oa)
    p.cos, p.sin = _ptr(ca), _ptr(sa)
    st = _stream_of(stream, [xa, oa]) if be == Backend.CUDA else None
    check(lib.hope_rope_apply(ctypes.byref(p), st))
    return out


# ----------------------------------------------------------------------------------------------------------
# Attention (SPEC §5)
# ----------------------------------------------------------------------------------------------------------


def _cu_seqlens(obj, name, total, ref: Arr, device: bool):
    """(Arr on the right side, host numpy copy or None) for a cu_seqlens argument (None: one sequence)."""
    if obj is None:
        host = np.array([0, total], dtype=np.int32)
        return (as_arr(to_device_like(ref, host, name), name) if device else as_arr(host, name)), host
    if device:
        if is_device_array(obj):
            a = as_arr(obj, name)
            return a, host_int_array(obj, name, np.int32)
        host = np.ascontiguousarray(np.asarray(obj, dtype=np.int32))
        return as_arr(to_device_like(ref, host, name), name), host
    if is_device_array(obj):
        raise ValueError(f"{name}: must be a host array for the CPU backend")
    host = np.ascontiguousarray(np.asarray(obj, dtype=np.int32).reshape(-1))
    return as_arr(host, name), host


def _max_len(host, given, name):
    if given is not None:
        return int(given)
    if host is None:
        raise ValueError(f"{name}: cannot be derived from device cu_seqlens of this array type; pass it")
    return int(np.max(np.diff(host))) if host.size > 1 else 0


def attention(q, k, v, cu_seqlens_q=None, cu_seqlens_k=None, *, causal: bool = False, cos_q=None, sin_q=None,
              cos_k=None, sin_k=None, softmax_scale: float | None = None, return_lse: bool = False,
              max_seqlen_q: int | None = None, max_seqlen_k: int | None = None, out=None, lse=None,
              k_rotated=None, dtype=None, stream=None, backend=None, unfused: bool = False):
    """Varlen attention with rotary embedding fused in (SPEC §5).

    q [total_q, Hq, d], k and v [total_k, Hk, d]; cu_seqlens_* [batch + 1] int32 (None: one sequence).
    cos_q/sin_q [total_q, d/2], cos_k/sin_k [total_k, d/2] float32, or None to use q / k as given.
    Returns out [total_q, Hq, d], or (out, lse [Hq, total_q] float32) with return_lse=True.
    numpy inputs run on the CPU backend; CUDA arrays on the GPU (the fused kernel, or with unfused=True the
    cuBLAS reference path, which allocates its workspace through the input's framework)."""
    hint = parse_dtype(dtype)
    qa = _packed_rows(_float_input(q, "q", hint, 3), "q", 2)
    ka = _packed_rows(_float_input(k, "k", hint, 3), "k", 2)
    va = _packed_rows(_float_input(v, "v", hint, 3), "v", 2)
    if not (qa.kind == ka.kind == va.kind):
        raise ValueError(f"q, k, v must share one dtype, got {qa.kind}, {ka.kind}, {va.kind}")
    dt = qa.dtype if hint is None else hint
    total_q, hq, d = qa.shape
    total_k, hk = ka.shape[0], ka.shape[1]
    if va.shape[:2] != (total_k, hk) or ka.shape[2] != d or va.shape[2] != d:
        raise ValueError(f"k {ka.shape} and v {va.shape} must both be [total_k, Hk, {d}]")
    device = qa.device
    cqa, cq_host = _cu_seqlens(cu_seqlens_q, "cu_seqlens_q", total_q, qa, device)
    cka, ck_host = _cu_seqlens(cu_seqlens_k, "cu_seqlens_k", total_k, qa, device)
    batch = cqa.size - 1
    if cka.size != cqa.size:
        raise ValueError(f"cu_seqlens_q has {cqa.size} entries and cu_seqlens_k {cka.size}: both need batch + 1")
    if cqa.kind != "i4" or cka.kind != "i4":
        raise ValueError("cu_seqlens must be int32")
    # The C call cannot see the arrays' lengths: make sure the sequences stay inside them.
    for host, total, name in ((cq_host, total_q, "cu_seqlens_q"), (ck_host, total_k, "cu_seqlens_k")):
        if host is not None and host.size and int(host[-1]) > total:
            raise ValueError(f"{name}: its last entry {int(host[-1])} exceeds the {total} tokens given")
    half = d // 2
    tq = [_table(t, n, total_q, half, device) for t, n in ((cos_q, "cos_q"), (sin_q, "sin_q"))]
    tk = [_table(t, n, total_k, half, device) for t, n in ((cos_k, "cos_k"), (sin_k, "sin_k"))]
    if out is None:
        out = empty_like_framework(qa, (total_q, hq, d), qa.kind, "out")
    oa = as_arr(out, "out", hint=dt)
    if oa.shape != (total_q, hq, d) or oa.kind != qa.kind or not oa.contiguous():
        raise ValueError(f"out: expected packed [{total_q}, {hq}, {d}] in the dtype of q, got {oa.shape} {oa.kind}")
    la = None
    if return_lse or lse is not None:
        if lse is None:
            lse = empty_like_framework(qa, (hq, total_q), "f4", "lse")
        la = as_arr(lse, "lse")
        if la.shape != (hq, total_q) or la.kind != "f4" or not la.contiguous():
            raise ValueError(f"lse: expected packed float32 [{hq}, {total_q}], got {la.shape} {la.kind}")
    kra = None
    if k_rotated is not None:
        kra = as_arr(k_rotated, "k_rotated", hint=dt)
        if kra.shape != (total_k, hk, d) or kra.kind != ka.kind or not kra.contiguous():
            raise ValueError(f"k_rotated: expected packed [{total_k}, {hk}, {d}] in the dtype of k")
    be = _backend_for(backend, [qa, ka, va, oa, la, kra, cqa, cka, *tq, *tk], "attention")

    p = _lib.hope_attention_params_t()
    p.backend, p.dtype = int(be), int(dt)
    p.batch, p.num_q_heads, p.num_kv_heads, p.head_dim = batch, hq, hk, d
    p.cu_seqlens_q, p.cu_seqlens_k = _ptr(cqa), _ptr(cka)
    p.max_seqlen_q = _max_len(cq_host, max_seqlen_q, "max_seqlen_q")
    p.max_seqlen_k = _max_len(ck_host, max_seqlen_k, "max_seqlen_k")
    p.q, p.k, p.v, p.out, p.lse = _ptr(qa), _ptr(ka), _ptr(va), _ptr(oa), _ptr(la)
    p.cos_q, p.sin_q, p.cos_k, p.sin_k = _ptr(tq[0]), _ptr(tq[1]), _ptr(tk[0]), _ptr(tk[1])
    p.softmax_scale = 0.0 if softmax_scale is None else float(softmax_scale)
    p.causal = 1 if causal else 0
    p.q_row_stride, p.k_row_stride, p.v_row_stride = _row_stride(qa), _row_stride(ka), _row_stride(va)
    p.k_rotated = _ptr(kra)
    st = _stream_of(stream, [qa, ka, va, oa]) if be == Backend.CUDA else None
    if unfused:
        if be != Backend.CUDA:
            raise ValueError("attention: unfused=True is the GPU reference path; it needs device arrays")
        size = ctypes.c_size_t(0)
        check(lib.hope_attention_unfused_workspace_size(ctypes.byref(p), ctypes.byref(size)))
        ws = empty_like_framework(qa, (max(int(size.value), 1),), "u1", "workspace")
        wa = as_arr(ws, "workspace")
        check(lib.hope_attention_forward_unfused(ctypes.byref(p), _ptr(wa), int(size.value), st))
    else:
        check(lib.hope_attention_forward(ctypes.byref(p), st))
    return (out, lse) if return_lse else out


# ----------------------------------------------------------------------------------------------------------
# Serving: merge, paged KV append, decode
# ----------------------------------------------------------------------------------------------------------


def merge_states(o_a, lse_a, o_b, lse_b, out=None, lse_out=None, *, return_lse: bool = True, dtype=None,
                 stream=None, backend=None):
    """Merges two partial attention states over disjoint key sets. o_*: [tokens, heads, d]; lse_*: float32
    [heads, tokens]. Returns (out, lse) (or out alone with return_lse=False)."""
    hint = parse_dtype(dtype)
    aa = _packed_rows(_float_input(o_a, "o_a", hint, 3), "o_a", 3)
    ba = _packed_rows(_float_input(o_b, "o_b", hint, 3), "o_b", 3)
    if aa.shape != ba.shape or aa.kind != ba.kind:
        raise ValueError(f"o_a {aa.shape} and o_b {ba.shape} must match in shape and dtype")
    dt = aa.dtype if hint is None else hint
    tokens, heads, d = aa.shape
    dev = aa.device

    def lse_in(obj, name):
        a = as_arr(obj, name) if dev else as_arr(np.ascontiguousarray(np.asarray(obj, np.float32)), name)
        if a.shape != (heads, tokens) or a.kind != "f4" or not a.contiguous():
            raise ValueError(f"{name}: expected packed float32 [{heads}, {tokens}], got {a.shape} {a.kind}")
        return a

    la, lb = lse_in(lse_a, "lse_a"), lse_in(lse_b, "lse_b")
    if out is None:
        out = empty_like_framework(aa, aa.shape, aa.kind, "out")
    oa = as_arr(out, "out", hint=dt)
    if oa.shape != aa.shape or oa.kind != aa.kind or not oa.contiguous():
        raise ValueError("out: expected a packed array like o_a")
    loa = None
    if return_lse or lse_out is not None:
        if lse_out is None:
            lse_out = empty_like_framework(aa, (heads, tokens), "f4", "lse_out")
        loa = lse_in(lse_out, "lse_out") if dev else as_arr(lse_out, "lse_out")
        if loa.shape != (heads, tokens) or loa.kind != "f4":
            raise ValueError(f"lse_out: expected float32 [{heads}, {tokens}]")
    be = _backend_for(backend, [aa, ba, la, lb, oa, loa], "merge_states")
    p = _lib.hope_merge_params_t()
    p.backend, p.dtype, p.num_tokens, p.num_heads, p.head_dim = int(be), int(dt), tokens, heads, d
    p.o_a, p.o_b, p.lse_a, p.lse_b, p.out, p.lse_out = _ptr(aa), _ptr(ba), _ptr(la), _ptr(lb), _ptr(oa), _ptr(loa)
    st = _stream_of(stream, [aa, ba, oa]) if be == Backend.CUDA else None
    check(lib.hope_merge_states(ctypes.byref(p), st))
    return (out, lse_out) if return_lse else out


def _paged(k_pages, v_pages, hint) -> tuple:
    kp = as_arr(k_pages, "k_pages", hint=hint)
    vp = as_arr(v_pages, "v_pages", hint=hint)
    if kp.ndim != 4 or vp.shape != kp.shape or vp.kind != kp.kind or not kp.contiguous() or not vp.contiguous():
        raise ValueError(f"k_pages {kp.shape} and v_pages {vp.shape}: expected packed "
                         "[num_pages, page_size, num_kv_heads, head_dim] of one dtype")
    c = _lib.hope_paged_kv_t()
    c.dtype = int(kp.dtype if hint is None else hint)
    c.num_pages, c.page_size, c.num_kv_heads, c.head_dim = kp.shape
    c.k_pages, c.v_pages = _ptr(kp), _ptr(vp)
    return c, kp, vp


def kv_append(k_pages, v_pages, k, v, slot_mapping, cos_k=None, sin_k=None, *, dtype=None, stream=None,
              backend=None):
    """Rotates new keys (when cos_k/sin_k are given) and writes keys and values into their paged-cache slots.
    k_pages, v_pages: [num_pages, page_size, Hk, d]; k, v: [tokens, Hk, d]; slot_mapping: int64 [tokens]
    (negative: skip). Writes the pages in place and returns (k_pages, v_pages)."""
    hint = parse_dtype(dtype)
    cache, kp, vp = _paged(k_pages, v_pages, hint)
    ka = _packed_rows(_float_input(k, "k", hint, 3), "k", 2)
    va = _packed_rows(_float_input(v, "v", hint, 3), "v", 2)
    tokens = ka.shape[0]
    if va.shape[0] != tokens:
        raise ValueError(f"k has {tokens} tokens and v {va.shape[0]}")
    dev = kp.device
    if dev:
        sm = slot_mapping if is_device_array(slot_mapping) else to_device_like(
            kp, np.ascontiguousarray(np.asarray(slot_mapping, np.int64)), "slot_mapping")
        sa = as_arr(sm, "slot_mapping")
    else:
        sa = as_arr(np.ascontiguousarray(np.asarray(slot_mapping, dtype=np.int64).reshape(-1)), "slot_mapping")
    if sa.kind != "i8" or sa.size != tokens:
        raise ValueError(f"slot_mapping: expected int64 [{tokens}]")
    half = cache.head_dim // 2
    ca, sna = _table(cos_k, "cos_k", tokens, half, dev), _table(sin_k, "sin_k", tokens, half, dev)
    be = _backend_for(backend, [kp, vp, ka, va, sa, ca, sna], "kv_append")
    p = _lib.hope_kv_append_params_t()
    p.backend, p.cache, p.num_tokens = int(be), cache, tokens
    p.k, p.v, p.k_row_stride, p.v_row_stride = _ptr(ka), _ptr(va), _row_stride(ka), _row_stride(va)
    p.slot_mapping, p.cos_k, p.sin_k = _ptr(sa), _ptr(ca), _ptr(sna)
    st = _stream_of(stream, [kp, ka, va]) if be == Backend.CUDA else None
    check(lib.hope_kv_append(ctypes.byref(p), st))
    return k_pages, v_pages


def decode(q, k_pages, v_pages, cu_seqlens_q, seq_lens, page_table, *, cos_q=None, sin_q=None,
           causal: bool = True, softmax_scale: float | None = None, return_lse: bool = False,
           max_seqlen_q: int | None = None, max_seqlen_k: int | None = None, num_splits: int = 0, out=None,
           lse=None, dtype=None, stream=None, backend=None):
    """Attention of 1..8 new query tokens per sequence over its pages (decode / speculative decoding).
    q [total_q, Hq, d]; cu_seqlens_q [batch + 1] and seq_lens [batch] int32; page_table int32
    [batch, max_pages_per_seq]. The workspace is allocated here. Returns out (and lse with return_lse)."""
    hint = parse_dtype(dtype)
    cache, kp, vp = _paged(k_pages, v_pages, hint)
    qa = _packed_rows(_float_input(q, "q", hint, 3), "q", 2)
    dt = qa.dtype if hint is None else hint
    total_q, hq, d = qa.shape
    dev = qa.device
    cqa, cq_host = _cu_seqlens(cu_seqlens_q, "cu_seqlens_q", total_q, qa, dev)
    batch = cqa.size - 1
    if dev and not is_device_array(seq_lens):
        sl_host = np.ascontiguousarray(np.asarray(seq_lens, np.int32).reshape(-1))
        sla = as_arr(to_device_like(qa, sl_host, "seq_lens"), "seq_lens")
    elif dev:
        sla, sl_host = as_arr(seq_lens, "seq_lens"), host_int_array(seq_lens, "seq_lens", np.int32)
    else:
        sl_host = np.ascontiguousarray(np.asarray(seq_lens, np.int32).reshape(-1))
        sla = as_arr(sl_host, "seq_lens")
    if dev and not is_device_array(page_table):
        pta = as_arr(to_device_like(qa, np.ascontiguousarray(np.asarray(page_table, np.int32)), "page_table"),
                     "page_table")
    elif dev:
        pta = as_arr(page_table, "page_table")
    else:
        pta = as_arr(np.ascontiguousarray(np.asarray(page_table, np.int32)), "page_table")
    if pta.ndim == 1:
        pta.shape, pta.strides = (1, pta.shape[0]), (pta.shape[0], 1)
    if pta.kind != "i4" or pta.ndim != 2 or not pta.contiguous():
        raise ValueError("page_table: expected packed int32 [batch, max_pages_per_seq]")
    if sla.kind != "i4" or sla.size != batch:
        raise ValueError(f"seq_lens: expected int32 [{batch}]")
    half = d // 2
    ca, sa = _table(cos_q, "cos_q", total_q, half, dev), _table(sin_q, "sin_q", total_q, half, dev)
    if out is None:
        out = empty_like_framework(qa, (total_q, hq, d), qa.kind, "out")
    oa = as_arr(out, "out", hint=dt)
    if oa.shape != (total_q, hq, d) or oa.kind != qa.kind or not oa.contiguous():
        raise ValueError(f"out: expected packed [{total_q}, {hq}, {d}] in the dtype of q")
    la = None
    if return_lse or lse is not None:
        if lse is None:
            lse = empty_like_framework(qa, (hq, total_q), "f4", "lse")
        la = as_arr(lse, "lse")
    be = _backend_for(backend, [qa, kp, vp, cqa, sla, pta, ca, sa, oa, la], "decode")
    p = _lib.hope_decode_params_t()
    p.backend, p.cache, p.batch, p.num_q_heads = int(be), cache, batch, hq
    p.cu_seqlens_q = _ptr(cqa)
    p.max_seqlen_q = _max_len(cq_host, max_seqlen_q, "max_seqlen_q")
    p.seq_lens = _ptr(sla)
    if max_seqlen_k is None:
        if sl_host is None:
            raise ValueError("max_seqlen_k: pass it (seq_lens live on the device)")
        max_seqlen_k = int(sl_host.max()) if sl_host.size else 0
    p.max_seqlen_k = int(max_seqlen_k)
    p.page_table, p.max_pages_per_seq = _ptr(pta), int(pta.shape[1])
    p.q, p.q_row_stride, p.out, p.lse = _ptr(qa), _row_stride(qa), _ptr(oa), _ptr(la)
    p.cos_q, p.sin_q = _ptr(ca), _ptr(sa)
    p.softmax_scale = 0.0 if softmax_scale is None else float(softmax_scale)
    p.causal, p.num_splits = 1 if causal else 0, int(num_splits)
    size = ctypes.c_size_t(0)
    check(lib.hope_decode_workspace_size(ctypes.byref(p), ctypes.byref(size)))
    ws, wa = None, None
    if size.value:
        ws = empty_like_framework(qa, (int(size.value),), "u1", "workspace")
        wa = as_arr(ws, "workspace")
    st = _stream_of(stream, [qa, kp, oa]) if be == Backend.CUDA else None
    check(lib.hope_decode_forward(ctypes.byref(p), _ptr(wa), int(size.value), st))
    del ws
    return (out, lse) if return_lse else out


__all__ = [
    "version", "version_int", "cuda_device_count", "status_string", "last_error", "Segment", "text", "image",
    "video", "as_segment", "segment_from_vision_grid", "num_tokens", "positions", "positions_generated",
    "select_temporal_scales", "RopeConfig", "rope_config", "default_sections", "rope_components", "cos_sin",
    "RopeCache", "rope_apply", "attention", "merge_states", "kv_append", "decode",
]
