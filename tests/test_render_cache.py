"""The render cache and remembered volumes: what makes a warm re-run read no voxels and render nothing.

A cached render must be exactly the render (bytes and facts), keyed by everything that decides the pixels; a damaged
entry is redone, never served; a file that changed is read again."""

from __future__ import annotations

import os

import numpy as np
import pytest

from harness.imaging import render_cache
from harness.imaging.io import load_volume, save_nifti
from harness.imaging.io.lazy import LazyVolume, remembered_volume
from harness.imaging.render import RenderSpec, Slices, render


@pytest.fixture
def cache(tmp_path):
    render_cache.use_render_cache(tmp_path / "cache")
    yield tmp_path / "cache"
    render_cache.use_render_cache(None)


def _facts(images):
    return [(i.png, i.plane, i.slices, i.positions_mm, i.window, i.width, i.height, i.spec_key) for i in images]


def test_a_cached_render_is_the_render_and_is_keyed_by_volume_and_spec(cache, small_head):
    spec = RenderSpec(plane="axial", slices=Slices.parse("3"), size=64, labels=True)
    fresh = render(small_head, spec)
    hits = render_cache.stats["hits"]
    again = render(small_head, spec)
    assert render_cache.stats["hits"] == hits + 1 and _facts(again) == _facts(fresh)
    assert all(type(w) is float for w in again[0].window)

    other_spec = RenderSpec(plane="coronal", slices=Slices.parse("3"), size=64, labels=True)
    assert [i.png for i in render(small_head, other_spec)] != [i.png for i in fresh]
    ramp = np.linspace(0.5, 1.5, small_head.shape[0], dtype=np.float32)[:, None, None]
    shaded = small_head.with_data(small_head.data * ramp)  # another volume, same geometry
    assert [i.png for i in render(shaded, spec)] != [i.png for i in fresh]
    montage = RenderSpec(plane="axial", slices=Slices.parse("3"), size=64, montage=(0, 0))
    assert len(render(small_head, montage)) == 1


def test_a_damaged_entry_is_rendered_again_and_rewritten(cache, small_head):
    spec = RenderSpec(slices=Slices.parse("2,5"), size=48)
    fresh = render(small_head, spec)
    pngs = sorted((cache / "renders").rglob("*.png"))
    assert len(pngs) == 2
    pngs[0].write_bytes(pngs[0].read_bytes()[:40])  # truncated
    hits = render_cache.stats["hits"]
    assert _facts(render(small_head, spec)) == _facts(fresh) and render_cache.stats["hits"] == hits
    assert _facts(render(small_head, spec)) == _facts(fresh) and render_cache.stats["hits"] == hits + 1


def test_off_by_default_writes_nothing(tmp_path, small_head, monkeypatch):
    monkeypatch.chdir(tmp_path)
    render(small_head, RenderSpec(slices=Slices.parse("1"), size=32))
    assert render_cache.render_cache_folder() is None and list(tmp_path.iterdir()) == []


def test_a_remembered_volume_is_lazy_and_a_changed_file_is_read_again(tmp_path, small_head):
    path = save_nifti(small_head, tmp_path / "head.nii.gz")
    reads = []

    def load():
        reads.append(1)
        return load_volume(path, modality="MR")

    first = remembered_volume(path, load, tmp_path / "cache", modality="MR")
    assert not isinstance(first, LazyVolume) and len(reads) == 1
    lazy = remembered_volume(path, load, tmp_path / "cache", modality="MR")
    assert isinstance(lazy, LazyVolume) and len(reads) == 1
    # the header a task reads before it renders comes from the memo, exactly as the Volume gives it
    assert (lazy.content_hash, lazy.shape, lazy.modality, lazy.spacing, lazy.orientation) == \
           (first.content_hash, first.shape, first.modality, first.spacing, first.orientation)
    assert np.array_equal(lazy.affine, first.affine)
    assert np.allclose(lazy.voxel_to_world([[1, 2, 3]]), first.voxel_to_world([[1, 2, 3]]))
    # so do its metadata and a copy with other voxels (a defaced volume is built on it)
    assert dict(lazy.meta) == dict(first.meta)
    copy = lazy.with_data(first.data * 2)
    assert copy.content_hash == first.with_data(first.data * 2).content_hash and dict(copy.meta) == dict(first.meta)
    assert not lazy.loaded and len(reads) == 1
    assert np.array_equal(lazy.data, first.data) and lazy.loaded and len(reads) == 2
    assert remembered_volume(path, load, tmp_path / "cache", modality="CT") is not None and len(reads) == 3  # other facts

    changed = small_head.with_data(small_head.data + 7)
    save_nifti(changed, path)
    os.utime(path, ns=(1, 1))  # even with an old timestamp: the size/inode/mtime identity differs
    again = remembered_volume(path, load, tmp_path / "cache", modality="MR")
    assert not isinstance(again, LazyVolume) and again.content_hash != first.content_hash


def test_a_missing_file_gets_the_loaders_error(tmp_path):
    from harness.core.errors import VolumeError

    with pytest.raises(VolumeError, match="no such file"):
        remembered_volume(tmp_path / "gone.nii.gz", lambda: load_volume(tmp_path / "gone.nii.gz"), tmp_path / "cache")


def test_a_dicom_folder_is_identified_by_every_file(tmp_path, small_ct):
    from harness.imaging.io.lazy import file_identity
    from harness.imaging.io.dicom_write import write_dicom_series

    folder = tmp_path / "series"
    write_dicom_series(small_ct, folder)
    before = file_identity(folder)
    victim = sorted(folder.iterdir())[3]
    victim.write_bytes(victim.read_bytes() + b"\0\0")
    assert file_identity(folder) != before


def test_values_that_choose_what_to_render_are_kept_by_content_name_and_version(cache, small_head):
    calls = []

    def top(volume):
        calls.append(1)
        return int(volume.data.argmax())

    assert render_cache.remembered(small_head, "top", 1, top) == int(small_head.data.argmax()) and len(calls) == 1
    assert render_cache.remembered(small_head, "top", 1, top) == int(small_head.data.argmax()) and len(calls) == 1
    render_cache.remembered(small_head, "top", 2, top)  # a new version of the rule is computed again
    render_cache.remembered(small_head.with_data(small_head.data + 1), "top", 1, top)  # so is another volume
    assert len(calls) == 3
