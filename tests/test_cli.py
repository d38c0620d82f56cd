"""The CLI as a user meets it: info, render, --version, --help, and one-line errors with a non-zero exit."""

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from harness import __version__
from harness.imaging.io import save_nifti
from harness.imaging.io.dicom_write import write_dicom_series
from tests.conftest import make_head

ROOT = Path(__file__).resolve().parents[1]


def harness(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], capture_output=True, text=True, cwd=cwd or ROOT, timeout=120)


def test_version_and_help():
    r = harness("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"harness {__version__}"
    r = harness("--help")
    assert r.returncode == 0 and "info" in r.stdout and "render" in r.stdout
    r = harness("render", "--help")
    assert r.returncode == 0 and "radiological" in r.stdout and "--slices" in r.stdout


def test_info_on_a_dicom_series_shows_geometry_and_no_phi(tmp_path):
    write_dicom_series(make_head(modality="CT"), tmp_path / "ct", extra={"PatientName": "Doe^Jane", "PatientID": "MRN777"})
    r = harness("info", tmp_path / "ct")
    assert r.returncode == 0, r.stderr
    assert "CT (HU)" in r.stdout and "40 x 48 x 36" in r.stdout and "2 x 2 x 2" in r.stdout and "RAS" in r.stdout
    assert "-1000" in r.stdout
    assert "Doe" not in r.stdout + r.stderr and "MRN777" not in r.stdout + r.stderr


def test_render_writes_pngs_and_prints_their_paths(tmp_path, colin27):
    r = harness("render", colin27, "--plane", "sagittal", "--slices", "40%,50%", "--size", "256", "--out", tmp_path / "png")
    assert r.returncode == 0, r.stderr
    paths = [Path(line) for line in r.stdout.split()]
    assert [p.name for p in paths] == ["ch2_sagittal_072.png", "ch2_sagittal_090.png"]
    with Image.open(paths[0]) as im:
        assert im.mode == "L" and max(im.size) == 256
    r = harness("render", colin27, "--slices", "every:20", "--montage", "auto", "--labels", "--window", "20/200", "--out", tmp_path / "m")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.split()) == 1 and "montage" in r.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["info", "missing.nii.gz"], "missing.nii.gz: no such file or folder"),
        (["render", "{head}", "--plane", "oblique", "--out", "{tmp}"], "plane must be one of"),
        (["render", "{head}", "--slices", "999", "--out", "{tmp}"], "slice index 999 is outside"),
        (["render", "{head}", "--window", "lung", "--out", "{tmp}"], "unknown window 'lung'"),
        (["info", "{junk}"], "junk.nii: not a readable NIfTI"),
    ],
)
def test_errors_are_one_line_and_exit_non_zero(tmp_path, args, message):
    head = save_nifti(make_head(), tmp_path / "head.nii.gz")
    (tmp_path / "junk.nii").write_text("nope")
    args = [a.format(head=head, tmp=tmp_path / "out", junk=tmp_path / "junk.nii") for a in args]
    r = harness(*args, cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ") and message in r.stderr
    assert "Traceback" not in r.stderr


def test_render_key_is_the_same_in_another_process():
    code = "from harness.imaging.render import RenderSpec, Slices; print(RenderSpec(slices=Slices.parse('10,20'), window='bone').key)"
    keys = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env={"PYTHONHASHSEED": str(s), "PATH": ""}).stdout for s in (1, 2)}
    assert len(keys) == 1 and len(keys.pop().strip()) == 16
