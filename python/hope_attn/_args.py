"""The binding's one argument layer: every argument of every public function is checked here before any C call.

Scalars: `integer` (range-checked into int32 / int64 / uint64; floats and strings refused), `real` (float32 or
double; a finite value that float32 cannot hold is refused), `choice` (an enum by member, name or value).

Arrays: each function describes its array arguments once, as a `Signature` of `arg(...)` entries: role (input,
output, or both), element type, shape in terms of symbols shared with the other arguments, layout, and how host
values may be converted or uploaded. `check(signature, values, ...)` verifies all of them and returns a `Call`
with the descriptions, the bound symbols (tokens, heads, head_dim, ...) and the backend. Shapes are written as
tuples of dimension expressions:
  "tokens"          a symbol: bound by the first argument that has it, every later one must agree;
  "d // 2"          an expression of bound symbols (evaluated with the symbols as variables);
  ">=tokens"        at least that many (tables that may hold more rows than the call uses);
  3                 a fixed size.
An argument with several shapes (e.g. x as [tokens, heads, d] or [tokens, d]) lists one per rank; a shape may
fix symbols the rank leaves out: shape("tokens", "d", heads=1). Symbols that come from scalar arguments (a
rotary dimension, say) are passed to check(..., symbols={...}) and used like the others ("rotary_dim // 2").
To extend a function: add its array to the Signature, read it back from the Call (c.ptr(name),
c.row_stride(name), c.sym[...]), and set the params struct with fill_struct (which range-checks every field).
"""

from __future__ import annotations

import ctypes
import dataclasses
import math
import operator

import numpy as np

from ._arrays import (DTYPE_OF_KIND, KIND_OF_DTYPE, RAW_2BYTE, Arr, as_arr, host_int_array, is_array,
                      is_device_array, kind_name, new_array, parse_dtype, to_device_like)
from ._lib import Backend, DType

# ----------------------------------------------------------------------------------------------------------
# Scalars
# ----------------------------------------------------------------------------------------------------------

_INT_RANGES = {"int32": (-2**31, 2**31 - 1), "int64": (-2**63, 2**63 - 1), "uint64": (0, 2**64 - 1)}
_F32_OVERFLOW = 2.0**128 - 2.0**103  # the smallest magnitude float32 rounding turns into infinity


def integer(value, name: str, ctype: str = "int32", lo: int | None = None) -> int:
    """value as a Python int that fits the C type `ctype` ("int32", "int64", "uint64") and is >= lo when given.
    Refuses floats (even 3.0), strings and None with TypeError, and values out of range with ValueError."""
    if isinstance(value, (float, np.floating, str, bytes)) or value is None:
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__} {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}") from None
    low, high = _INT_RANGES[ctype]
    if not low <= v <= high:
        raise ValueError(f"{name}: {v} does not fit {ctype} [{low}, {high}]")
    if lo is not None and v < lo:
        raise ValueError(f"{name}: {v} must be >= {lo}")
    return v


def real(value, name: str, ctype: str = "float32") -> float:
    """value as a Python float for a C float ("float32") or double ("float64"). NaN and infinities pass (the
    library answers them); a finite value beyond the float32 range is refused rather than turned into inf."""
    if isinstance(value, (str, bytes, bytearray)) or value is None or isinstance(value, complex):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__} {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}") from None
    if ctype == "float32" and math.isfinite(v) and abs(v) >= _F32_OVERFLOW:
        raise ValueError(f"{name}: {v!r} is beyond the float32 range")
    return v


def choice(enum_cls, value, name: str):
    """A member of enum_cls from a member, its name (any case, '-' for '_') or its value."""
    if isinstance(value, enum_cls):
        return value
    names = ", ".join(m.lower() for m in enum_cls.__members__)
    if isinstance(value, str):
        key = value.upper().replace("-", "_")
        if key in enum_cls.__members__:
            return enum_cls[key]
        raise ValueError(f"{name}: unknown value {value!r}; use one of {names}")
    v = integer(value, name, "int32")
    try:
        return enum_cls(v)
    except ValueError:
        raise ValueError(f"{name}: unknown value {v}; use one of {names} "
                         f"({', '.join(str(int(m)) for m in enum_cls)})") from None


_CTYPE_NAMES = {ctypes.c_int32: "int32", ctypes.c_int64: "int64", ctypes.c_uint64: "uint64"}


def fill_struct(struct, **values):
    """Sets fields of a ctypes params struct, each range-checked into its C type (ctypes itself would wrap
    2**32 + 3 to 3 without a word); pointers (None or an int address) and nested structs pass as they are."""
    types = dict(struct._fields_)
    for name, value in values.items():
        ctype = types[name]  # KeyError: a field the struct does not have (a mistake in the binding)
        if ctype in _CTYPE_NAMES:
            value = integer(value, name, _CTYPE_NAMES[ctype])
        elif ctype is ctypes.c_float:
            value = real(value, name, "float32")
        elif ctype is ctypes.c_double:
            value = real(value, name, "float64")
        setattr(struct, name, value)
    return struct


def stream_value(stream):
    """A cudaStream_t as an int (or None) from an int, a torch / cupy stream object, or None."""
    if stream is None:
        return None
    if not isinstance(stream, (int, np.integer)):
        for attr in ("cuda_stream", "ptr", "handle"):
            v = getattr(stream, attr, None)
            if v is not None:
                stream = v
                break
        else:
            raise TypeError(f"stream: cannot take a CUDA stream from {stream!r}")
    return integer(stream, "stream", "uint64") or None


# ----------------------------------------------------------------------------------------------------------
# Array descriptions
# ----------------------------------------------------------------------------------------------------------

FLOAT = "float"  # float16, bfloat16 or float32, by the array's own type (raw 16-bit storage by the dtype= hint)
F32, I32, I64 = "f4", "i4", "i8"
IN, OUT, INOUT = "in", "out", "inout"
PACKED, ROWS = "packed", "rows"  # C-contiguous; or packed in all but the first dimension (rows may be apart)


@dataclasses.dataclass(frozen=True)
class Shape:
    dims: tuple
    implied: tuple = ()  # (symbol, value) pairs fixed by this rank


def shape(*dims, **implied) -> Shape:
    return Shape(tuple(dims), tuple(implied.items()))


@dataclasses.dataclass(frozen=True)
class Arg:
    name: str
    shapes: tuple           # Shape per accepted rank
    dtype: str = FLOAT      # FLOAT, F32, I32 or I64
    role: str = IN          # IN (read), OUT (written; None: allocated by the function or skipped), INOUT
    like: str | None = None  # must have the element type of this earlier argument
    layout: str = PACKED
    optional: bool = False  # an input that may be None
    convert: bool = False   # host input: lists and other numeric dtypes are converted by value (range-checked)
    upload: bool = False    # host input copied to the device when the call runs there (small metadata)
    any_side: bool = False  # host or device, whatever the call's side
    cumulative: str | None = None  # offsets (cu_seqlens): start at 0, never decrease, end <= this symbol
    end: str | None = None  # offsets: the symbol bound to the last entry (the cumulative one when unreadable)
    default: object = None  # value when None is given: a function of the symbols bound so far
    readback: bool = False  # integer device array: read it back for host-side checks (a synchronisation); the
                            # offsets (cumulative) always are, as the binding always did


def arg(name: str, *shapes, **kw) -> Arg:
    return Arg(name, tuple(s if isinstance(s, Shape) else Shape(tuple(s)) for s in shapes), **kw)


@dataclasses.dataclass(frozen=True)
class Signature:
    name: str
    args: tuple
    together: tuple = ()     # groups of argument names given all or none
    checks: tuple = ()       # (predicate over the symbols, message formatted with them)
    host_only: bool = False  # the function reads host memory only

    def __post_init__(self):
        seen = set()
        for a in self.args:
            assert a.like is None or a.like in seen, f"{self.name}: {a.name} is like {a.like}, not described before"
            seen.add(a.name)


# A valid, 256-byte aligned address for empty arrays whose framework gives them none (torch: data_ptr() == 0);
# the library reads nothing through it.
_EMPTY_BUF = (ctypes.c_char * 512)()
_EMPTY_PTR = (ctypes.addressof(_EMPTY_BUF) + 255) & ~255


class Call:
    """The checked arguments of one call: .arrs (name -> Arr or None), .sym (shape symbols), .host (name -> host
    copy of integer metadata, None when it lives on a device that cannot be read back), .backend, .device."""

    def __init__(self, sig: Signature, hint: DType | None, device: bool, backend: Backend):
        self.sig, self.hint, self.device, self.backend = sig, hint, device, backend
        self.arrs: dict = {}
        self.objs: dict = {}
        self.sym: dict = {}
        self.bound_by: dict = {}
        self.host: dict = {}

    def __getitem__(self, name) -> Arr | None:
        return self.arrs.get(name)

    def ptr(self, name):
        a = self.arrs.get(name)
        if a is None:
            return None
        return a.ptr or (_EMPTY_PTR if a.size == 0 else None)

    def row_stride(self, name) -> int:
        a = self.arrs[name]
        return int(a.strides[0]) if a.ndim and a.shape[0] > 1 else 0

    def obj(self, name):
        """The object the caller gets back for an output (the array passed, or the one allocated)."""
        return self.objs.get(name)

    def alloc(self, name: str, dims, like: str | None = None, kind: str | None = None, fill=None):
        """Allocates output `name` of shape `dims` next to the call's first array: of the element type of
        argument `like` (its very numpy/torch type, so uint16 bfloat16 bits stay uint16), else of `kind`.
        fill: None leaves it uninitialised (for outputs the library writes completely)."""
        ref = self.arrs[like] if like is not None else next(a for a in self.arrs.values() if a is not None)
        obj = new_array(ref, dims, None if like is not None else kind, name, fill)
        a = as_arr(obj, name, hint=self.hint if like is not None else None)
        a.kind = ref.kind if like is not None else kind
        self.arrs[name], self.objs[name] = a, obj
        return obj

    # ---- the checks -------------------------------------------------------------------------------------

    def _eval(self, expr, who: str):
        try:
            return int(eval(expr, {"__builtins__": {}}, dict(self.sym)))  # our own expressions, never user text
        except NameError as e:  # pragma: no cover - a mistake in a Signature
            raise AssertionError(f"{self.sig.name}: {who}: {expr!r} uses an unbound symbol ({e})") from None

    def _bind(self, sym: str, value: int, who: str, what: str):
        if sym in self.sym and self.sym[sym] != value:
            raise ValueError(f"{who}: {what} is {value}, but {sym} is {self.sym[sym]} (from "
                             f"{self.bound_by[sym]})")
        if sym not in self.sym:
            self.sym[sym], self.bound_by[sym] = value, who

    def _shape(self, spec: Arg, a: Arr):
        alts = [s for s in spec.shapes if len(s.dims) == a.ndim]
        want = " or ".join("[" + ", ".join(str(d) for d in s.dims) + "]" for s in spec.shapes)
        if not alts:
            raise ValueError(f"{spec.name}: expected shape {want}, got {a.ndim} dimensions {a.shape}")
        s = alts[0]
        for sym, value in s.implied:
            self._bind(sym, value, spec.name, f"{sym} (implied by {a.ndim} dimensions)")
        for i, (d, n) in enumerate(zip(s.dims, a.shape)):
            if isinstance(d, int):
                ok, need = n == d, d
            elif d.startswith(">="):
                need = self._eval(d[2:], spec.name)
                ok = n >= need
            elif d.isidentifier():
                self._bind(d, int(n), spec.name, f"dimension {i} ({d})")
                continue
            else:
                need = self._eval(d, spec.name)
                ok = n == need
            if not ok:
                raise ValueError(f"{spec.name}: expected shape {want}, got {a.shape}: dimension {i} is {n}, "
                                 f"but {d} is {need if not str(d).startswith('>=') else '>= ' + str(need)}")

    def _layout_ok(self, spec: Arg, a: Arr) -> bool:
        if a.size == 0:
            return True  # nothing is read or written (numpy gives empty arrays zero strides)
        if not a.aligned:
            return False
        if spec.layout == PACKED or a.ndim <= 1:
            return a.contiguous()
        inner = 1
        for n in a.shape[1:]:
            inner *= n
        return a.inner_contiguous(a.ndim - 1) and (a.shape[0] == 1 or a.strides[0] >= inner)

    def _float_kind(self, spec: Arg, a: Arr) -> str:
        h = self.hint
        if a.kind in DTYPE_OF_KIND:
            if h is not None and KIND_OF_DTYPE[h] != a.kind:
                raise ValueError(f"{spec.name}: dtype={h.name.lower()} contradicts the array's element type "
                                 f"{kind_name(a.kind)} (dtype= only says how to read 16-bit integer storage)")
            return a.kind
        if a.kind in RAW_2BYTE:
            raise ValueError(f"{spec.name}: a {kind_name(a.kind)} array: pass dtype='bfloat16' (or 'float16') to "
                             "say how to read its bits")
        raise ValueError(f"{spec.name}: unsupported element type {kind_name(a.kind)}; use float16, bfloat16 or "
                         "float32")

    def add(self, spec: Arg, value):
        """Checks one argument (in Signature order) and records it."""
        name = spec.name
        if value is None and spec.default is not None:
            value = spec.default(self.sym)
        if value is None:
            if spec.role == IN and not spec.optional:
                raise TypeError(f"{self.sig.name}: {name} is required")
            self.arrs[name] = None
            return
        host_values = None
        if is_array(value):
            a = as_arr(value, name, hint=self.hint if spec.dtype == FLOAT else None)
        elif spec.convert and spec.role == IN:
            host_values = _convert(value, spec)
            a = as_arr(host_values, name)
        else:
            raise TypeError(f"{name}: expected an array (numpy, torch, or __cuda_array_interface__), got "
                            f"{type(value).__name__}")
        # where it lives
        if a.device and (self.sig.host_only or not (self.device or spec.any_side)):
            raise ValueError(f"{name}: a device array, but {self.sig.name} runs on the host here; give host "
                             "(numpy) arrays")
        if not a.device and self.device and not (spec.upload or spec.any_side):
            raise ValueError(f"{name}: a host array, but {self.sig.name} runs on the device here; give device "
                             "arrays")
        # element type
        if spec.dtype == FLOAT:
            a.kind = self._float_kind(spec, a)
        elif a.kind != spec.dtype:
            if a.device or not spec.convert or spec.role != IN:
                raise ValueError(f"{name}: expected {kind_name(spec.dtype)}, got {kind_name(a.kind)}")
            host_values = _convert(a.obj, spec)
            a = as_arr(host_values, name)
        if spec.like is not None and self.arrs.get(spec.like) is not None and a.kind != self.arrs[spec.like].kind:
            raise ValueError(f"{name}: element type {kind_name(a.kind)} does not match {spec.like}'s "
                             f"{kind_name(self.arrs[spec.like].kind)}")
        self._shape(spec, a)
        # layout and storage
        if not self._layout_ok(spec, a):
            if spec.role == IN and a.framework == "numpy":
                a = _copied(a, name)
            else:
                what = "C-contiguous" if spec.layout == PACKED or a.ndim <= 1 else \
                    "packed in every dimension but the first, rows at least a row apart"
                raise ValueError(f"{name}: must be {what} and element-aligned (got strides {a.strides} elements "
                                 f"for shape {a.shape}); broadcast, overlapping or reversed views "
                                 f"{'cannot be written' if spec.role != IN else 'are not accepted on the device'}")
        if spec.role != IN and a.readonly:
            raise ValueError(f"{name}: the array is read-only, but {self.sig.name} writes it")
        if spec.dtype in (I32, I64):
            if host_values is None and (not a.device or spec.readback or spec.cumulative is not None):
                host_values = host_int_array(a.obj, name, np.int64) if a.device else a.obj
            self.host[name] = None if host_values is None else np.asarray(host_values).reshape(a.shape)
            if spec.cumulative is not None and self.host[name] is not None:
                _check_offsets(name, self.host[name], spec.cumulative, self.sym[spec.cumulative], self.device)
            if spec.end is not None:
                h = self.host[name]
                last = int(h[-1]) if h is not None and h.size else self.sym[spec.cumulative]
                self._bind(spec.end, last, name, "the last entry")
        self.arrs[name], self.objs[name] = a, value

    def upload(self):
        """Copies host metadata (upload=True) next to the call's device arrays."""
        if not self.device:
            return
        ref = next(a for a in self.arrs.values() if a is not None and a.device)
        for spec in self.sig.args:
            a = self.arrs.get(spec.name)
            if a is not None and not a.device and spec.upload:
                dev = to_device_like(ref, np.ascontiguousarray(a.obj), spec.name)
                self.arrs[spec.name] = as_arr(dev, spec.name)
                self.objs[spec.name] = dev


def _copied(a: Arr, name: str) -> Arr:
    c = as_arr(np.array(a.obj, order="C", copy=True), name)
    c.kind = a.kind  # keeps a hint's reading of raw 16-bit storage
    return c


def _convert(value, spec: Arg) -> np.ndarray:
    """A host input converted by value to the argument's element type; integers are range-checked, floats are
    refused where integers are needed, and float32 must hold every finite value."""
    name = spec.name
    want = np.dtype({F32: np.float32, I32: np.int32, I64: np.int64}[spec.dtype])
    ctype = "int32" if spec.dtype == I32 else "int64"
    if want.kind == "i" and not isinstance(value, np.ndarray):
        # A list of Python ints: each checked as it is (numpy would make [2**63, 5] float64, [2**64] objects).
        try:
            obj = np.asarray(value, dtype=object)
        except Exception as e:
            raise TypeError(f"{name}: cannot read {type(value).__name__} as an array ({e})") from None
        flat = [integer(v, f"{name}[{i}]", ctype) for i, v in enumerate(obj.reshape(-1))]
        return np.array(flat, dtype=want).reshape(obj.shape)
    try:
        arr = np.asarray(value)
    except Exception as e:
        raise TypeError(f"{name}: cannot read {type(value).__name__} as an array ({e})") from None
    if arr.size == 0 and not isinstance(value, np.ndarray):
        return np.zeros(arr.shape, want)  # [] is float64 to numpy
    k = arr.dtype.kind
    if want.kind == "f":
        if k not in "fiu":
            raise TypeError(f"{name}: expected real numbers, got {arr.dtype}")
        with np.errstate(over="ignore"):
            out = arr.astype(want)
        if k == "f" and np.any(np.isfinite(arr) & ~np.isfinite(out)):
            raise ValueError(f"{name}: a value is beyond the float32 range")
        return np.ascontiguousarray(out)
    if k not in "iu":
        raise TypeError(f"{name}: expected integers, got {'bool' if k == 'b' else arr.dtype} values")
    info = np.iinfo(want)
    flat = arr.reshape(-1)
    bad = np.nonzero((flat < info.min) | (flat > info.max))[0] if flat.size else []
    if len(bad):
        i = int(bad[0])
        raise ValueError(f"{name}[{i}]: {int(flat[i])} does not fit {want.name}")
    return np.ascontiguousarray(arr.astype(want))


def _check_offsets(name: str, host: np.ndarray, total_sym: str, total: int, device: bool):
    """The extent of the rows the offsets cover, which the library cannot see; on the device also what the CPU
    backend checks itself (start at 0, never decrease), as the GPU cannot read device offsets back."""
    if host.size == 0:
        raise ValueError(f"{name}: needs batch + 1 >= 1 entries (starting with 0)")
    h = host.astype(np.int64)
    if device and h[0] != 0:
        raise ValueError(f"{name}[0] is {int(h[0])}, must be 0")
    dec = np.nonzero(np.diff(h) < 0)[0]
    if device and dec.size:
        i = int(dec[0])
        raise ValueError(f"{name} decreases at sequence {i} ({int(h[i])} then {int(h[i + 1])})")
    if int(h.max()) > total:
        raise ValueError(f"{name}: its entry {int(h.max())} exceeds the {total} tokens given ({total_sym})")


def check(sig: Signature, values: dict, hint=None, backend=None, symbols: dict | None = None) -> Call:
    """Checks every array argument of one call against `sig` (values: name -> object) and returns the Call.
    symbols: shape symbols known from scalar arguments. Raises ValueError / TypeError naming the argument;
    nothing has reached the library yet."""
    hint = parse_dtype(hint)
    specs = {s.name: s for s in sig.args}
    unknown = set(values) - set(specs)
    assert not unknown, f"{sig.name}: {unknown} not described"  # a mistake in the binding, not the caller's
    dev = [n for n, v in values.items() if v is not None and is_device_array(v) and not specs[n].any_side]
    host = [n for n, v in values.items() if v is not None and is_array(v) and not is_device_array(v)
            and not specs[n].any_side and not specs[n].upload]
    if dev and host:
        raise ValueError(f"{sig.name}: mixes host (numpy) arrays ({', '.join(host)}) and device arrays "
                         f"({', '.join(dev)}); give all of them on one side")
    on_device = bool(dev) and not sig.host_only
    if backend is None:
        be = Backend.CUDA if on_device else Backend.CPU
    else:
        be = choice(Backend, backend, "backend")
        if (be == Backend.CUDA) != on_device:
            raise ValueError(f"{sig.name}: backend {be.name.lower()} needs "
                             f"{'device' if be == Backend.CUDA else 'host'} arrays")
    call = Call(sig, hint, on_device, be)
    for sym, value in (symbols or {}).items():
        call._bind(sym, integer(value, sym, "int64"), sig.name, sym)
    for spec in sig.args:
        call.add(spec, values.get(spec.name))
    for group in sig.together:
        given = [n for n in group if call.arrs.get(n) is not None]
        if given and len(given) != len(group):
            raise ValueError(f"{sig.name}: {' and '.join(group)} go together; only {', '.join(given)} given")
    for pred, message in sig.checks:
        if not pred(call.sym):
            raise ValueError(f"{sig.name}: " + message.format(**call.sym))
    call.upload()
    return call


__all__ = ["integer", "real", "choice", "fill_struct", "stream_value", "FLOAT", "F32", "I32", "I64", "IN", "OUT", "INOUT",
           "PACKED", "ROWS", "Shape", "shape", "Arg", "arg", "Signature", "Call", "check"]
