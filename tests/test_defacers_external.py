"""External defacer adapters: a fake tool (found / missing / failing), the real quickshear CLI, pydeface without FSL."""

from __future__ import annotations

import shutil
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

import defacers
from tests.defacer_helpers import COLIN27, colin27
from defacers.base import DefacerError


@pytest.fixture(scope="module")
def colin():
    if not COLIN27.is_file():
        pytest.skip("Colin27 (Debian package mricron-data) is not installed")
    return colin27()


def _script(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


FAKE_DEFACER = """
import sys, nibabel as nib, numpy as np
img = nib.load(sys.argv[1])
data = np.asarray(img.dataobj).copy()
data[:, -40:, :60] = 0  # remove a block at the front and bottom (the input is RAS)
nib.save(nib.Nifti1Image(data, img.affine, img.header), sys.argv[2])
"""


def test_fake_tool_found(tmp_path, colin):
    tool = _script(tmp_path, "fake-deface", FAKE_DEFACER)
    d = defacers.get("external:cmd", command=f"{tool} {{input}} {{output}}")
    result = d.deface(colin)
    expected = np.zeros(colin.shape, bool)
    expected[:, -40:, :60] = True
    np.testing.assert_array_equal(result.changed, expected & (colin.data != 0))
    assert result.qc["defacer"]["name"] == "external:cmd"
    assert result.qc["face_fraction_changed"] > 0 and "registration" in result.qc
    assert result.volume.shape == colin.shape


def test_tool_missing_says_how_to_install(colin):
    with pytest.raises(DefacerError, match="not installed or not on PATH"):
        defacers.get("external:cmd", command="no-such-defacer-xyz {input} {output}").deface(colin)
    if shutil.which("mri_reface") is None:
        with pytest.raises(DefacerError, match="nitrc.org"):
            defacers.get("external:mri_reface").deface(colin)
    if shutil.which("@afni_refacer_run") is None:
        with pytest.raises(DefacerError, match="AFNI"):
            defacers.get("external:afni_refacer").deface(colin)


def test_tool_failing_reports_exit_code_and_stderr(tmp_path, colin):
    tool = _script(tmp_path, "broken", "import sys\nprint('license file not found', file=sys.stderr)\nsys.exit(3)\n")
    with pytest.raises(DefacerError, match=r"exit code 3.*license file not found"):
        defacers.get("external:cmd", command=f"{tool} {{input}} {{output}}").deface(colin)


def test_tool_without_output_is_an_error(tmp_path, colin):
    tool = _script(tmp_path, "lazy", "pass\n")
    with pytest.raises(DefacerError, match="wrote no NIfTI"):
        defacers.get("external:cmd", command=f"{tool} {{input}} {{output}}").deface(colin)


def test_cmd_template_must_name_input_and_output():
    with pytest.raises(DefacerError, match="input"):
        defacers.get("external:cmd", command="tool --only-output {output}")
    with pytest.raises(DefacerError, match="needs command"):
        defacers.get("external:cmd")


@pytest.mark.skipif(shutil.which("quickshear") is None, reason="the quickshear command (pip install quickshear) is not installed")
def test_real_quickshear_cli(colin):
    result = defacers.get("external:quickshear-cli").deface(colin)
    assert result.qc["face_fraction_changed"] > 0.2
    assert result.qc["face_surface_change_mm"] > 3.0
    assert result.qc["brain_voxels_changed"] == 0  # the CLI gets our brain mask and keeps a 10-voxel buffer


@pytest.mark.skipif(shutil.which("flirt") is not None, reason="FSL is installed here; this checks the error without it")
def test_pydeface_without_fsl_says_so(colin):
    with pytest.raises(DefacerError, match="flirt"):
        defacers.get("external:pydeface").deface(colin)


def test_identity_names_the_installed_tool(tmp_path):
    tool = _script(tmp_path, "fake-deface", FAKE_DEFACER)
    first = defacers.get("external:cmd", command=f"{tool} {{input}} {{output}}").identity
    tool.write_text(tool.read_text() + "\n# rebuilt\n")
    second = defacers.get("external:cmd", command=f"{tool} {{input}} {{output}}").identity
    assert first["executable_sha256"] and first["executable_sha256"] != second["executable_sha256"]
    assert first["params"] == {"command": f"{tool} {{input}} {{output}}"}
