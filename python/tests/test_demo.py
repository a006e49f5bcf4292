"""The demo of the Python package (hope-attn-demo, python -m hope_attn): it passes its own float64 check, and
prints the same report as the C demo (examples/hope_attn_demo.c, from the build tree of the library under test)
for the same arguments, times aside."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

import hope_attn as ha
from hope_attn import demo

ARGS = [["--text", "7", "--video", "3x5x7", "--image", "4x6", "--text", "9", "--heads", "4:2", "--head-dim", "64"],
        ["--dtype", "fp16", "--rope", "mrope", "--scale", "random:7", "--video", "2x3x4", "--text", "5"],
        ["--dtype", "fp32", "--rope", "vanilla", "--text", "129", "--check-rows", "1", "--start", "100"]]


def _report(text: str) -> str:
    """A report without its timings."""
    return re.sub(r"\[(cpu )?[0-9]+ ms\]", "", re.sub(r"(time +: ).*", r"\1", text))


@pytest.mark.parametrize("args", ARGS, ids=["bf16_mixed", "fp16_mrope_random", "fp32_vanilla_start"])
def test_demo_passes_and_matches_the_c_demo(args, capsys):
    assert demo.main(args) == 0
    out = capsys.readouterr().out
    assert "result     : PASS" in out and "vs float64 :" in out
    c_demo = pathlib.Path(ha.library_path()).resolve().parent / "examples" / "hope_attn_demo"
    if not c_demo.exists():
        pytest.skip(f"no C demo beside the library ({c_demo}): the report comparison needs a build tree")
    c_out = subprocess.run([str(c_demo), *args], capture_output=True, text=True, check=True).stdout
    assert _report(out) == _report(c_out)


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        demo.main(["--video", "3x5"])
    assert e.value.code == 2
    assert "--video" in capsys.readouterr().err


def test_module_entry_point_runs():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(pathlib.Path(ha.__file__).parent.parent), env.get("PYTHONPATH", "")])
    r = subprocess.run([sys.executable, "-m", "hope_attn", "--text", "5", "--video", "2x2x2", "--head-dim", "32"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "result     : PASS" in r.stdout
