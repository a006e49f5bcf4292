"""GPU path through __cuda_array_interface__ / PyTorch tensors. Skips unless torch or cupy with a CUDA device
is importable (the CPU tests above cover every function on the host)."""
import numpy as np
import pytest

import hope_attn as ha
from reference import attention_ref, rel_err, rotate_ref


def _framework():
    try:
        import torch

        if torch.cuda.is_available() and ha.cuda_device_count() > 0:
            return "torch"
    except Exception:
        pass
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0 and ha.cuda_device_count() > 0:
            return "cupy"
    except Exception:
        pass
    return None


FW = _framework()
pytestmark = pytest.mark.skipif(FW is None, reason="no GPU: needs torch or cupy with a CUDA device")


def to_dev(a):
    if FW == "torch":
        import torch

        return torch.as_tensor(np.ascontiguousarray(a)).cuda()
    import cupy

    return cupy.asarray(np.ascontiguousarray(a))


def to_host(a):
    if FW == "torch":
        import torch

        torch.cuda.synchronize()
        return a.float().cpu().numpy() if a.dtype != torch.float32 else a.cpu().numpy()
    import cupy

    cupy.cuda.runtime.deviceSynchronize()
    return cupy.asnumpy(a)


def _tables(n, d, seed=0):
    pos = np.float32(np.random.default_rng(seed).uniform(0, 2e5, size=(3, n)))
    return ha.cos_sin("hope", pos, head_dim=d, sections=ha.default_sections(d))


def test_rope_apply_float32_on_gpu():
    rng = np.random.default_rng(0)
    x = np.float32(rng.standard_normal((129, 4, 128)))
    cos, sin = _tables(129, 128)
    out = ha.rope_apply(to_dev(x), to_dev(cos), to_dev(sin))
    assert np.max(np.abs(to_host(out) - rotate_ref(x, cos, sin))) <= 1e-5


def test_device_rope_cache_matches_host():
    cfg = ha.RopeConfig("hope", 128, (16, 24, 24), 1e6)
    pos, _ = ha.positions([ha.text(7), ha.video(4, 6, 8, 0.75), ha.text(9)], "diagonal", start=500000.0)
    n = pos.shape[1]
    with ha.RopeCache(cfg, n, memory="device") as cache:
        cache.fill(pos)  # host positions
        cos, sin = ha.cos_sin(cfg, pos)
        if FW == "torch":
            import torch

            torch.cuda.synchronize()
        dev_cos = to_host(_wrap(cache.cos))
        dev_sin = to_host(_wrap(cache.sin))
    assert np.max(np.abs(dev_cos - cos)) <= 2e-6 and np.max(np.abs(dev_sin - sin)) <= 2e-6


def _wrap(view):
    if FW == "torch":
        import torch

        return torch.as_tensor(view, device="cuda")
    import cupy

    return cupy.asarray(view)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("d", [64, 128])
def test_attention_on_gpu_matches_float64(dtype, d):
    if FW != "torch" and dtype == "bfloat16":
        pytest.skip("bfloat16 device arrays need torch")
    rng = np.random.default_rng(d)
    lens_q, lens_k = [1, 0, 37, 129], [1, 0, 64, 129]
    cu_q = np.concatenate([[0], np.cumsum(lens_q)]).astype(np.int32)
    cu_k = np.concatenate([[0], np.cumsum(lens_k)]).astype(np.int32)
    hq, hk = 8, 2
    q = rng.standard_normal((cu_q[-1], hq, d))
    k = rng.standard_normal((cu_k[-1], hk, d))
    v = rng.standard_normal((cu_k[-1], hk, d))
    cq, sq = _tables(cu_q[-1], d, 1)
    ck, sk = _tables(cu_k[-1], d, 2)
    if FW == "torch":
        import torch

        tdt = torch.float16 if dtype == "float16" else torch.bfloat16
        qd, kd, vd = (torch.as_tensor(a, dtype=torch.float32).to(tdt).cuda() for a in (q, k, v))
        qh, kh, vh = (a.float().cpu().numpy().astype(np.float64) for a in (qd, kd, vd))
    else:
        qd, kd, vd = (to_dev(a.astype(np.float16)) for a in (q, k, v))
        qh, kh, vh = (a.astype(np.float16).astype(np.float64) for a in (q, k, v))
    out, lse = ha.attention(qd, kd, vd, to_dev(cu_q), to_dev(cu_k), causal=True, cos_q=to_dev(cq),
                            sin_q=to_dev(sq), cos_k=to_dev(ck), sin_k=to_dev(sk), return_lse=True,
                            max_seqlen_q=129, max_seqlen_k=129)
    rnd = np.float16 if dtype == "float16" else "bfloat16"
    ref_o, ref_l = attention_ref(qh, kh, vh, cu_q, cu_k, True, cos_q=cq, sin_q=sq, cos_k=ck, sin_k=sk,
                                 round_rotated=rnd)
    o, l_ = to_host(out), to_host(lse)
    assert np.all(np.isfinite(o))
    tol_o, tol_l = (2e-3, 5e-3) if dtype == "float16" else (1e-2, 2e-2)
    assert rel_err(o, ref_o) <= tol_o
    fin = np.isfinite(ref_l)
    assert np.array_equal(np.isfinite(l_), fin)
    assert np.max(np.abs(l_[fin] - ref_l[fin])) <= tol_l


def test_explicit_stream_argument():
    if FW != "torch":
        pytest.skip("uses torch streams")
    import torch

    x = np.float32(np.random.default_rng(3).standard_normal((33, 2, 64)))
    cos, sin = _tables(33, 64)
    s = torch.cuda.Stream()
    xd, cd, sd = to_dev(x), to_dev(cos), to_dev(sin)
    torch.cuda.synchronize()
    with torch.cuda.stream(s):
        out = torch.empty_like(xd)
    ha.rope_apply(xd, cd, sd, out=out, stream=s)
    s.synchronize()
    assert np.max(np.abs(out.cpu().numpy() - rotate_ref(x, cos, sin))) <= 1e-5
