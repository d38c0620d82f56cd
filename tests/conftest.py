"""Shared fixtures: real heads that install offline (skipped with a reason when absent) and small synthetic volumes."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from harness.core.volume import Volume

COLIN27 = Path("/usr/share/mricron/templates/ch2.nii.gz")
COLIN27_BRAIN = Path("/usr/share/mricron/templates/ch2bet.nii.gz")


@pytest.fixture(scope="session")
def colin27() -> Path:
    if not COLIN27.exists():
        pytest.skip("Colin27 needs Debian's mricron-data (apt-get install mricron-data)")
    return COLIN27


@pytest.fixture(scope="session")
def colin27_brain() -> Path:
    if not COLIN27_BRAIN.exists():
        pytest.skip("Colin27 brain needs Debian's mricron-data (apt-get install mricron-data)")
    return COLIN27_BRAIN


@pytest.fixture(scope="session")
def pydeface_head() -> Path:
    try:
        path = resources.files("pydeface") / "data" / "mean_reg2mean.nii.gz"
    except ModuleNotFoundError:
        pytest.skip("the pydeface wheel (which ships an average head template) is not installed")
    if not path.is_file():
        pytest.skip("pydeface is installed without its data files")
    return Path(str(path))


@pytest.fixture(scope="session")
def dcm2niix() -> str:
    exe = shutil.which("dcm2niix")
    if exe is None:
        pytest.skip("dcm2niix (Debian package dcm2niix) is not installed")
    return exe


def make_head(shape=(40, 48, 36), spacing=(2.0, 2.0, 2.0), modality="MR", seed=0) -> Volume:
    """An ellipsoid 'head' with a brighter 'brain', a nose bump in front and a marker block on the patient's right.

    The asymmetric parts make orientation mistakes visible: anything flipped moves the marker or the nose.
    """
    rng = np.random.default_rng(seed)
    i, j, k = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij")
    c = [(n - 1) / 2 for n in shape]
    r = ((i - c[0]) / (shape[0] * 0.42)) ** 2 + ((j - c[1]) / (shape[1] * 0.42)) ** 2 + ((k - c[2]) / (shape[2] * 0.45)) ** 2
    data = np.where(r < 1, 300.0, 0.0)
    data = np.where(r < 0.6, 600.0, data)
    nose = (np.abs(i - c[0]) < 2) & (j > shape[1] * 0.9) & (np.abs(k - c[2]) < 3)
    data[nose] = 400.0
    marker = (i > shape[0] * 0.75) & (np.abs(j - c[1]) < 3) & (np.abs(k - c[2]) < 3) & (r < 1)
    data[marker] = 900.0
    data = data + rng.normal(0, 5, size=shape)
    if modality == "CT":
        data = np.round(np.where(r < 1, data / 20.0, -1000.0))  # integer HU, as scanners store them
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [-(n - 1) * s / 2 for n, s in zip(shape, spacing)]
    return Volume(data.astype(np.float32), affine, modality, {})


@pytest.fixture
def small_head() -> Volume:
    return make_head()


@pytest.fixture
def small_ct() -> Volume:
    return make_head(modality="CT")


@pytest.fixture(scope="session")
def tiny_vlm(tmp_path_factory) -> Path:
    """A tiny randomly initialised LLaVA (tests/fixtures/tiny_vlm.py): < 1 MB, ~8 s to build, offline."""
    from tests.fixtures.tiny_vlm import build_tiny_vlm

    return build_tiny_vlm(tmp_path_factory.mktemp("tiny_vlm"))


@pytest.fixture(scope="session")
def tumor_cohort(tmp_path_factory):
    """The tumour sample cohort at a coarse resolution (~2 mm voxels): one case of each of the four lesion classes
    (glioblastoma, low-grade glioma, metastases, meningioma), shared by the tumor-slice and tumor-dx tests."""
    from harness.data import load_cohort
    from harness.data.sample_cohort import write_sample_cohort

    out = tmp_path_factory.mktemp("tumor_cohort")
    write_sample_cohort("tumor-dx", n=4, seed=0, out=out / "cohort", resolution_scale=1.6)  # anatomy: user cache
    return {task: load_cohort(str(out / "cohort" / "manifest.jsonl"), task) for task in ("tumor-slice", "tumor-dx")}
