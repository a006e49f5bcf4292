"""Import, version, device count, errors."""
import os
import re

import numpy as np
import pytest

import hope_attn as ha

HEADER = os.path.join(os.path.dirname(__file__), "..", "..", "include", "hope_attn.h")


def test_import_and_version_matches_header():
    text = open(HEADER).read()
    want = tuple(int(re.search(rf"#define HOPE_VERSION_{p} (\d+)", text).group(1)) for p in ("MAJOR", "MINOR", "PATCH"))
    assert ha.version() == want
    assert ha.version_int() == want[0] * 10000 + want[1] * 100 + want[2]
    assert os.path.exists(ha.library_path()) or ha.library_path().startswith("libhope_attn")


def test_cuda_device_count_is_a_count():
    n = ha.cuda_device_count()
    assert isinstance(n, int) and n >= 0


def test_status_strings():
    assert ha.status_string(ha.Status.SUCCESS) == "HOPE_SUCCESS"
    assert ha.status_string(ha.Status.ERROR_INVALID_VALUE) == "HOPE_ERROR_INVALID_VALUE"
    assert ha.status_string(ha.Status.ERROR_NO_DEVICE) == "HOPE_ERROR_NO_DEVICE"
    assert ha.status_string(1234) == "HOPE_ERROR_UNKNOWN_STATUS"


def test_positions_error_carries_status_and_message():
    with pytest.raises(ha.HopeError) as e:
        ha.positions([ha.text(3), ha.video(0, 2, 2)], "diagonal")
    err = e.value
    assert err.status == ha.Status.ERROR_INVALID_VALUE
    assert err.status_name == "HOPE_ERROR_INVALID_VALUE"
    assert "segments[1]" in err.message
    assert "HOPE_ERROR_INVALID_VALUE" in str(err) and err.message in str(err)


def test_bad_default_scale_raises():
    with pytest.raises(ha.HopeError) as e:
        ha.positions([ha.video(2, 2, 2)], "diagonal", default_scale=0.0)
    assert e.value.status == ha.Status.ERROR_INVALID_VALUE and e.value.message


def test_cos_sin_bad_config_raises():
    with pytest.raises(ha.HopeError) as e:
        ha.cos_sin("hope", np.zeros((3, 4), np.float32), head_dim=8, sections=(1, 1, 1))  # sum 3 != 4
    assert e.value.status == ha.Status.ERROR_INVALID_VALUE and e.value.message
    with pytest.raises(ha.HopeError) as e:
        ha.cos_sin("vanilla", np.zeros((3, 4), np.float32), head_dim=7)
    assert e.value.status == ha.Status.ERROR_INVALID_VALUE and e.value.message


def test_attention_gqa_mismatch_raises():
    q = np.zeros((4, 3, 8), np.float32)
    k = np.zeros((4, 2, 8), np.float32)
    with pytest.raises(ha.HopeError) as e:
        ha.attention(q, k, k)
    assert e.value.status == ha.Status.ERROR_INVALID_VALUE and e.value.message


def test_attention_bad_cu_seqlens_raises():
    q = np.zeros((4, 2, 8), np.float32)
    with pytest.raises(ha.HopeError) as e:
        ha.attention(q, q, q, [0, 3, 2], [0, 2, 4])  # decreasing
    assert e.value.status == ha.Status.ERROR_INVALID_VALUE and e.value.message


# A library built without CUDA refuses CUDA-backend calls with NOT_SUPPORTED instead of NO_DEVICE.
NO_GPU_STATUS = ha.Status.ERROR_NO_DEVICE if ha.build_info()["cuda"] == "on" else ha.Status.ERROR_NOT_SUPPORTED


def test_cuda_backend_without_gpu_is_no_device():
    if ha.cuda_device_count() > 0:
        pytest.skip("a GPU is present: the no-device path cannot be exercised")
    cfg = ha.RopeConfig("hope", 8, (2, 1, 1), 1e4)
    with pytest.raises(ha.HopeError) as e:
        ha.RopeCache(cfg, 4, memory="device")
    assert e.value.status == NO_GPU_STATUS and e.value.message


def test_python_side_validation():
    with pytest.raises(ValueError):
        ha.positions([("video", 1, 2)], "diagonal")  # wrong tuple arity
    with pytest.raises(ValueError):
        ha.positions([ha.text(2)], "spiral")
    with pytest.raises(ValueError):
        ha.rope_apply(np.zeros((2, 1, 8), np.float32), np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32))
