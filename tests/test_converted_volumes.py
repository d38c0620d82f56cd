"""Converted volumes: a DICOM series is parsed once, later reads take its voxels from the cache.

What comes from the cache must be exactly what the series gives (voxels, geometry, metadata, renders); a series
changed on disk is read again, even rewritten in place at the same size and mtime; a damaged entry is read from the
series and rewritten, never served."""

from __future__ import annotations

import os
import time
import warnings

import numpy as np
import pytest

from harness.imaging.io import load_volume, save_nifti
from harness.imaging.io.converted import entry_path, keep_converted, read_converted
from harness.imaging.io.dicom_write import write_dicom_series
from harness.imaging.io.lazy import LazyVolume, remembered_volume
from harness.imaging.render import RenderSpec, Slices, render
from tests.conftest import make_head
from tests.dicom_factory import tilt_series

HEADER = {"BodyPartExamined": "HEAD", "KVP": 120, "ConvolutionKernel": ["FC21", "AXIAL"], "Manufacturer": "ACME",
          "ManufacturerModelName": "Scan 9000"}


def _series(folder, tilted: bool = False):
    paths = write_dicom_series(make_head(modality="CT", shape=(32, 36, 20)), folder, extra=HEADER)
    if tilted:
        tilt_series(paths, shift_mm_per_slice=0.5)  # resampled on reading: fractional HU, a gantry_tilt_deg fact
    return paths


class Reader:
    """remembered_volume of one series, counting how often the series itself is parsed."""

    def __init__(self, folder, cache_dir):
        self.folder, self.cache_dir, self.parses = folder, cache_dir, 0

    def _load(self):
        self.parses += 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tilted series' resampling warning
            return load_volume(self.folder, modality="CT")

    def __call__(self):
        return remembered_volume(self.folder, self._load, self.cache_dir, modality="CT")


def _same(a, b) -> None:
    assert a.data.tobytes() == b.data.tobytes() and a.data.dtype == b.data.dtype
    assert a.affine.tobytes() == b.affine.tobytes() and a.modality == b.modality and a.content_hash == b.content_hash
    assert dict(a.meta) == dict(b.meta) and [type(v) for v in a.meta.values()] == [type(v) for v in b.meta.values()]


@pytest.mark.parametrize("tilted, stored", [(False, np.int16), (True, np.float32)])
def test_a_series_read_again_comes_from_its_converted_copy_exactly(tmp_path, tilted, stored):
    _series(tmp_path / "ct", tilted)
    read = Reader(tmp_path / "ct", tmp_path / "cache")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from_dicom = load_volume(tmp_path / "ct", modality="CT")
    first = read()
    assert not isinstance(first, LazyVolume) and read.parses == 1
    again = read()
    assert isinstance(again, LazyVolume) and not again.loaded
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a hash that disagrees with the memo would warn
        converted = again.volume
    assert read.parses == 1  # the voxels came from the cache, not from pydicom
    _same(converted, from_dicom)
    assert ("gantry_tilt_deg" in converted.meta) == tilted and converted.meta["manufacturer"] == "ACME"
    assert np.load(entry_path(tmp_path / "cache", from_dicom.content_hash)).dtype == stored
    spec = RenderSpec(plane="axial", slices=Slices.parse("3"), size=64, labels=True)
    assert [i.png for i in render(converted, spec)] == [i.png for i in render(from_dicom, spec)]


def test_only_a_dicom_series_is_converted(tmp_path, small_ct):
    path = save_nifti(small_ct, tmp_path / "ct.nii.gz")  # reading it back costs about what a converted copy would
    for _ in range(2):
        remembered_volume(path, lambda: load_volume(path), tmp_path / "cache").data
    assert not (tmp_path / "cache" / "converted").exists()


def _rewrite_in_place(path) -> None:
    """Other bytes at the end of the file (pixels), same size, same inode, the mtime put back (as cp -p or an
    anonymiser leaves a file)."""
    st = path.stat()
    raw = bytearray(path.read_bytes())
    raw[-200:] = bytes(255 - b for b in raw[-200:])
    time.sleep(0.02)  # past the kernel's coarse clock tick, as any real edit after a read is
    with open(path, "r+b") as fh:
        fh.write(raw)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (st.st_ino, st.st_size, st.st_mtime_ns)


def test_a_series_rewritten_in_place_with_its_size_and_mtime_is_parsed_again(tmp_path):
    paths = _series(tmp_path / "ct")
    read = Reader(tmp_path / "ct", tmp_path / "cache")
    before = read()
    _rewrite_in_place(paths[len(paths) // 2])
    changed = read()
    assert read.parses == 2 and changed.content_hash != before.content_hash
    _same(changed.volume if isinstance(changed, LazyVolume) else changed, load_volume(tmp_path / "ct", modality="CT"))


def test_a_file_rewritten_in_place_with_its_size_and_mtime_gets_a_new_hash(tmp_path, small_ct):
    # not converted, but its remembered hash is what its cached renders are found by
    path = save_nifti(small_ct, tmp_path / "ct.nii")
    before = remembered_volume(path, lambda: load_volume(path), tmp_path / "cache")
    _rewrite_in_place(path)
    after = remembered_volume(path, lambda: load_volume(path), tmp_path / "cache")
    assert not isinstance(after, LazyVolume) and after.content_hash != before.content_hash


def _truncate(path):
    path.write_bytes(path.read_bytes()[:1000])


def _garbage(path):
    path.write_bytes(b"not an array at all" * 10)


def _flip_voxels(path):
    raw = bytearray(path.read_bytes())
    raw[-300:-100] = bytes(b ^ 0x01 for b in raw[-300:-100])  # same size and header, other values
    path.write_bytes(bytes(raw))


def _huge_header(path):
    raw = path.read_bytes()
    header_end = raw.index(b"\n") + 1
    header = raw[10:header_end].decode("latin-1")
    shape = header[header.index("(") : header.index(")") + 1]
    path.write_bytes(raw[:10] + header.replace(shape, "(4096, 4096, 4096)".ljust(len(shape))).encode("latin-1")
                     + raw[header_end:])


@pytest.mark.parametrize("damage", [_truncate, _garbage, _flip_voxels, _huge_header])
def test_a_damaged_entry_is_parsed_again_and_rewritten_never_served(tmp_path, damage):
    _series(tmp_path / "ct")
    read = Reader(tmp_path / "ct", tmp_path / "cache")
    truth = read()
    entry = entry_path(tmp_path / "cache", truth.content_hash)
    good = entry.read_bytes()
    damage(entry)
    assert entry.read_bytes() != good

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = read().volume
    assert read.parses == 2
    _same(again, truth)
    assert entry.read_bytes() == good  # rewritten
    _same(read().volume, truth)
    assert read.parses == 2  # and used again


def test_a_value_an_integer_cannot_give_back_bit_for_bit_keeps_the_entry_float(tmp_path, small_ct):
    data = small_ct.data.copy()
    data[0, 0, 0] = -0.0  # integral, but int16 would give +0.0 back: another content hash
    volume = small_ct.with_data(data, source_format="dicom")
    keep_converted(tmp_path, volume)
    record = {"content_hash": volume.content_hash, "modality": volume.modality, "shape": volume.shape,
              "affine": volume.affine, "meta": dict(volume.meta)}
    _same(read_converted(tmp_path, record), volume)
    assert np.load(entry_path(tmp_path, volume.content_hash)).dtype == np.float32
