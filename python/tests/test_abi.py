"""The ctypes mirror has the same enum values and struct layouts (size, every field's offset) as the header,
checked against the C compiler."""
import ctypes
import os
import re
import shutil
import subprocess

import pytest

import hope_attn as ha
from hope_attn import _lib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
HEADER = os.path.join(ROOT, "include", "hope_attn.h")

STRUCTS = ["hope_segment_t", "hope_positions_params_t", "hope_scale_params_t", "hope_rope_config_t",
           "hope_rope_apply_params_t", "hope_attention_params_t", "hope_paged_kv_t", "hope_kv_append_params_t", "hope_decode_params_t",
           "hope_merge_params_t"]


def _compiler():
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc):
            return cc
    pytest.fail("no C compiler found (cc/gcc/clang): the library itself cannot have been built")


def test_struct_layouts_match_the_compiler(tmp_path):
    lines = ['#include <stdio.h>', '#include <stddef.h>', '#include "hope_attn.h"', "int main(void) {"]
    for name in STRUCTS:
        st = getattr(_lib, name)
        lines.append(f'  printf("{name} sizeof %zu\\n", sizeof({name}));')
        for field, _ in st._fields_:
            lines.append(f'  printf("{name} {field} %zu\\n", offsetof({name}, {field}));')
    lines += ["  return 0;", "}"]
    src = tmp_path / "layout.c"
    src.write_text("\n".join(lines) + "\n")
    exe = tmp_path / "layout"
    subprocess.run([_compiler(), "-std=c99", "-I", os.path.join(ROOT, "include"), str(src), "-o", str(exe)],
                   check=True)
    got = {}
    for line in subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.splitlines():
        name, field, value = line.split()
        got[(name, field)] = int(value)
    for name in STRUCTS:
        st = getattr(_lib, name)
        assert ctypes.sizeof(st) == got[(name, "sizeof")], name
        for field, _ in st._fields_:
            assert getattr(st, field).offset == got[(name, field)], f"{name}.{field}"


def test_every_struct_field_of_the_header_is_mirrored():
    text = open(HEADER).read()
    for name in STRUCTS:
        body = re.search(r"typedef struct \{([^{}]*)\}\s*" + name + ";", text, re.S).group(1)
        body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
        fields = []
        for decl in body.split(";"):
            decl = decl.strip()
            if not decl:
                continue
            names = decl.split(None, 1)[1] if not decl.startswith("const") else decl.split(None, 2)[2]
            for n in names.split(","):
                n = n.strip().lstrip("*").strip()
                n = re.sub(r"\[.*\]", "", n).strip().lstrip("*")
                fields.append(n)
        assert [f for f, _ in getattr(_lib, name)._fields_] == fields, name


ENUMS = {"HOPE_SUCCESS": ha.Status.SUCCESS, "HOPE_ERROR_": ha.Status, "HOPE_LAYOUT_": ha.Layout,
         "HOPE_SEGMENT_": ha.SegmentKind, "HOPE_SCALE_": ha.ScalePolicy, "HOPE_ROPE_": ha.RopeKind, "HOPE_PAIRING_": ha.Pairing,
         "HOPE_COMPONENT_": ha.Component, "HOPE_MEMORY_": ha.Memory, "HOPE_DTYPE_": ha.DType,
         "HOPE_BACKEND_": ha.Backend}


def test_enum_values_match_the_header():
    text = open(HEADER).read()
    seen = 0
    for name, value in re.findall(r"\b(HOPE_[A-Z0-9_]+)\s*=\s*(-?\d+)", text):
        value = int(value)
        if name == "HOPE_SUCCESS":
            assert ha.Status.SUCCESS == value
            seen += 1
            continue
        for prefix, enum in ENUMS.items():
            if name.startswith(prefix) and not isinstance(enum, int) and isinstance(enum, type):
                member = name[len("HOPE_"):] if enum is ha.Status else name[len(prefix):]
                assert enum[member] == value, name
                seen += 1
                break
        else:
            pytest.fail(f"{name} = {value} in the header has no Python mirror")
    assert seen >= 30
    # And nothing in Python that the header lacks.
    for prefix, enum in ENUMS.items():
        if isinstance(enum, type):
            for m in enum:
                full = ("HOPE_" + m.name) if enum is ha.Status else prefix + m.name
                assert re.search(rf"\b{full}\s*=\s*{int(m)}\b", text), full


def test_every_exported_function_has_a_prototype():
    exports = open(os.path.join(ROOT, "tests", "exports.txt")).read().split()
    header_fns = set(re.findall(r"HOPE_API\s+[^;(]*?\b(hope_[a-z0-9_]+)\s*\(", open(HEADER).read()))
    assert header_fns, "no functions found in the header"
    assert header_fns <= set(_lib._PROTOTYPES), sorted(header_fns - set(_lib._PROTOTYPES))
    for fn in header_fns & set(exports):
        assert ha.has_function(fn), fn


def test_model_variant_fields_are_mirrored_at_the_end():
    # SPEC §8's fields (0.2) sit at the end of their structs, in the header's order; their offsets are checked
    # against the compiler by test_struct_layouts_match_the_compiler.
    tails = {"hope_rope_config_t": ["pairing", "rotary_dim", "model_exact_freqs"],
             "hope_positions_params_t": ["seconds_per_grid", "tokens_per_second"]}
    for name in ("hope_rope_apply_params_t", "hope_attention_params_t", "hope_kv_append_params_t",
                 "hope_decode_params_t"):
        tails[name] = ["rope_pairing", "rotary_dim"]
    for name, tail in tails.items():
        fields = [f for f, _ in getattr(_lib, name)._fields_]
        assert fields[-len(tail):] == tail, name
    assert ha.Layout.MROPE_TIMED == 3 and ha.Pairing.INTERLEAVED == 1
