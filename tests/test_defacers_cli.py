"""`harness deface` as a user runs it."""

from __future__ import annotations

import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from tests.defacer_helpers import COLIN27


def _harness(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_blank_input_is_refused_with_the_file_named(tmp_path):
    path = tmp_path / "blank.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((40, 40, 40), np.int16), np.eye(4)), str(path))
    proc = _harness("deface", path, "--defacer", "reface", "--out", tmp_path / "out.nii.gz")
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"error: {path}: ") and "blank" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out.nii.gz").exists()


def test_unknown_defacer_and_bad_param(tmp_path):
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((20, 20, 20), np.int16), np.eye(4)), str(path))
    proc = _harness("deface", path, "--defacer", "blur", "--out", tmp_path / "o.nii.gz")
    assert proc.returncode == 1 and "unknown defacer 'blur'" in proc.stderr
    proc = _harness("deface", path, "--defacer", "quickshear", "-p", "buffer", "--out", tmp_path / "o.nii.gz")
    assert proc.returncode == 1 and "KEY=VALUE" in proc.stderr


@pytest.mark.slow
@pytest.mark.skipif(not COLIN27.is_file(), reason="Colin27 (mricron-data) not installed")
def test_deface_colin27_with_qc_and_cache(tmp_path):
    out, png, cache = tmp_path / "defaced.nii.gz", tmp_path / "qc.png", tmp_path / "cache"
    args = ("deface", COLIN27, "--defacer", "deface", "--out", out, "--qc-png", png, "--cache-dir", cache)
    first = _harness(*args)
    assert first.returncode == 0, first.stderr
    assert "brain_voxels_changed     0" in first.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = nib.load(str(out))
    assert img.get_data_dtype() == np.uint8 and img.shape == (181, 217, 181)
    second = _harness(*args)
    assert second.returncode == 0 and "(from cache)" in second.stdout
