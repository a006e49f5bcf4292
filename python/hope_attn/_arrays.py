"""Describing numpy arrays, PyTorch tensors and __cuda_array_interface__ objects as (pointer, shape, strides,
element type, memory) without copying them, and allocating outputs in the same framework as an input.
Nothing here decides whether an array is acceptable: that is _args.py's job."""

from __future__ import annotations

import dataclasses

import numpy as np

from ._lib import DType

try:  # bfloat16 for numpy, when the ml_dtypes package is installed
    import ml_dtypes as _ml_dtypes

    BFLOAT16_NP = np.dtype(_ml_dtypes.bfloat16)
except Exception:  # pragma: no cover - depends on the environment
    BFLOAT16_NP = None

_DTYPE_NAMES = {"float16": DType.FLOAT16, "fp16": DType.FLOAT16, "half": DType.FLOAT16,
                "bfloat16": DType.BFLOAT16, "bf16": DType.BFLOAT16,
                "float32": DType.FLOAT32, "fp32": DType.FLOAT32, "float": DType.FLOAT32}

# Element kinds: the three library dtypes, and the rest by numpy typestr without byte order ("i4", "u2", "f8").
KIND_OF_DTYPE = {DType.FLOAT16: "f2", DType.BFLOAT16: "bf16", DType.FLOAT32: "f4"}
DTYPE_OF_KIND = {v: k for k, v in KIND_OF_DTYPE.items()}
KIND_NAMES = {"f2": "float16", "bf16": "bfloat16", "f4": "float32", "f8": "float64", "i4": "int32", "i8": "int64",
              "u1": "uint8", "u2": "uint16", "i2": "int16", "b1": "bool"}
RAW_2BYTE = ("u2", "i2", "V2")  # untyped 16-bit storage: float16 or bfloat16 bits, as dtype= says


def kind_name(kind: str) -> str:
    return KIND_NAMES.get(kind, kind)


def parse_dtype(dtype) -> DType | None:
    """A DType from a DType, an int, or a name ("bfloat16", "bf16", "float16", "float32", ...); None passes."""
    if dtype is None or isinstance(dtype, DType):
        return dtype
    if isinstance(dtype, (int, np.integer)) and not isinstance(dtype, bool):
        try:
            return DType(int(dtype))
        except ValueError:
            raise ValueError(f"unknown dtype {int(dtype)}: use 0 (float16), 1 (bfloat16) or 2 (float32)") from None
    name = str(dtype).replace("torch.", "").lower()
    if name in _DTYPE_NAMES:
        return _DTYPE_NAMES[name]
    raise ValueError(f"unknown dtype {dtype!r}: use float16, bfloat16 or float32")


@dataclasses.dataclass
class Arr:
    """A typed view of one buffer. strides are in elements (valid when `aligned`)."""

    obj: object          # the original object (kept alive for the call)
    ptr: int
    shape: tuple
    strides: tuple
    kind: str            # "f2", "bf16", "f4", "i4", "i8", "u1", or another typestr
    device: bool         # True: CUDA device memory
    framework: str       # "numpy", "torch", "cupy", "cai"
    stream: int | None = None  # from the interface's "stream" entry
    readonly: bool = False
    aligned: bool = True  # pointer and every stride a whole number of elements

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        n = 1
        for s in self.shape:
            n *= int(s)
        return n

    @property
    def dtype(self) -> DType:
        try:
            return DTYPE_OF_KIND[self.kind]
        except KeyError:
            raise ValueError(f"unsupported element type {kind_name(self.kind)}: use float16, bfloat16 or "
                             "float32") from None

    def inner_contiguous(self, ndims: int) -> bool:
        """True when the last `ndims` dimensions are packed (C order); always for an empty array."""
        if self.size == 0:
            return True
        expect = 1
        for dim, stride in zip(reversed(self.shape[-ndims:]), reversed(self.strides[-ndims:])):
            if dim > 1 and stride != expect:
                return False
            expect *= dim
        return True

    def contiguous(self) -> bool:
        return self.inner_contiguous(self.ndim) if self.ndim else True


def _kind_of_numpy(dt: np.dtype, hint: DType | None) -> str:
    if BFLOAT16_NP is not None and dt == BFLOAT16_NP:
        return "bf16"
    kind = dt.str[1:] if dt.isnative else dt.str  # ">f4" on a little-endian machine is not float32
    if kind in RAW_2BYTE and hint in (DType.BFLOAT16, DType.FLOAT16):
        return KIND_OF_DTYPE[hint]
    return kind


_TORCH_KINDS = {"torch.float16": "f2", "torch.bfloat16": "bf16", "torch.float32": "f4", "torch.float64": "f8",
                "torch.int32": "i4", "torch.int64": "i8", "torch.uint8": "u1", "torch.int16": "i2",
                "torch.uint16": "u2", "torch.bool": "b1"}
_ITEMSIZE = {"f2": 2, "bf16": 2, "f4": 4, "f8": 8, "i4": 4, "i8": 8, "u1": 1, "i2": 2, "u2": 2, "b1": 1}


def _typestr_kind(typestr: str, hint: DType | None) -> str:
    t = typestr[1:] if typestr[0] in "<|=" else typestr  # device memory is little-endian
    if t in RAW_2BYTE and (hint in (DType.BFLOAT16, DType.FLOAT16) or t == "V2"):
        return "bf16" if hint is None else KIND_OF_DTYPE[hint]
    return t


def _framework(obj) -> str:
    return type(obj).__module__.split(".")[0]


def is_array(obj) -> bool:
    """A numpy array, a torch tensor or an object with __cuda_array_interface__ (not a list or a scalar)."""
    return isinstance(obj, np.ndarray) or (_framework(obj) == "torch" and hasattr(obj, "data_ptr")) or \
        hasattr(obj, "__cuda_array_interface__")


def is_device_array(obj) -> bool:
    if obj is None or isinstance(obj, np.ndarray):
        return False
    if _framework(obj) == "torch" and hasattr(obj, "is_cuda"):
        return bool(obj.is_cuda)
    return hasattr(obj, "__cuda_array_interface__")


def _elements(byte_strides, itemsize):
    return tuple(int(s) // itemsize for s in byte_strides), all(int(s) % itemsize == 0 for s in byte_strides)


def as_arr(obj, name: str, hint: DType | None = None, np_dtype=None) -> Arr:
    """Describes obj as it is (no copy). Anything that is not an array goes through np.asarray(obj, np_dtype)."""
    fw = _framework(obj)
    if fw == "torch" and hasattr(obj, "data_ptr"):
        kind = _TORCH_KINDS.get(str(obj.dtype), str(obj.dtype))
        if kind in RAW_2BYTE and hint in (DType.BFLOAT16, DType.FLOAT16):
            kind = KIND_OF_DTYPE[hint]
        ptr = int(obj.data_ptr())
        return Arr(obj, ptr, tuple(int(s) for s in obj.shape), tuple(int(s) for s in obj.stride()), kind,
                   bool(obj.is_cuda), "torch", aligned=ptr % max(int(obj.element_size()), 1) == 0)
    if not isinstance(obj, np.ndarray) and hasattr(obj, "__cuda_array_interface__"):
        cai = obj.__cuda_array_interface__
        kind = _typestr_kind(cai["typestr"], hint)
        shape = tuple(int(s) for s in cai["shape"])
        itemsize = int(cai["typestr"][2:]) if cai["typestr"][2:].isdigit() else _ITEMSIZE.get(kind, 1)
        aligned = True
        if cai.get("strides") is None:
            strides, acc = [], 1
            for s in reversed(shape):
                strides.append(acc)
                acc *= s
            strides = tuple(reversed(strides))
        else:
            strides, aligned = _elements(cai["strides"], itemsize)
        data = cai["data"]
        ptr = int(data[0]) if data[0] else 0
        stream = cai.get("stream")
        return Arr(obj, ptr, shape, strides, kind, True, fw if fw == "cupy" else "cai",
                   None if stream is None else int(stream), readonly=bool(data[1]),
                   aligned=aligned and ptr % itemsize == 0)
    arr = obj if isinstance(obj, np.ndarray) and np_dtype is None else np.asarray(obj, dtype=np_dtype)
    itemsize = arr.dtype.itemsize or 1
    strides, aligned = _elements(arr.strides, itemsize)
    ptr = int(arr.ctypes.data)
    return Arr(arr, ptr, tuple(arr.shape), strides, _kind_of_numpy(arr.dtype, hint), False, "numpy",
               readonly=not arr.flags.writeable, aligned=aligned and ptr % itemsize == 0)


def host_int_array(obj, name: str, np_dtype) -> np.ndarray | None:
    """A host numpy copy of a small integer array (cu_seqlens, seq_lens), reading a device one back through
    its framework (this synchronises); None when that is impossible."""
    if obj is None:
        return None
    fw = _framework(obj)
    if not is_device_array(obj):
        if fw == "torch":
            return obj.numpy().astype(np_dtype)
        return np.asarray(obj).astype(np_dtype)
    if fw == "torch":
        return obj.detach().cpu().numpy().astype(np_dtype)
    if fw == "cupy":
        return obj.get().astype(np_dtype)
    return None


def new_array(ref: Arr, shape, kind: str | None, name: str, fill=None):
    """A new array of `shape` where ref lives (same framework and device): of ref's own element type when kind is
    None (a uint16 array stays uint16), else of `kind`. fill: None (uninitialised) or a value for every element."""
    shape = tuple(int(s) for s in shape)
    if ref.framework == "torch":
        import torch

        tdt = ref.obj.dtype if kind is None else {
            "f2": torch.float16, "bf16": torch.bfloat16, "f4": torch.float32, "i4": torch.int32,
            "i8": torch.int64, "u1": torch.uint8}[kind]
        if fill is None:
            return torch.empty(shape, dtype=tdt, device=ref.obj.device)
        return torch.full(shape, fill, dtype=tdt, device=ref.obj.device)
    if ref.framework == "cupy":
        import cupy

        cdt = ref.obj.dtype if kind is None else {
            "f2": cupy.float16, "f4": cupy.float32, "i4": cupy.int32, "i8": cupy.int64, "u1": cupy.uint8,
            "bf16": cupy.uint16}[kind]
        with ref.obj.device:
            return cupy.empty(shape, dtype=cdt) if fill is None else cupy.full(shape, fill, dtype=cdt)
    if ref.framework == "numpy":
        if kind is None:
            ndt = ref.obj.dtype
        elif kind == "bf16":
            ndt = BFLOAT16_NP if BFLOAT16_NP is not None else np.uint16
        else:
            ndt = {"f2": np.float16, "f4": np.float32, "i4": np.int32, "i8": np.int64, "u1": np.uint8}[kind]
        return np.empty(shape, dtype=ndt) if fill is None else np.full(shape, fill, dtype=ndt)
    raise ValueError(f"{name}: cannot allocate an output next to a plain __cuda_array_interface__ object; "
                     f"pass {name}= yourself (or use PyTorch / CuPy arrays)")


def to_device_like(ref: Arr, host: np.ndarray, name: str):
    """Copies a small host array to ref's device through ref's framework."""
    if ref.framework == "torch":
        import torch

        return torch.as_tensor(host, device=ref.obj.device)
    if ref.framework == "cupy":
        import cupy

        with ref.obj.device:
            return cupy.asarray(host)
    raise ValueError(f"{name}: must be a device array (the other inputs are device arrays)")
