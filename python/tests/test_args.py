"""The argument layer itself (hope_attn/_args.py): the declarative Signature, checked without any library call."""
import numpy as np
import pytest

from hope_attn import _args
from hope_attn._args import F32, I32, OUT, ROWS, Signature, arg, check, shape

SIG = Signature("example", (
    arg("x", shape("tokens", "heads", "d"), shape("tokens", "d", heads=1), layout=ROWS),
    arg("table", (">=tokens", "rd // 2"), dtype=F32, convert=True, optional=True),
    arg("offsets", ("n",), dtype=I32, convert=True, cumulative="tokens", end="covered",
        default=lambda s: [0, s["tokens"]]),
    arg("out", ("heads", "covered"), dtype=F32, role=OUT),
), checks=((lambda s: s["d"] % 2 == 0, "d must be even, got {d}"),))


def test_symbols_bind_across_arguments_and_from_scalars():
    x = np.zeros((5, 2, 8), np.float32)
    c = check(SIG, {"x": x, "table": np.zeros((7, 3)), "offsets": [0, 2, 4]}, symbols={"rd": 6})
    assert c.sym == {"rd": 6, "tokens": 5, "heads": 2, "d": 8, "n": 3, "covered": 4}
    assert c["table"].kind == "f4" and c["offsets"].kind == "i4"  # converted by value
    assert c.bound_by["d"] == "x" and c.host["offsets"].tolist() == [0, 2, 4]
    out = c.alloc("out", (c.sym["heads"], c.sym["covered"]), kind=F32)
    assert out.shape == (2, 4) and c.ptr("out") == out.ctypes.data
    c2 = check(SIG, {"x": np.zeros((3, 8), np.float32)}, symbols={"rd": 8})  # [tokens, d]: heads implied 1
    assert c2.sym["heads"] == 1 and c2.host["offsets"].tolist() == [0, 3]  # the default offsets
    with pytest.raises(ValueError, match=r"table: expected shape \[>=tokens, rd // 2\].*dimension 1 is 3, but rd // 2 is 4"):
        check(SIG, {"x": x, "table": np.zeros((7, 3), np.float32)}, symbols={"rd": 8})
    with pytest.raises(ValueError, match="table.*dimension 0 is 4, but >=tokens is >= 5"):
        check(SIG, {"x": x, "table": np.zeros((4, 3), np.float32)}, symbols={"rd": 6})
    with pytest.raises(ValueError, match="d must be even, got 7"):
        check(SIG, {"x": np.zeros((5, 2, 7), np.float32)}, symbols={"rd": 6})
    with pytest.raises(ValueError, match=r"out: .*dimension 1 \(covered\) is 5, but covered is 4"):
        check(SIG, {"x": x, "offsets": [0, 4], "out": np.zeros((2, 5), np.float32)}, symbols={"rd": 6})


def test_scalars_are_range_checked_into_their_c_types():
    assert _args.integer(2**31 - 1, "n") == 2**31 - 1
    assert _args.integer(np.int64(-5), "n", "int64") == -5
    for bad, exc in ((2**31, ValueError), (-2**31 - 1, ValueError), (3.0, TypeError), ("3", TypeError),
                     (None, TypeError), (np.float32(1), TypeError)):
        with pytest.raises(exc, match="n"):
            _args.integer(bad, "n")
    with pytest.raises(ValueError):
        _args.integer(-1, "seed", "uint64")
    assert _args.real(1e38, "s") == 1e38 and np.isnan(_args.real(float("nan"), "s"))
    with pytest.raises(ValueError, match="float32"):
        _args.real(1e39, "s")
    assert _args.real(1e39, "budget", "float64") == 1e39
    with pytest.raises(TypeError):
        _args.real("1", "s")
    from hope_attn._lib import hope_merge_params_t
    p = _args.fill_struct(hope_merge_params_t(), num_tokens=2**40, num_heads=3, out=None)
    assert p.num_tokens == 2**40 and p.num_heads == 3
    with pytest.raises(ValueError, match="num_heads"):
        _args.fill_struct(hope_merge_params_t(), num_heads=2**32 + 3)
