"""The binding's __cuda_array_interface__ plumbing, exercised without a GPU: fake device arrays (host memory
behind the interface) must be parsed into the right pointers, shapes, strides, dtypes and streams, must pick
the CUDA backend, and the library must then refuse with HOPE_ERROR_NO_DEVICE (they are never dereferenced)."""
import numpy as np
import pytest

import hope_attn as ha
from fuzz_util import FakeCuda
from hope_attn import _arrays, api


NO_GPU = ha.cuda_device_count() == 0
# A library built without CUDA refuses CUDA-backend calls with NOT_SUPPORTED instead of NO_DEVICE.
NO_GPU_STATUS = ha.Status.ERROR_NO_DEVICE if ha.build_info()["cuda"] == "on" else ha.Status.ERROR_NOT_SUPPORTED
needs_no_gpu = pytest.mark.skipif(not NO_GPU, reason="fake device arrays would be dereferenced on a real GPU")


def test_interface_is_parsed_in_elements():
    base = np.zeros((5, 3, 8), np.float32)
    view = base[::2]  # token stride 2 * 24 elements
    a = _arrays.as_arr(FakeCuda(view, stream=7), "x")
    assert a.device and a.framework == "cai" and a.kind == "f4"
    assert a.shape == (3, 3, 8) and a.strides == (48, 8, 1) and a.ptr == view.ctypes.data and a.stream == 7
    b = _arrays.as_arr(FakeCuda(np.zeros((4, 6), np.float16), strides=False), "x")
    assert b.kind == "f2" and b.strides == (6, 1) and b.stream is None
    c = _arrays.as_arr(FakeCuda(np.zeros((2, 2), np.uint16)), "x", hint=ha.DType.BFLOAT16)
    assert c.kind == "bf16" and c.dtype == ha.DType.BFLOAT16


def test_stream_choice():
    a = _arrays.as_arr(FakeCuda(np.zeros(2, np.float32), stream=1), "x")
    assert api._stream_of(None, [a]) == 1            # the interface's stream (1: the legacy default stream)
    assert api._stream_of(1234, [a]) == 1234         # an explicit stream wins

    class S:
        cuda_stream = 99

    assert api._stream_of(S(), [a]) == 99            # a torch-like stream object
    b = _arrays.as_arr(FakeCuda(np.zeros(2, np.float32)), "x")
    assert api._stream_of(None, [b]) is None         # nothing known: NULL, the default stream


def test_mixing_host_and_device_is_refused():
    x = np.zeros((4, 1, 8), np.float32)
    cos = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError, match="mixes host"):
        ha.rope_apply(FakeCuda(x), FakeCuda(cos), FakeCuda(cos), out=x)
    with pytest.raises(ValueError, match="backend cuda needs device"):
        ha.rope_apply(x, cos, cos, backend="cuda")


def test_outputs_cannot_be_allocated_next_to_a_plain_interface_object():
    x = FakeCuda(np.zeros((4, 1, 8), np.float32))
    cos = FakeCuda(np.ones((4, 4), np.float32))
    with pytest.raises(ValueError, match="pass out="):
        ha.rope_apply(x, cos, cos)


@needs_no_gpu
def test_device_arrays_reach_the_cuda_backend():
    x = np.zeros((4, 2, 8), np.float32)
    out = np.zeros_like(x)
    cos = np.ones((4, 4), np.float32)
    with pytest.raises(ha.HopeError) as e:
        ha.rope_apply(FakeCuda(x), FakeCuda(cos), FakeCuda(cos), out=FakeCuda(out))
    assert e.value.status == NO_GPU_STATUS and e.value.message
    q = np.zeros((4, 2, 64), np.float16)
    cu = np.array([0, 4], np.int32)
    with pytest.raises(ha.HopeError) as e:
        ha.attention(FakeCuda(q), FakeCuda(q), FakeCuda(q), FakeCuda(cu), FakeCuda(cu), out=FakeCuda(q.copy()),
                     max_seqlen_q=4, max_seqlen_k=4, causal=True)
    assert e.value.status == NO_GPU_STATUS and e.value.message
    with pytest.raises(ValueError, match="max_seqlen_q"):  # device cu_seqlens of an unknown framework
        ha.attention(FakeCuda(q), FakeCuda(q), FakeCuda(q), FakeCuda(cu), FakeCuda(cu), out=FakeCuda(q.copy()))
