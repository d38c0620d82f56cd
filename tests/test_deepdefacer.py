"""DeepDefacer: its published weights fetched and checked by hash, its preprocessing, and the network on Colin27."""

from __future__ import annotations

import hashlib
import io
import tarfile

import numpy as np
import pytest

import defacers
from defacers.base import DefacerError
from defacers.deepdefacer import NETWORK_SIZE, keep_mask, resample_axes, to_network_input
from defacers.weights import PublishedWeights
from harness.core.volume import Volume
from harness.imaging.io import load_nifti


def _archive(files: dict[str, bytes]):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _weights(blob: bytes, weights: bytes) -> PublishedWeights:
    return PublishedWeights("pkg", "1.0", "pkg/net.h5", hashlib.sha256(weights).hexdigest(), hashlib.sha256(blob).hexdigest())


def test_weights_come_out_of_an_archive_put_in_the_cache_and_are_checked(tmp_path):
    blob = _archive({"pkg-1.0/pkg/net.h5": b"weights", "pkg-1.0/setup.py": b"raise SystemExit"})
    pinned = _weights(blob, b"weights")
    folder = pinned.folder(tmp_path)
    folder.mkdir(parents=True)
    (folder / "pkg-1.0.tar.gz").write_bytes(blob)
    path = pinned.path(tmp_path)
    assert path == folder / "net.h5" and path.read_bytes() == b"weights"
    path.write_bytes(b"tampered")  # a damaged copy is replaced from the archive, never used
    assert pinned.path(tmp_path).read_bytes() == b"weights"
    # an archive that is not the pinned release, or holds other weights, is refused with the file named
    other = _archive({"pkg-1.0/pkg/net.h5": b"other"})
    (folder / "pkg-1.0.tar.gz").write_bytes(other)
    with pytest.raises(DefacerError, match=r"pkg-1.0.tar.gz: not the published"):
        pinned.extract(folder / "pkg-1.0.tar.gz")
    with pytest.raises(DefacerError, match="not the published weights file"):
        _weights(other, b"weights").extract(folder / "pkg-1.0.tar.gz")
    (folder / "pkg-1.0.tar.gz").write_bytes(blob)
    elsewhere = PublishedWeights("pkg", "1.0", "pkg/missing.h5", "0", pinned.sdist_sha256)
    with pytest.raises(DefacerError, match="no usable pkg-1.0/pkg/missing.h5 inside"):
        elsewhere.extract(folder / "pkg-1.0.tar.gz")


def test_offline_fetch_says_what_to_download_and_where(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip as on a machine without internet
    pinned = PublishedWeights("deepdefacer", "2.1.2", "deepdefacer/model.hdf5", "0", "0")
    with pytest.raises(DefacerError) as err:
        pinned.path(tmp_path)
    message = str(err.value)
    assert "pip download --no-deps --no-binary :all: deepdefacer==2.1.2" in message
    assert str(pinned.folder(tmp_path)) in message and "deepdefacer-2.1.2.tar.gz" in message


def test_preprocessing_keeps_orientation_and_spans_the_volume():
    # a non-cubic volume with one bright voxel block near the anterior-superior-left corner
    data = np.zeros((40, 60, 30), np.float32)
    data[30:36, 50:58, 20:26] = 100.0
    net = to_network_input(data)
    assert net.shape == (1, 1, NETWORK_SIZE, NETWORK_SIZE, NETWORK_SIZE) and net.dtype == np.float32
    assert net.min() == 0.0 and net.max() == pytest.approx(1.0, abs=1e-5)
    # block centre x of an n-voxel axis lands on network point 80 + (x - n/2) * 159 / (n - 1)
    expected = [80 + (x - n / 2) * 159 / (n - 1) for x, n in zip((32.5, 53.5, 22.5), data.shape)]
    np.testing.assert_allclose(np.argwhere(net[0, 0] > 0.5).mean(axis=0), expected, atol=0.5)
    # the mask comes back onto the same place of the input grid
    back = keep_mask(net > 0.5, data.shape)
    assert back.shape == data.shape and back.dtype == bool
    np.testing.assert_allclose(np.argwhere(back).mean(axis=0), np.argwhere(data > 0).mean(axis=0), atol=0.6)
    # the first and last points read the first and last voxels (the original spreads 160 points over the extent)
    ramp = np.broadcast_to(np.arange(50, dtype=np.float32)[:, None, None], (50, 4, 4))
    line = resample_axes(ramp, (NETWORK_SIZE, 4, 4), order=1)[:, 0, 0]
    assert line[0] == pytest.approx(25 - 80 * 49 / 159, abs=1e-3) and line[-1] == pytest.approx(49.0, abs=0.5)


def test_deepdefacer_is_a_network_with_published_weights_and_refuses_ct():
    d = defacers.get("deepdefacer")
    assert (d.family, d.modalities, d.runs) == ("network", ("MR",), "published weights")
    assert len(d.identity["weights_sha256"]) == 64 and d.identity["version"] == d.version
    ct = Volume(np.zeros((8, 8, 8), np.float32), np.eye(4), "CT")
    with pytest.raises(DefacerError, match="does not deface CT"):
        d.deface(ct)


@pytest.fixture(scope="module")
def colin_deepdefaced(colin27):
    volume = load_nifti(colin27)
    return volume, defacers.get("deepdefacer").deface(volume)


def test_deepdefacer_removes_colin27s_face_and_no_brain(colin_deepdefaced, colin27_brain):
    volume, result = colin_deepdefaced
    qc = result.qc
    assert qc["defacer"]["name"] == "deepdefacer" and "keras" in qc["network_runtime"]
    assert qc["face_fraction_changed"] > 0.95 and qc["face_surface_change_mm"] > 20, qc
    assert qc["brain_voxels_changed"] == 0
    bet = load_nifti(colin27_brain).data > 0  # the published brain of Colin27, not our own mask
    assert not (result.changed & bet).any()
    # removed voxels became air; everything else is untouched
    assert (result.volume.data[result.changed] == volume.data.min()).all()
    np.testing.assert_array_equal(result.volume.data[~result.changed], volume.data[~result.changed])
    # the face is in front: the removed voxels lie in the anterior half, below the top of the brain
    removed = np.argwhere(result.changed)
    assert removed[:, 1].mean() > volume.shape[1] * 0.6
