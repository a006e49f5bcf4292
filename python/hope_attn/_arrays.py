"""Turning numpy arrays, PyTorch tensors and __cuda_array_interface__ objects into (pointer, shape, strides,
dtype, memory) descriptions the C calls take, and allocating outputs in the same framework as an input."""

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


def parse_dtype(dtype) -> DType | None:
    """A DType from a DType, an int, or a name ("bfloat16", "bf16", "float16", "float32", ...); None passes."""
    if dtype is None or isinstance(dtype, DType):
        return dtype
    if isinstance(dtype, (int, np.integer)):
        return DType(int(dtype))
    name = str(dtype).replace("torch.", "").lower()
    if name in _DTYPE_NAMES:
        return _DTYPE_NAMES[name]
    raise ValueError(f"unknown dtype {dtype!r}: use float16, bfloat16 or float32")


@dataclasses.dataclass
class Arr:
    """A typed view of one buffer. strides are in elements."""

    obj: object          # the original object (kept alive for the call)
    ptr: int
    shape: tuple
    strides: tuple
    kind: str            # "f2", "bf16", "f4", "i4", "i8", "u1", or another typestr
    device: bool         # True: CUDA device memory
    framework: str       # "numpy", "torch", "cupy", "cai"
    stream: int | None = None  # from the interface's "stream" entry

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
            return {"f2": DType.FLOAT16, "bf16": DType.BFLOAT16, "f4": DType.FLOAT32}[self.kind]
        except KeyError:
            raise ValueError(f"unsupported element type {self.kind!r}: use float16, bfloat16 or float32") from None

    def inner_contiguous(self, ndims: int) -> bool:
        """True when the last `ndims` dimensions are packed (C order)."""
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
    if dt == np.float16:
        return "f2"
    if dt == np.float32:
        return "f4"
    if dt == np.int32:
        return "i4"
    if dt == np.int64:
        return "i8"
    if dt in (np.uint16, np.int16) and hint == DType.BFLOAT16:
        return "bf16"
    if dt == np.uint8:
        return "u1"
    return dt.str


_TORCH_KINDS = {"torch.float16": "f2", "torch.bfloat16": "bf16", "torch.float32": "f4", "torch.int32": "i4",
                "torch.int64": "i8", "torch.uint8": "u1", "torch.int16": "i2", "torch.uint16": "u2"}
_ITEMSIZE = {"f2": 2, "bf16": 2, "f4": 4, "i4": 4, "i8": 8, "u1": 1, "i2": 2, "u2": 2}


def _typestr_kind(typestr: str, hint: DType | None) -> str:
    t = typestr[1:]
    if t == "f2":
        return "f2"
    if t == "f4":
        return "f4"
    if t == "i4":
        return "i4"
    if t == "i8":
        return "i8"
    if t == "u1":
        return "u1"
    if t in ("u2", "i2", "V2") and (hint == DType.BFLOAT16 or t == "V2"):
        return "bf16"
    return t


def _framework(obj) -> str:
    return type(obj).__module__.split(".")[0]


def is_device_array(obj) -> bool:
    if obj is None or isinstance(obj, np.ndarray):
        return False
    if _framework(obj) == "torch" and hasattr(obj, "is_cuda"):
        return bool(obj.is_cuda)
    return hasattr(obj, "__cuda_array_interface__")


def as_arr(obj, name: str, hint: DType | None = None, np_dtype=None) -> Arr:
    """Describes obj. numpy inputs (and lists) are converted with np.asarray(obj, np_dtype) when np_dtype is
    given; device inputs are never copied."""
    fw = _framework(obj)
    if fw == "torch" and hasattr(obj, "data_ptr"):
        kind = _TORCH_KINDS.get(str(obj.dtype), str(obj.dtype))
        if kind in ("u2", "i2") and hint == DType.BFLOAT16:
            kind = "bf16"
        return Arr(obj, int(obj.data_ptr()), tuple(int(s) for s in obj.shape),
                   tuple(int(s) for s in obj.stride()), kind, bool(obj.is_cuda), "torch")
    if not isinstance(obj, np.ndarray) and hasattr(obj, "__cuda_array_interface__"):
        cai = obj.__cuda_array_interface__
        kind = _typestr_kind(cai["typestr"], hint)
        shape = tuple(int(s) for s in cai["shape"])
        itemsize = int(cai["typestr"][2:]) if cai["typestr"][2:].isdigit() else _ITEMSIZE.get(kind, 1)
        if cai.get("strides") is None:
            strides, acc = [], 1
            for s in reversed(shape):
                strides.append(acc)
                acc *= s
            strides = tuple(reversed(strides))
        else:
            strides = tuple(int(s) // itemsize for s in cai["strides"])
        ptr = int(cai["data"][0]) if cai["data"][0] else 0
        stream = cai.get("stream")
        return Arr(obj, ptr, shape, strides, kind, True, fw if fw == "cupy" else "cai",
                   None if stream is None else int(stream))
    arr = obj if isinstance(obj, np.ndarray) and np_dtype is None else np.asarray(obj, dtype=np_dtype)
    if np_dtype is not None and arr.dtype != np.dtype(np_dtype):
        arr = arr.astype(np_dtype)
    itemsize = arr.dtype.itemsize
    if any(s % itemsize for s in arr.strides):
        arr = np.ascontiguousarray(arr)
    return Arr(arr, int(arr.ctypes.data), tuple(arr.shape), tuple(s // itemsize for s in arr.strides),
               _kind_of_numpy(arr.dtype, hint), False, "numpy")


def host_int_array(obj, name: str, np_dtype) -> np.ndarray | None:
    """A host numpy copy of a small integer array (cu_seqlens, seq_lens), reading a device one back through
    its framework (this synchronises); None when that is impossible."""
    if obj is None:
        return None
    if isinstance(obj, np.ndarray) or not is_device_array(obj):
        fw = _framework(obj)
        if fw == "torch":
            return obj.numpy().astype(np_dtype)
        return np.asarray(obj, dtype=np_dtype)
    fw = _framework(obj)
    if fw == "torch":
        return obj.detach().cpu().numpy().astype(np_dtype)
    if fw == "cupy":
        return obj.get().astype(np_dtype)
    return None


def numpy_dtype_for(dtype: DType, like: Arr | None = None):
    if dtype == DType.FLOAT32:
        return np.float32
    if dtype == DType.FLOAT16:
        return np.float16
    if like is not None and like.framework == "numpy" and like.kind == "bf16":
        return like.obj.dtype  # ml_dtypes bfloat16 or the caller's uint16
    return BFLOAT16_NP if BFLOAT16_NP is not None else np.uint16


def empty_like_framework(ref: Arr, shape, kind: str, name: str):
    """A new uninitialised array of `shape` and element `kind` where ref lives (same framework and device)."""
    shape = tuple(int(s) for s in shape)
    if ref.framework == "torch":
        import torch

        tdt = {"f2": torch.float16, "bf16": torch.bfloat16, "f4": torch.float32, "i4": torch.int32,
               "i8": torch.int64, "u1": torch.uint8}[kind]
        return torch.empty(shape, dtype=tdt, device=ref.obj.device)
    if ref.framework == "cupy":
        import cupy

        cdt = {"f2": cupy.float16, "f4": cupy.float32, "i4": cupy.int32, "i8": cupy.int64,
               "u1": cupy.uint8, "bf16": cupy.uint16}[kind]
        with ref.obj.device:
            return cupy.empty(shape, dtype=cdt)
    if ref.framework == "numpy":
        if kind == "bf16":
            ndt = ref.obj.dtype if ref.kind == "bf16" else (BFLOAT16_NP if BFLOAT16_NP is not None else np.uint16)
        else:
            ndt = {"f2": np.float16, "f4": np.float32, "i4": np.int32, "i8": np.int64, "u1": np.uint8}[kind]
        return np.empty(shape, dtype=ndt)
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
