"""Defacer specs as users type them: `NAME(key=value, ...)` in --defacer, and --param KEY=VALUE."""

from __future__ import annotations

import re
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from defacers import DefacerError
from defacers.spec import parse_defacer_spec, parse_param_value
from harness.cli.deface import defacer_from_options
from harness.core.errors import HarnessError
from tests.defacer_helpers import COLIN27


@pytest.mark.parametrize("text, expected", [
    ("reface", ("reface", {})),
    ("  reface  ", ("reface", {})),
    ("quickshear()", ("quickshear", {})),
    ("quickshear(buffer_mm=5)", ("quickshear", {"buffer_mm": 5})),
    ("quickshear( buffer_mm = 2.5 )", ("quickshear", {"buffer_mm": 2.5})),
    ("external:cmd(command=tool {input} {output}, timeout_s=30.5)",
     ("external:cmd", {"command": "tool {input} {output}", "timeout_s": 30.5})),
    ("external:cmd(command=tool --level=3 {input} {output})", ("external:cmd", {"command": "tool --level=3 {input} {output}"})),
    ("quickshear(buffer_mm=5", ("quickshear(buffer_mm=5", {})),  # no closing bracket: all name (an unknown defacer)
])
def test_specs(text, expected):
    assert parse_defacer_spec(text) == expected


@pytest.mark.parametrize("text, value", [
    ("5", 5), ("-2", -2), ("2.5", 2.5), ("1e3", 1000.0), ("true", True), ("False", False), ("T1", "T1"), ("", ""),
])
def test_values(text, value):
    parsed = parse_param_value(text)
    assert parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize("text", ["quickshear(5)", "quickshear(=5)", "external:cmd(command=a {input} {output}, oops)"])
def test_a_malformed_parameter_is_a_clear_error_naming_the_text(text):
    with pytest.raises(DefacerError, match=r"cannot read defacer parameter '.*' in " + re.escape(repr(text))):
        parse_defacer_spec(text)


def test_brackets_and_param_make_the_same_defacer():
    in_brackets = defacer_from_options("quickshear(buffer_mm=5)", [])
    as_param = defacer_from_options("quickshear", ["buffer_mm=5"])
    assert in_brackets.identity == as_param.identity
    assert as_param.identity["params"] == {"buffer_mm": 5.0}
    assert defacer_from_options("quickshear(buffer_mm=5)", ["buffer_mm=5"]).identity == as_param.identity


def test_param_errors():
    with pytest.raises(HarnessError, match="KEY=VALUE"):
        defacer_from_options("quickshear", ["buffer"])
    with pytest.raises(HarnessError, match="'buffer_mm' is given twice"):
        defacer_from_options("quickshear(buffer_mm=5)", ["buffer_mm=4"])


@pytest.mark.slow
@pytest.mark.skipif(not COLIN27.is_file(), reason="Colin27 (mricron-data) not installed")
def test_harness_deface_brackets_and_param_give_one_result(tmp_path):
    """The second run hits the cache entry of the first: same defacer identity, same defaced volume."""
    cache = tmp_path / "cache"

    def deface(out, *options):
        proc = subprocess.run([sys.executable, "-m", "harness", "deface", str(COLIN27), "--out", str(out), "--cache-dir", str(cache), *options],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    first = deface(tmp_path / "a.nii.gz", "--defacer", "quickshear(buffer_mm=5)")
    second = deface(tmp_path / "b.nii.gz", "--defacer", "quickshear", "--param", "buffer_mm=5")
    assert "(from cache)" not in first and "(from cache)" in second
    np.testing.assert_array_equal(nib.load(tmp_path / "a.nii.gz").get_fdata(), nib.load(tmp_path / "b.nii.gz").get_fdata())
