"""Volumes that claim more than they hold, and paths that are not files: refused before anything is read, with the
file named, and a cohort row holding one is rejected while the good rows go on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from harness.core.errors import VolumeError
from harness.data.cohort import load_cohort
from harness.imaging.io import load_volume, save_nifti
from tests.conftest import make_head

ROOT = Path(__file__).resolve().parents[1]


def huge_header(path: Path, shape, header_class=nib.Nifti1Header, gz=False) -> Path:
    """A valid header that declares `shape` int16 voxels, followed by a few KB: what a hostile file looks like."""
    header = header_class()
    header.set_data_dtype(np.int16)
    header.set_data_shape(shape)
    header.set_sform(np.eye(4), code=1)
    header.set_data_offset(len(header.binaryblock) + 4)
    raw = header.binaryblock + b"\0" * 4 + b"\1" * 4096  # no extensions, then a little "voxel data"
    path.write_bytes(__import__("gzip").compress(raw) if gz else raw)
    return path


@pytest.mark.parametrize("header_class, shape, gz", [(nib.Nifti1Header, (32767,) * 3, False),
                                                     (nib.Nifti2Header, (100000,) * 3, False),
                                                     (nib.Nifti1Header, (32767,) * 3, True)])
def test_a_header_declaring_a_huge_volume_is_refused_before_reading(tmp_path, header_class, shape, gz):
    path = huge_header(tmp_path / f"huge.nii{'.gz' if gz else ''}", shape, header_class, gz)
    started = time.monotonic()
    with pytest.raises(VolumeError, match=r"huge\.nii.*header declares [\d,]+ voxels .* more than the"):
        load_volume(path)
    assert time.monotonic() - started < 5


def test_a_header_declaring_more_bytes_than_the_file_holds_is_truncated(tmp_path):
    path = huge_header(tmp_path / "short.nii", (256, 256, 256))  # 32 MiB declared, 4 KiB present
    with pytest.raises(VolumeError, match=r"short\.nii.*truncated: the header declares 33,554,[\d,]+ bytes .* holds 4,"):
        load_volume(path)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
@pytest.mark.filterwarnings("ignore:Extension size is not a multiple")
def test_a_header_with_a_broken_extension_is_a_clear_error(tmp_path):
    header = nib.Nifti1Header()
    header.set_data_shape((8, 8, 8))
    path = tmp_path / "ext.nii"
    path.write_bytes(header.binaryblock + b"\1" * 4096)  # "an extension follows" with a size larger than the file
    with pytest.raises(VolumeError, match=r"ext\.nii.*not a readable NIfTI file"):
        load_volume(path)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_a_device_is_not_a_volume():
    with pytest.raises(VolumeError, match="/dev/zero.*not a regular file or folder"):
        load_volume("/dev/zero")


@pytest.mark.timeout(120)
@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_hostile_rows_are_rejected_and_the_good_case_goes_on(tmp_path):
    good = save_nifti(make_head(), tmp_path / "good.nii.gz")
    rows = [{"id": "good-case", "t1": str(good), "evans_ratio": 0.3},
            {"id": "device-row", "t1": "/dev/zero", "evans_ratio": 0.3},
            {"id": "huge-row", "t1": str(huge_header(tmp_path / "huge.nii", (32767,) * 3)), "evans_ratio": 0.3}]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cohort = load_cohort(str(manifest), "nph-evans", cache_dir=tmp_path / "cache")
    assert [c.id for c in cohort.cases] == ["good-case"]
    problems = dict(cohort.problems)
    assert "not a regular file or folder" in problems["device-row"] and "header declares" in problems["huge-row"]
    assert len(cohort.content_hash) == 64  # the fingerprint never reads the device

    out = subprocess.run([sys.executable, "-m", "harness", "data", "show", str(manifest), "--task", "nph-evans"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60,
                         env={**os.environ, "HARNESS_CACHE_DIR": str(tmp_path / "cache")})
    assert "device-row" in out.stdout + out.stderr, out.stderr[-2000:]
