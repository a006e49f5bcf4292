"""High-level functions over numpy (CPU backend) and CUDA arrays (PyTorch, CuPy, any __cuda_array_interface__).

Every function checks all of its arguments through _args.py before it calls the library: scalars are
range-checked into their C types, and each array argument is described once, in the Signature beside the
function (_ROPE_APPLY, _ATTENTION, ...), and verified by _args.check."""

from __future__ import annotations

import ctypes
import dataclasses
from typing import Iterable, Sequence

import numpy as np

from . import _lib
from ._args import (F32, I32, I64, INOUT, OUT, ROWS, Arr, Signature, arg, check, choice, fill_struct, integer, real,
                    shape, stream_value)
from ._lib import Backend, Layout, Memory, Pairing, RopeKind, ScalePolicy, SegmentKind, check as check_status, lib

_fp = ctypes.POINTER(ctypes.c_float)
_ip = ctypes.POINTER(ctypes.c_int32)

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
    check_status(lib.hope_cuda_device_count(ctypes.byref(n)))
    return int(n.value)


def status_string(status) -> str:
    return lib.hope_status_string(integer(status, "status", "int32")).decode()


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
        return _lib.hope_segment_t(int(choice(SegmentKind, self.kind, "segment kind")),
                                   integer(self.length, "segment length"), integer(self.grid_t, "segment grid_t"),
                                   integer(self.grid_h, "segment grid_h"), integer(self.grid_w, "segment grid_w"),
                                   real(self.temporal_scale, "segment temporal_scale"))


def text(n: int) -> Segment:
    return Segment(SegmentKind.TEXT, length=integer(n, "text length"), grid_t=0, grid_h=0, grid_w=0)


def image(h: int, w: int, scale: float = 0.0) -> Segment:
    return Segment(SegmentKind.IMAGE, grid_t=1, grid_h=integer(h, "image h"), grid_w=integer(w, "image w"),
                   temporal_scale=real(scale, "image scale"))


def video(t: int, h: int, w: int, scale: float = 0.0) -> Segment:
    return Segment(SegmentKind.VIDEO, grid_t=integer(t, "video t"), grid_h=integer(h, "video h"),
                   grid_w=integer(w, "video w"), temporal_scale=real(scale, "video scale"))


def segment_from_vision_grid(kind, grid_t: int, grid_h: int, grid_w: int, spatial_merge_size: int = 2,
                             temporal_scale: float = 0.0, temporal_merge_size: int = 1) -> Segment:
    """A segment from a vision encoder's raw patch grid (Qwen2-VL's grid_thw): grid_h and grid_w divided by
    spatial_merge_size, a video's grid_t by temporal_merge_size (SPEC §8; 2 for ERNIE-4.5-VL). The library
    refuses a merge size that does not divide its dimension."""
    seg = _lib.hope_segment_t()
    check_status(lib.hope_segment_from_vision_grid_ex(
        int(choice(SegmentKind, kind, "kind")), integer(grid_t, "grid_t"), integer(grid_h, "grid_h"),
        integer(grid_w, "grid_w"), integer(spatial_merge_size, "spatial_merge_size"),
        integer(temporal_merge_size, "temporal_merge_size"), real(temporal_scale, "temporal_scale"),
        ctypes.byref(seg)))
    return _from_c(seg)


def video_frame_segments(grid_t: int, grid_h: int, grid_w: int, timestamp_tokens, *, spatial_merge_size: int = 1,
                         temporal_merge_size: int = 1, temporal_scale: float = 0.0) -> list:
    """A video as Qwen3-VL and GLM-4.1V/4.5V lay it out: for each frame f (after the merges), its timestamp text
    (timestamp_tokens[f] text tokens, e.g. the tokens of "<1.5 seconds>" and the frame's vision-start token), then
    a T = 1 video block of grid_h x grid_w. grid_* is the raw grid with the merge sizes given (the defaults of 1
    take LLM tokens); timestamp_tokens is one count per frame, or one int for every frame. Returns the segments
    (a frame without timestamp tokens gets no text segment); lay them out with layout "mrope"."""
    seg = segment_from_vision_grid(SegmentKind.VIDEO, grid_t, grid_h, grid_w, spatial_merge_size, temporal_scale,
                                   temporal_merge_size)
    frames = seg.grid_t
    if isinstance(timestamp_tokens, (int, np.integer)):
        counts = [integer(timestamp_tokens, "timestamp_tokens", lo=0)] * frames
    else:
        if isinstance(timestamp_tokens, (str, bytes)) or not hasattr(timestamp_tokens, "__len__"):
            raise TypeError(f"timestamp_tokens: expected an int or one count per frame, got {timestamp_tokens!r}")
        counts = [integer(n, f"timestamp_tokens[{i}]", lo=0) for i, n in enumerate(timestamp_tokens)]
        if len(counts) != frames:
            raise ValueError(f"timestamp_tokens: {len(counts)} counts for a video of {frames} frames "
                             f"(grid_t {grid_t} / temporal_merge_size {temporal_merge_size})")
    out = []
    for n in counts:
        if n:
            out.append(text(n))
        out.append(video(1, seg.grid_h, seg.grid_w, seg.temporal_scale))
    return out


def as_segment(s) -> Segment:
    """Accepts a Segment, an int (text length), a tuple ("text", n) / ("image", h, w[, scale]) /
    ("video", t, h, w[, scale]), or a dict {"kind": ..., "length"/"t"/"h"/"w"/"grid_*"/"scale": ...}."""
    if isinstance(s, Segment):
        return s
    if isinstance(s, _lib.hope_segment_t):
        return _from_c(s)
    if isinstance(s, (int, np.integer)):
        return text(s)
    if isinstance(s, dict):
        kind = choice(SegmentKind, s.get("kind", "text"), "segment kind")
        scale = s.get("scale", s.get("temporal_scale", 0.0))
        if kind == SegmentKind.TEXT:
            return text(s.get("length", s.get("n", 0)))
        h, w = s.get("h", s.get("grid_h", 1)), s.get("w", s.get("grid_w", 1))
        t = s.get("t", s.get("grid_t", 1))
        if kind == SegmentKind.IMAGE:  # grid_t other than 1 is the library's to refuse, with its message
            return Segment(kind, grid_t=integer(t, "image t"), grid_h=integer(h, "image h"),
                           grid_w=integer(w, "image w"), temporal_scale=real(scale, "image scale"))
        return video(t, h, w, scale)
    if isinstance(s, (tuple, list)) and s:
        kind = choice(SegmentKind, s[0], "segment kind")
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
    if isinstance(segments, (str, bytes, Segment, dict)):
        raise TypeError(f"segments: expected a list of segments, got {type(segments).__name__}")
    segs = [as_segment(s) for s in segments]
    integer(len(segs), "number of segments", "int32")
    arr = (_lib.hope_segment_t * max(len(segs), 1))()
    for i, s in enumerate(segs):
        arr[i] = s.to_c()
    return segs, arr


def num_tokens(segments) -> int:
    segs, arr = _c_segments(segments)
    n = ctypes.c_int64(0)
    check_status(lib.hope_positions_count(arr, len(segs), ctypes.byref(n)))
    return int(n.value)


def positions(segments, layout="diagonal", default_scale: float = 1.0, start: float = 0.0, *,
              second_per_grid_t=None, tokens_per_second: float = 2.0):
    """(t, h, w) positions of SPEC §1 and §8: returns (float32 array [3, n], next_position).

    layout "mrope_timed" (Qwen2.5-VL, Qwen2.5-Omni) needs second_per_grid_t: one interval (seconds per temporal
    grid step, Qwen2.5-VL's second_per_grid_ts) per video segment, in the order the videos appear, and
    tokens_per_second (2 for Qwen2.5-VL, 25 for Qwen2.5-Omni); a video frame f gets
    t = base + trunc(float32(float32(f * g) * tokens_per_second)). The other layouts ignore both."""
    lay = choice(Layout, layout, "layout")
    scale, start = real(default_scale, "default_scale"), real(start, "start")
    rate = real(tokens_per_second, "tokens_per_second")
    segs, arr = _c_segments(segments)
    n = ctypes.c_int64(0)
    check_status(lib.hope_positions_count(arr, len(segs), ctypes.byref(n)))
    out = np.empty((3, n.value), dtype=np.float32)
    nxt = ctypes.c_float(0.0)
    if lay != Layout.MROPE_TIMED:
        check_status(lib.hope_positions_build(arr, len(segs), int(lay), scale, start, out.ctypes.data_as(_fp),
                                              n.value, ctypes.byref(nxt)))
        return out, float(nxt.value)
    per_segment = None  # NULL: the library refuses a video without its interval, with its message
    if second_per_grid_t is not None:
        if isinstance(second_per_grid_t, (str, bytes)) or not hasattr(second_per_grid_t, "__len__"):
            second_per_grid_t = [second_per_grid_t]
        intervals = [real(g, f"second_per_grid_t[{i}]") for i, g in enumerate(second_per_grid_t)]
        videos = [i for i, sg in enumerate(segs) if sg.kind == SegmentKind.VIDEO]
        if len(intervals) != len(videos):
            raise ValueError(f"second_per_grid_t: {len(intervals)} intervals for {len(videos)} video segments "
                             f"(one per video, in order)")
        per_segment = np.zeros(max(len(segs), 1), dtype=np.float32)
        per_segment[videos] = intervals
    p = fill_struct(_lib.hope_positions_params_t(), layout=int(lay), default_temporal_scale=scale, start=start,
                    tokens_per_second=rate)
    if per_segment is not None:
        p.seconds_per_grid = per_segment.ctypes.data_as(_fp)
    check_status(lib.hope_positions_build_ex(ctypes.byref(p), arr, len(segs), out.ctypes.data_as(_fp), n.value,
                                             ctypes.byref(nxt)))
    return out, float(nxt.value)


def positions_generated(next_position: float, first: int, n: int) -> np.ndarray:
    """Positions [3, n] of generated tokens first .. first + n - 1."""
    nxt = real(next_position, "next_position")
    first, n = integer(first, "first", "int64"), integer(n, "n", "int64")
    out = np.empty((3, max(n, 0)), dtype=np.float32)  # n < 0 and first + n overflowing: the library refuses
    check_status(lib.hope_positions_generated(nxt, first, n, out.ctypes.data_as(_fp)))
    return out


_SELECT = Signature("select_temporal_scales", (arg("candidates", ("n",), dtype=F32, convert=True, optional=True),),
                    host_only=True)


def select_temporal_scales(segments, policy="fit", candidates: Sequence[float] | None = None,
                           fixed: float | None = None, seed: int = 0, budget: float | None = None,
                           start: float = 0.0):
    """Chooses each vision segment's temporal scale (SPEC §2). Returns (segments with their scales set, chosen):
    chosen is the one scale for fixed and fit, the first vision segment's draw for random."""
    pol = choice(ScalePolicy, policy, "policy")
    if pol == ScalePolicy.FIXED and fixed is None:
        raise ValueError("select_temporal_scales: policy 'fixed' needs fixed=<scale>")
    if pol == ScalePolicy.FIT and budget is None:
        raise ValueError("select_temporal_scales: policy 'fit' needs budget=<largest next_position>")
    c = check(_SELECT, {"candidates": candidates})
    p = fill_struct(_lib.hope_scale_params_t(), policy=int(pol), fixed_scale=0.0 if fixed is None else fixed,
                    seed=seed, position_budget=0.0 if budget is None else budget, start=start)
    if candidates is not None and c.sym["n"]:
        fill_struct(p, num_candidates=c.sym["n"], candidates=ctypes.cast(c.ptr("candidates"), _fp))
    segs, arr = _c_segments(segments)
    chosen = ctypes.c_float(0.0)
    check_status(lib.hope_temporal_scales_select(ctypes.byref(p), arr, len(segs), ctypes.byref(chosen)))
    return [_from_c(arr[i]) for i in range(len(segs))], float(chosen.value)


# ----------------------------------------------------------------------------------------------------------
# Frequencies, cos/sin (SPEC §3)
# ----------------------------------------------------------------------------------------------------------


def default_sections(head_dim: int) -> tuple:
    """Qwen2-VL's split generalised: (st, sh, sw) with sh = sw = 3/8 of the pairs; (16, 24, 24) for d = 128."""
    half = integer(head_dim, "head_dim") // 2
    sh = (3 * half) // 8
    return (half - 2 * sh, sh, sh)


@dataclasses.dataclass
class RopeConfig:
    kind: RopeKind = RopeKind.HOPE
    head_dim: int = 128
    sections: tuple | None = None  # None: default_sections(rotary_dim or head_dim) (unused by vanilla)
    theta: float = 1e6
    # SPEC §8 (0.2). pairing: "rotate_half" (0) or "interleaved" (1: pair i rotates dims 2i, 2i + 1; GLM-4.xV,
    # ERNIE-4.5-VL); independent of the "mrope_interleaved" frequency allocation. rotary_dim: the dims that
    # rotate (even, 2..head_dim; 0: head_dim), the rest pass through; tables are [n, rotary_dim / 2].
    # model_exact_freqs: the float32 inverse frequencies the models train with, angles still in double.
    pairing: int = 0
    rotary_dim: int = 0
    model_exact_freqs: bool = False

    @property
    def rotary_width(self) -> int:
        """The rotary dimension in effect: rotary_dim, or head_dim when it is 0."""
        return self.rotary_dim if self.rotary_dim else self.head_dim

    def to_c(self) -> _lib.hope_rope_config_t:
        c = _lib.hope_rope_config_t()
        c.kind = int(choice(RopeKind, self.kind, "rope kind"))
        c.head_dim = integer(self.head_dim, "head_dim")
        c.pairing = _pairing(self.pairing)
        c.rotary_dim = integer(self.rotary_dim, "rotary_dim")
        if not isinstance(self.model_exact_freqs, (bool, np.bool_, int, np.integer)):
            raise TypeError(f"model_exact_freqs: expected a bool, got {self.model_exact_freqs!r}")
        c.model_exact_freqs = integer(int(self.model_exact_freqs), "model_exact_freqs")
        sec = self.sections
        if sec is None:
            sec = (0, 0, 0) if c.kind == RopeKind.VANILLA else default_sections(
                c.rotary_dim if c.rotary_dim > 0 else c.head_dim)
        if isinstance(sec, (str, bytes)) or not hasattr(sec, "__len__") or len(sec) != 3:
            raise ValueError(f"sections must be (st, sh, sw), got {sec!r}")
        for i in range(3):
            c.sections[i] = integer(sec[i], f"sections[{i}]")
        c.theta = real(self.theta, "theta", "float64")
        return c


def _pairing(value) -> int:
    """A pairing as the C int: a Pairing, its name, or any int32 (the library refuses values other than 0 and 1
    with its own message)."""
    if isinstance(value, (str, Pairing)):
        return int(choice(Pairing, value, "pairing"))
    return integer(value, "pairing")


def _rotary_fields(pairing, rotary_dim) -> dict:
    """rope_pairing and rotary_dim of a params struct (checked by the library, which names what is wrong)."""
    return dict(rope_pairing=_pairing(pairing), rotary_dim=integer(0 if rotary_dim is None else rotary_dim,
                                                                    "rotary_dim"))


# The width of a cos/sin table: rotary_dim / 2, or d / 2 when rotary_dim is 0, odd or out of range (then the library
# refuses the call with its message, whatever tables were given).
_HALF = "(rotary_dim if 0 < rotary_dim <= d and rotary_dim % 2 == 0 else d) // 2"


def rope_config(config=None, *, kind=None, head_dim=None, sections=None, theta=None, pairing=None, rotary_dim=None,
                model_exact_freqs=None) -> RopeConfig:
    """A RopeConfig from a RopeConfig, a dict, a kind (name or RopeKind) plus keywords, or keywords alone."""
    if isinstance(config, RopeConfig):
        base = dataclasses.replace(config)
    elif isinstance(config, dict):
        base = RopeConfig(**config)
    elif config is None:
        base = RopeConfig()
    else:
        base = RopeConfig(kind=choice(RopeKind, config, "rope kind"))
    if kind is not None:
        base.kind = kind
    if head_dim is not None:
        base.head_dim = integer(head_dim, "head_dim")
    if sections is not None:
        base.sections = tuple(sections)
    if theta is not None:
        base.theta = real(theta, "theta", "float64")
    if pairing is not None:
        base.pairing = pairing
    if rotary_dim is not None:
        base.rotary_dim = integer(rotary_dim, "rotary_dim")
    if model_exact_freqs is not None:
        base.model_exact_freqs = model_exact_freqs
    base.kind = choice(RopeKind, base.kind, "rope kind")
    return base


def _checked_config(cfg: RopeConfig) -> _lib.hope_rope_config_t:
    """The C config, validated by the library before anything is allocated from its head_dim."""
    c = cfg.to_c()
    check_status(lib.hope_rope_cos_sin(ctypes.byref(c), None, 0, None, None))
    return c


def rope_components(config=None, **kw) -> np.ndarray:
    """c(i) for each rotary pair: 0 = t, 1 = h, 2 = w, -1 = none (zero frequency)."""
    cfg = rope_config(config, **kw)
    c = _checked_config(cfg)
    out = np.empty(cfg.rotary_width // 2, dtype=np.int32)
    check_status(lib.hope_rope_components(ctypes.byref(c), out.ctypes.data_as(_ip)))
    return out


_COS_SIN = Signature("cos_sin", (arg("positions", (3, "n"), shape("n"), dtype=F32, convert=True),),
                     host_only=True)


def cos_sin(config=None, positions=None, *, kind=None, head_dim=None, sections=None, theta=None, pairing=None,
            rotary_dim=None, model_exact_freqs=None):
    """Host cos/sin tables of SPEC §3 and §8: returns (cos, sin), float32 [n, rotary_dim/2] (rotary_dim 0:
    head_dim). positions: [3, n] (or [n] for 1-D positions, used on all three rows)."""
    if positions is None:
        raise ValueError("cos_sin: positions are required")
    cfg = rope_config(config, kind=kind, head_dim=head_dim, sections=sections, theta=theta, pairing=pairing,
                      rotary_dim=rotary_dim, model_exact_freqs=model_exact_freqs)
    c = _checked_config(cfg)
    pos = np.asarray(check(_COS_SIN, {"positions": positions})["positions"].obj)
    if pos.ndim == 1:
        pos = np.stack([pos, pos, pos])
    n, half = pos.shape[1], cfg.rotary_width // 2
    cos = np.empty((n, half), dtype=np.float32)
    sin = np.empty((n, half), dtype=np.float32)
    check_status(lib.hope_rope_cos_sin(ctypes.byref(c), pos.ctypes.data_as(_fp), n, cos.ctypes.data_as(_fp),
                                       sin.ctypes.data_as(_fp)))
    return cos, sin


class _DeviceView:
    """A float32 [rows, cols] view of device memory owned by `owner`, with __cuda_array_interface__."""

    def __init__(self, ptr: int, rows: int, cols: int, owner):
        self._owner = owner
        self.ptr, self.shape = int(ptr), (int(rows), int(cols))
        self.__cuda_array_interface__ = {"shape": self.shape, "typestr": "<f4", "data": (self.ptr, False),
                                         "strides": None, "version": 3, "stream": None}


class _CacheTables:
    """Owns a hope_rope_cache_t. The RopeCache holds one reference and every .cos / .sin view another, so the
    library's tables are destroyed only when the cache is closed and no view is left."""

    def __init__(self, handle: ctypes.c_void_p):
        self.handle = handle

    def __del__(self):
        h, self.handle = self.handle, None
        if h is not None and h.value:
            try:
                lib.hope_rope_cache_destroy(h)
            except Exception:  # pragma: no cover - interpreter shutdown
                pass


_FILL = Signature("RopeCache.fill", (arg("positions", (3, "n"), dtype=F32, convert=True, any_side=True,
                                         layout=ROWS),))


class RopeCache:
    """hope_rope_cache_t: cos/sin tables for `capacity` tokens on the host or the current CUDA device.
    .cos / .sin: read-only numpy arrays (host cache) or __cuda_array_interface__ views (device cache)
    [capacity, rotary_dim/2]. A view keeps the tables alive: close() (or leaving a `with` block) releases them once no
    view is left, and the closed cache refuses further use."""

    def __init__(self, config=None, capacity: int = 1, memory="host", **kw):
        self.config = rope_config(config, **kw)
        mem = choice(Memory, memory, "memory")
        c = self.config.to_c()
        handle = ctypes.c_void_p(None)
        check_status(lib.hope_rope_cache_create(ctypes.byref(c), integer(capacity, "capacity", "int64"), int(mem),
                                                ctypes.byref(handle)))
        self._tables = _CacheTables(handle)
        cos_p, sin_p = ctypes.c_void_p(), ctypes.c_void_p()
        cap, where = ctypes.c_int64(0), ctypes.c_int(0)
        check_status(lib.hope_rope_cache_get(handle, ctypes.byref(cos_p), ctypes.byref(sin_p), ctypes.byref(cap),
                                             ctypes.byref(where)))
        self.capacity, self.memory = int(cap.value), Memory(where.value)
        half = self.config.rotary_width // 2
        if self.memory == Memory.HOST:
            self._cos, self._sin = self._host_view(cos_p.value, half), self._host_view(sin_p.value, half)
        else:
            self._cos = _DeviceView(cos_p.value, self.capacity, half, self._tables)
            self._sin = _DeviceView(sin_p.value, self.capacity, half, self._tables)

    def _host_view(self, ptr: int, half: int) -> np.ndarray:
        buf = (ctypes.c_float * (self.capacity * half)).from_address(ptr)
        buf._owner = self._tables  # the numpy view holds buf, buf holds the tables
        view = np.frombuffer(buf, dtype=np.float32).reshape(self.capacity, half)
        view.flags.writeable = False  # the library hands out const tables
        return view

    def _live(self, what: str) -> _CacheTables:
        tables = getattr(self, "_tables", None)
        if tables is None:
            raise ValueError(f"RopeCache.{what}: the cache is closed")
        return tables

    @property
    def cos(self):
        self._live("cos")
        return self._cos

    @property
    def sin(self):
        self._live("sin")
        return self._sin

    def fill(self, positions, offset: int = 0, stream=None):
        """Fills rows [offset, offset + n) from positions [3, n] (numpy, or a device array)."""
        tables = self._live("fill")
        offset = integer(offset, "offset", "int64")
        c = check(_FILL, {"positions": positions})
        a = c["positions"]
        mem = Memory.DEVICE if a.device else Memory.HOST
        st = _stream_of(stream, [a]) if a.device else stream_value(stream)
        ld = a.strides[0] if a.size else 0
        check_status(lib.hope_rope_cache_fill(tables.handle, offset, c.ptr("positions"), c.sym["n"], ld, int(mem),
                                              st))
        return self

    def close(self):
        """Releases the cache (its tables go when the last .cos / .sin view goes too)."""
        self._tables = None
        self._cos = self._sin = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ----------------------------------------------------------------------------------------------------------
# Shared plumbing for the tensor calls
# ----------------------------------------------------------------------------------------------------------


def _stream_of(stream, arrs: Sequence[Arr]):
    """The explicit stream, else an input's interface "stream" entry, else torch's current stream for torch
    inputs, else NULL (the legacy default stream)."""
    if stream is not None:
        return stream_value(stream)
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


def _call_stream(c, stream, *names):
    """The stream of a device call; a host call checks the argument and runs without one."""
    if c.backend == Backend.CUDA:
        return _stream_of(stream, [c[n] for n in names])
    stream_value(stream)
    return None


def _covered(c, cu_name: str, total: int) -> bool:
    """Whether cu_seqlens (known on the host) cover every one of the `total` rows."""
    host = c.host.get(cu_name)
    return host is not None and host.size > 0 and int(host[-1]) >= total


def _max_len(c, cu_name: str, given, name: str) -> int:
    if given is not None:
        return integer(given, name)
    host = c.host.get(cu_name)
    if host is None:
        raise ValueError(f"{name}: cannot be derived from device {cu_name} of this array type; pass it")
    return int(np.max(np.diff(host))) if host.size > 1 else 0


# ----------------------------------------------------------------------------------------------------------
# Rotation (SPEC §4)
# ----------------------------------------------------------------------------------------------------------

_ROPE_APPLY = Signature("rope_apply", (
    arg("x", shape("tokens", "heads", "d"), shape("tokens", "d", heads=1), layout=ROWS),
    arg("cos", (">=tokens", _HALF), dtype=F32, convert=True),
    arg("sin", (">=tokens", _HALF), dtype=F32, convert=True),
    arg("out", shape("tokens", "heads", "d"), shape("tokens", "d", heads=1), like="x", role=OUT, layout=ROWS),
))


def rope_apply(x, cos, sin, out=None, *, pairing=0, rotary_dim=None, dtype=None, stream=None, backend=None):
    """Rotates x [tokens, heads, d] (or [tokens, d]) by its token's cos/sin [tokens, rotary_dim/2]; returns out.
    pairing: "rotate_half" (0) or "interleaved" (1); rotary_dim: the dims that rotate (None or 0: d), the rest
    are copied (SPEC §8). numpy inputs run on the CPU backend; CUDA arrays (torch, cupy,
    __cuda_array_interface__) on the GPU. dtype="bfloat16" marks a uint16 array as bfloat16 bits. out may be x
    (in place)."""
    rot = _rotary_fields(pairing, rotary_dim)
    c = check(_ROPE_APPLY, dict(x=x, cos=cos, sin=sin, out=out), dtype, backend,
              symbols={"rotary_dim": rot["rotary_dim"]})
    if out is None:
        out = c.alloc("out", c["x"].shape, like="x")
    s = c.sym
    p = fill_struct(_lib.hope_rope_apply_params_t(), backend=int(c.backend), dtype=int(c["x"].dtype),
                    num_tokens=s["tokens"], num_heads=s["heads"], head_dim=s["d"], x=c.ptr("x"),
                    x_row_stride=c.row_stride("x"), out=c.ptr("out"), out_row_stride=c.row_stride("out"),
                    cos=c.ptr("cos"), sin=c.ptr("sin"), **rot)
    check_status(lib.hope_rope_apply(ctypes.byref(p), _call_stream(c, stream, "x", "out")))
    return out


# ----------------------------------------------------------------------------------------------------------
# Attention (SPEC §5)
# ----------------------------------------------------------------------------------------------------------

_ATTENTION = Signature("attention", (
    arg("q", ("total_q", "hq", "d"), layout=ROWS),
    arg("k", ("total_k", "hk", "d"), like="q", layout=ROWS),
    arg("v", ("total_k", "hk", "d"), like="q", layout=ROWS),
    arg("cu_seqlens_q", ("nseq",), dtype=I32, convert=True, upload=True, cumulative="total_q", end="covered_q",
        default=lambda s: [0, s["total_q"]]),  # None: one sequence over every row
    arg("cu_seqlens_k", ("nseq",), dtype=I32, convert=True, upload=True, cumulative="total_k",
        default=lambda s: [0, s["total_k"]]),
    arg("cos_q", (">=total_q", _HALF), dtype=F32, optional=True, convert=True),
    arg("sin_q", (">=total_q", _HALF), dtype=F32, optional=True, convert=True),
    arg("cos_k", (">=total_k", _HALF), dtype=F32, optional=True, convert=True),
    arg("sin_k", (">=total_k", _HALF), dtype=F32, optional=True, convert=True),
    arg("out", ("total_q", "hq", "d"), like="q", role=OUT),
    arg("lse", ("hq", "covered_q"), dtype=F32, role=OUT),  # [Hq][cu_seqlens_q[-1]], as the library lays it out
    arg("k_rotated", ("total_k", "hk", "d"), like="k", role=OUT),
), together=(("cos_q", "sin_q"), ("cos_k", "sin_k")))


def attention(q, k, v, cu_seqlens_q=None, cu_seqlens_k=None, *, causal: bool = False, cos_q=None, sin_q=None,
              cos_k=None, sin_k=None, softmax_scale: float | None = None, return_lse: bool = False,
              max_seqlen_q: int | None = None, max_seqlen_k: int | None = None, out=None, lse=None,
              k_rotated=None, pairing=0, rotary_dim=None, dtype=None, stream=None, backend=None,
              unfused: bool = False):
    """Varlen attention with rotary embedding fused in (SPEC §5).

    q [total_q, Hq, d], k and v [total_k, Hk, d]; cu_seqlens_* [batch + 1] int32 (None: one sequence).
    cos_q/sin_q [total_q, rotary_dim/2], cos_k/sin_k [total_k, rotary_dim/2] float32, or None to use q / k as
    given; pairing ("rotate_half" or "interleaved") and rotary_dim (None: d) as in rope_apply (SPEC §8; the fused
    GPU kernel rotates rotary_dim multiples of 16 only, the unfused path and the CPU any even rotary_dim).
    Returns out [total_q, Hq, d], or (out, lse [Hq, cu_seqlens_q[-1]] float32) with return_lse=True (lse holds
    the rows the sequences cover, as the library lays it out). Rows of q past cu_seqlens_q[-1] get out = 0 in
    an out allocated here (a given out keeps them as they were).
    numpy inputs run on the CPU backend; CUDA arrays on the GPU (the fused kernel, or with unfused=True the
    cuBLAS reference path, which allocates its workspace through the input's framework)."""
    scale = 0.0 if softmax_scale is None else real(softmax_scale, "softmax_scale")
    values = dict(q=q, k=k, v=v, cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k, cos_q=cos_q, sin_q=sin_q,
                  cos_k=cos_k, sin_k=sin_k, out=out, lse=lse, k_rotated=k_rotated)
    rot = _rotary_fields(pairing, rotary_dim)
    c = check(_ATTENTION, values, dtype, backend, symbols={"rotary_dim": rot["rotary_dim"]})
    s = c.sym
    if out is None:
        out = c.alloc("out", (s["total_q"], s["hq"], s["d"]), like="q",
                      fill=None if _covered(c, "cu_seqlens_q", s["total_q"]) else 0)
    if lse is None and return_lse:
        lse = c.alloc("lse", (s["hq"], s["covered_q"]), kind=F32)
    p = fill_struct(_lib.hope_attention_params_t(), backend=int(c.backend), dtype=int(c["q"].dtype),
                    batch=s["nseq"] - 1, num_q_heads=s["hq"], num_kv_heads=s["hk"], head_dim=s["d"],
                    max_seqlen_q=_max_len(c, "cu_seqlens_q", max_seqlen_q, "max_seqlen_q"),
                    max_seqlen_k=_max_len(c, "cu_seqlens_k", max_seqlen_k, "max_seqlen_k"),
                    softmax_scale=scale, causal=1 if causal else 0, q_row_stride=c.row_stride("q"),
                    k_row_stride=c.row_stride("k"), v_row_stride=c.row_stride("v"),
                    **{n: c.ptr(n) for n in ("cu_seqlens_q", "cu_seqlens_k", "q", "k", "v", "out", "lse", "cos_q",
                                             "sin_q", "cos_k", "sin_k", "k_rotated")}, **rot)
    st = _call_stream(c, stream, "q", "k", "v", "out")
    if unfused:
        if c.backend != Backend.CUDA:
            raise ValueError("attention: unfused=True is the GPU reference path; it needs device arrays")
        size = ctypes.c_size_t(0)
        check_status(lib.hope_attention_unfused_workspace_size(ctypes.byref(p), ctypes.byref(size)))
        ws = c.alloc("workspace", (max(int(size.value), 1),), kind="u1")
        check_status(lib.hope_attention_forward_unfused(ctypes.byref(p), c.ptr("workspace"), int(size.value), st))
        del ws
    else:
        check_status(lib.hope_attention_forward(ctypes.byref(p), st))
    return (out, lse) if return_lse else out


# ----------------------------------------------------------------------------------------------------------
# Serving: merge, paged KV append, decode
# ----------------------------------------------------------------------------------------------------------

_MERGE = Signature("merge_states", (
    arg("o_a", ("tokens", "heads", "d")),
    arg("lse_a", ("heads", "tokens"), dtype=F32, convert=True),
    arg("o_b", ("tokens", "heads", "d"), like="o_a"),
    arg("lse_b", ("heads", "tokens"), dtype=F32, convert=True),
    arg("out", ("tokens", "heads", "d"), like="o_a", role=OUT),
    arg("lse_out", ("heads", "tokens"), dtype=F32, role=OUT),
))


def merge_states(o_a, lse_a, o_b, lse_b, out=None, lse_out=None, *, return_lse: bool = True, dtype=None,
                 stream=None, backend=None):
    """Merges two partial attention states over disjoint key sets. o_*: [tokens, heads, d]; lse_*: float32
    [heads, tokens]. Returns (out, lse) (or out alone with return_lse=False). out may be o_a or o_b, lse_out
    lse_a or lse_b (in place); any other overlap is refused."""
    c = check(_MERGE, dict(o_a=o_a, lse_a=lse_a, o_b=o_b, lse_b=lse_b, out=out, lse_out=lse_out), dtype, backend)
    s = c.sym
    if out is None:
        out = c.alloc("out", c["o_a"].shape, like="o_a")
    if lse_out is None and return_lse:
        lse_out = c.alloc("lse_out", (s["heads"], s["tokens"]), kind=F32)
    p = fill_struct(_lib.hope_merge_params_t(), backend=int(c.backend), dtype=int(c["o_a"].dtype),
                    num_tokens=s["tokens"], num_heads=s["heads"], head_dim=s["d"],
                    **{n: c.ptr(n) for n in ("o_a", "o_b", "lse_a", "lse_b", "out", "lse_out")})
    check_status(lib.hope_merge_states(ctypes.byref(p), _call_stream(c, stream, "o_a", "o_b", "out")))
    return (out, lse_out) if return_lse else out


def _cache(c) -> _lib.hope_paged_kv_t:
    s = c.sym
    return fill_struct(_lib.hope_paged_kv_t(), dtype=int(c["k_pages"].dtype), num_pages=s["num_pages"],
                       page_size=s["page_size"], num_kv_heads=s["hk"], head_dim=s["d"], k_pages=c.ptr("k_pages"),
                       v_pages=c.ptr("v_pages"))


_PAGES = ("num_pages", "page_size", "hk", "d")  # [num_pages, page_size, num_kv_heads, head_dim]

_KV_APPEND = Signature("kv_append", (
    arg("k_pages", _PAGES, role=INOUT),
    arg("v_pages", _PAGES, like="k_pages", role=INOUT),
    arg("k", ("tokens", "hk", "d"), like="k_pages", layout=ROWS),
    arg("v", ("tokens", "hk", "d"), like="k_pages", layout=ROWS),
    arg("slot_mapping", ("tokens",), dtype=I64, convert=True, upload=True),
    arg("cos_k", (">=tokens", _HALF), dtype=F32, optional=True, convert=True),
    arg("sin_k", (">=tokens", _HALF), dtype=F32, optional=True, convert=True),
), together=(("cos_k", "sin_k"),))


def kv_append(k_pages, v_pages, k, v, slot_mapping, cos_k=None, sin_k=None, *, pairing=0, rotary_dim=None,
              dtype=None, stream=None, backend=None):
    """Rotates new keys (when cos_k/sin_k are given) and writes keys and values into their paged-cache slots.
    k_pages, v_pages: [num_pages, page_size, Hk, d]; k, v: [tokens, Hk, d]; slot_mapping: int64 [tokens]
    (negative: skip); cos_k/sin_k [tokens, rotary_dim/2]; pairing and rotary_dim as in rope_apply. Writes the
    pages in place and returns (k_pages, v_pages)."""
    rot = _rotary_fields(pairing, rotary_dim)
    c = check(_KV_APPEND, dict(k_pages=k_pages, v_pages=v_pages, k=k, v=v, slot_mapping=slot_mapping, cos_k=cos_k,
                               sin_k=sin_k), dtype, backend, symbols={"rotary_dim": rot["rotary_dim"]})
    # the CPU backend checks slots itself; on the device, slots given on the host are checked here (device ones
    # are not read back: the caller's promise, as in the C API)
    if c.device and c.host.get("slot_mapping") is not None:
        slots = c.host["slot_mapping"]
        num_slots = c.sym["num_pages"] * c.sym["page_size"]
        if slots.size and int(slots.max()) >= num_slots:
            raise ValueError(f"slot_mapping: slot {int(slots.max())} is past the cache's {num_slots} slots")
    p = fill_struct(_lib.hope_kv_append_params_t(), backend=int(c.backend), cache=_cache(c),
                    num_tokens=c.sym["tokens"], k=c.ptr("k"), v=c.ptr("v"), k_row_stride=c.row_stride("k"),
                    v_row_stride=c.row_stride("v"), slot_mapping=c.ptr("slot_mapping"), cos_k=c.ptr("cos_k"),
                    sin_k=c.ptr("sin_k"), **rot)
    check_status(lib.hope_kv_append(ctypes.byref(p), _call_stream(c, stream, "k_pages", "k", "v")))
    return k_pages, v_pages


_DECODE = Signature("decode", (
    arg("k_pages", _PAGES),
    arg("v_pages", _PAGES, like="k_pages"),
    arg("q", ("total_q", "hq", "d"), like="k_pages", layout=ROWS),
    arg("cu_seqlens_q", ("nseq",), dtype=I32, convert=True, upload=True, cumulative="total_q", end="covered_q"),
    arg("seq_lens", ("nseq - 1",), dtype=I32, convert=True, upload=True, readback=True),
    arg("page_table", (">=nseq - 1", "max_pages"), dtype=I32, convert=True, upload=True),
    arg("cos_q", (">=total_q", _HALF), dtype=F32, optional=True, convert=True),
    arg("sin_q", (">=total_q", _HALF), dtype=F32, optional=True, convert=True),
    arg("out", ("total_q", "hq", "d"), like="q", role=OUT),
    arg("lse", ("hq", "covered_q"), dtype=F32, role=OUT),
), together=(("cos_q", "sin_q"),))


def _check_pages_on_device(c):
    """What the CPU backend checks itself but a device call cannot (its arrays live on the GPU), as far as the
    values are known on the host: seq_lens fit the page table, and every page a sequence uses is a page of the
    cache (a page table given on the device is not read back: it stays the caller's promise, as in the C API)."""
    lens, table = c.host.get("seq_lens"), c.host.get("page_table")
    if lens is None:
        return  # device arrays of a framework that cannot be read back: the caller's promise
    ps, num_pages, max_pages = c.sym["page_size"], c.sym["num_pages"], c.sym["max_pages"]
    for b, n in enumerate(lens.tolist()):
        if n < 0 or n > max_pages * ps:
            raise ValueError(f"seq_lens[{b}]: {n} is outside [0, {max_pages * ps}] (max_pages_per_seq * page_size)")
        used = table[b, : (n + ps - 1) // ps] if table is not None else np.zeros(0)
        if used.size and (used.min() < 0 or used.max() >= num_pages):
            raise ValueError(f"page_table[{b}]: a page id outside [0, {num_pages})")


def decode(q, k_pages, v_pages, cu_seqlens_q, seq_lens, page_table, *, cos_q=None, sin_q=None,
           causal: bool = True, softmax_scale: float | None = None, return_lse: bool = False,
           max_seqlen_q: int | None = None, max_seqlen_k: int | None = None, num_splits: int = 0, out=None,
           lse=None, pairing=0, rotary_dim=None, dtype=None, stream=None, backend=None):
    """Attention of 1..8 new query tokens per sequence over its pages (decode / speculative decoding).
    q [total_q, Hq, d]; cu_seqlens_q [batch + 1] and seq_lens [batch] int32; page_table int32
    [batch, max_pages_per_seq]. The workspace is allocated here. Returns out (and lse [Hq, cu_seqlens_q[-1]]
    with return_lse); rows of q past cu_seqlens_q[-1] get out = 0 in an out allocated here. cos_q/sin_q
    [total_q, rotary_dim/2]; pairing and rotary_dim as the keys in the cache were rotated (see kv_append)."""
    scale = 0.0 if softmax_scale is None else real(softmax_scale, "softmax_scale")
    rot = _rotary_fields(pairing, rotary_dim)
    c = check(_DECODE, dict(q=q, k_pages=k_pages, v_pages=v_pages, cu_seqlens_q=cu_seqlens_q, seq_lens=seq_lens,
                            page_table=page_table, cos_q=cos_q, sin_q=sin_q, out=out, lse=lse), dtype, backend,
              symbols={"rotary_dim": rot["rotary_dim"]})
    s = c.sym
    if c.device:
        _check_pages_on_device(c)
    covered = _covered(c, "cu_seqlens_q", s["total_q"])
    if out is None:
        out = c.alloc("out", (s["total_q"], s["hq"], s["d"]), like="q", fill=None if covered else 0)
    if lse is None and return_lse:
        lse = c.alloc("lse", (s["hq"], s["covered_q"]), kind=F32)
    if max_seqlen_k is None:
        lens = c.host.get("seq_lens")
        if lens is None:
            raise ValueError("max_seqlen_k: pass it (seq_lens live on the device)")
        max_seqlen_k = int(lens.max()) if lens.size else 0
    p = fill_struct(_lib.hope_decode_params_t(), backend=int(c.backend), cache=_cache(c), batch=s["nseq"] - 1,
                    num_q_heads=s["hq"], max_seqlen_q=_max_len(c, "cu_seqlens_q", max_seqlen_q, "max_seqlen_q"),
                    max_seqlen_k=max_seqlen_k, max_pages_per_seq=s["max_pages"], q_row_stride=c.row_stride("q"),
                    softmax_scale=scale, causal=1 if causal else 0, num_splits=num_splits,
                    **{n: c.ptr(n) for n in ("cu_seqlens_q", "seq_lens", "page_table", "q", "out", "lse", "cos_q",
                                             "sin_q")}, **rot)
    size = ctypes.c_size_t(0)
    check_status(lib.hope_decode_workspace_size(ctypes.byref(p), ctypes.byref(size)))
    ws = c.alloc("workspace", (int(size.value),), kind="u1") if size.value else None
    st = _call_stream(c, stream, "q", "k_pages", "out")
    check_status(lib.hope_decode_forward(ctypes.byref(p), c.ptr("workspace") if ws is not None else None,
                                         int(size.value), st))
    del ws
    return (out, lse) if return_lse else out


__all__ = [
    "version", "version_int", "cuda_device_count", "status_string", "last_error", "Segment", "text", "image",
    "video", "as_segment", "segment_from_vision_grid", "video_frame_segments", "num_tokens", "positions",
    "positions_generated", "select_temporal_scales", "RopeConfig", "rope_config", "default_sections", "rope_components", "cos_sin",
    "RopeCache", "rope_apply", "attention", "merge_states", "kv_append", "decode",
]
