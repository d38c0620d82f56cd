"""The QC figures (defacers/qc.py) against hand computation on small synthetic volumes, and the QC sheet's pictures.

Fast: no registration, no brain masking; every expected number below is worked out from the volumes by hand.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from defacers import qc
from harness.core.volume import Volume
from harness.imaging.render import RenderSpec, Slices, render

# Light of the anterior surface render: from the front, a little above (unit vector (x, z, towards the viewer)).
LIGHT_NORM = float(np.linalg.norm([0.0, 0.35, 1.0]))
FLAT = 30.0 + 225.0 * 1.0 / LIGHT_NORM  # a face looking straight at the viewer, nearest depth: 242.37


def test_anterior_depth_counts_mm_from_the_front_to_the_first_head_voxel():
    mask = np.zeros((3, 10, 2), bool)
    mask[0, 2:5, 0] = True  # first head voxel from the front at j = 4: 5 empty voxels in front
    mask[0, 7, 0] = True  # ... unless there is a nearer one: j = 7, 2 empty voxels
    mask[1, 2:5, 0] = True  # only the far segment: 5 empty voxels
    mask[2, 9, 0] = True  # touches the front edge: depth 0
    mask[2, 0, 1] = True  # the very back: 9 empty voxels
    depth = qc.anterior_depth(mask, 2.5)
    assert depth.shape == (3, 2)
    np.testing.assert_allclose(depth, [[2 * 2.5, 10 * 2.5], [5 * 2.5, 10 * 2.5], [0.0, 9 * 2.5]])  # no head: all 10


def _scene(modality: str = "MR"):
    """A (6, 10, 4) volume, spacing (1, 2.5, 3) mm: head fills j = 1..6 (front surface at j = 6: depth 3 voxels)."""
    data = np.zeros((6, 10, 4), np.float32)
    data[:, 1:7, :] = 200.0
    if modality == "CT":
        data = np.where(data > 0, 40.0, -1000.0).astype(np.float32)
    affine = np.diag([1.0, 2.5, 3.0, 1.0])
    return Volume(data, affine, modality)


def test_measure_equals_hand_computation():
    v = _scene()
    air = 0.0
    face = np.zeros(v.shape, bool)
    face[0:4, 5:10, 0:2] = True  # 4 x 5 x 2 = 40 voxels, of which head (j = 5, 6): 4 x 2 x 2 = 16
    brain = np.zeros(v.shape, bool)
    brain[2:4, 2:4, 0:4] = True  # 16 voxels
    new = v.data.copy()
    new[0, 6, 0] = air  # column (0, 0): surface 1 voxel back -> +2.5 mm
    new[1, 5:7, 0] = air  # column (1, 0): 2 voxels back -> +5 mm
    new[2, 1:7, 0] = air  # column (2, 0): no head left -> full 10 voxels = 25 mm instead of 7.5: +17.5 mm
    new[3, 8, 1] = 200.0  # column (3, 1): a new nose 2 voxels in front of the face -> -5 mm (a change all the same)
    new[2, 2, 3] = air  # brain, outside the face region
    new[5, 6, 3] = air  # head outside the face region, not brain
    changed = new != v.data
    result = qc.measure(v, v.with_data(new), changed, face=face, brain=brain)
    assert result == {
        "voxels_changed": 1 + 2 + 6 + 1 + 1 + 1,
        "brain_voxels": 16,
        "brain_voxels_changed": 2 + 1,  # (2, 2..3, 0) and (2, 2, 3)
        "nothing_changed": False,
        "face_region_voxels": 40,
        "face_head_voxels": 16,
        # face-region head voxels changed: (0, 6, 0), (1..2, 5..6, 0); the new nose was air, not head, before
        "face_fraction_changed": pytest.approx(5 / 16),
        # 8 columns hold face-region head voxels; changes 2.5, 5, 17.5, 5, the other four 0
        "face_surface_change_mm": pytest.approx((2.5 + 5 + 17.5 + 5) / 8),
        "changed_outside_face_region": 4 + 1 + 1,  # (2, 1..4, 0), (2, 2, 3), (5, 6, 3)
    }


def test_an_untouched_face_reads_zero_and_a_face_region_in_air_is_not_counted():
    v = _scene()
    face = np.zeros(v.shape, bool)
    face[:, 8:10, :] = True  # in front of the head: nothing but air
    brain = np.zeros(v.shape, bool)
    same = qc.measure(v, v, np.zeros(v.shape, bool), face=face, brain=brain)
    assert same["voxels_changed"] == 0 and same["brain_voxels_changed"] == 0
    assert same["face_head_voxels"] == 0 and same["face_fraction_changed"] == 0.0
    assert same["face_surface_change_mm"] == 0.0 and same["changed_outside_face_region"] == 0
    assert same["face_region_voxels"] == 6 * 2 * 4


def test_without_a_face_region_or_registration_only_the_counts_are_reported():
    v = _scene()
    new = v.data.copy()
    new[1, 3, 1] = 0.0
    brain = np.zeros(v.shape, bool)
    brain[1, 3, 1] = True
    result = qc.measure(v, v.with_data(new), new != v.data, face=None, brain=brain)
    assert result == {"voxels_changed": 1, "brain_voxels": 1, "brain_voxels_changed": 1, "nothing_changed": False}
    unchanged = qc.measure(v, v, np.zeros(v.shape, bool), face=None, brain=brain)
    assert unchanged["nothing_changed"] is True and unchanged["voxels_changed"] == 0


def test_registration_summary_is_taken_for_the_original_modality():
    class Fit:
        def summary(self, modality):
            return {"metric": -0.5, "asked_for": modality}

    v = _scene("CT")
    result = qc.measure(v, v, np.zeros(v.shape, bool), face=None, brain=np.zeros(v.shape, bool), registration=Fit())
    assert result["registration"] == {"metric": -0.5, "asked_for": "CT"}


def test_ct_face_surface_uses_the_air_threshold_of_minus_300_hu():
    v = _scene("CT")
    face = np.zeros(v.shape, bool)
    face[:, 4:10, :] = True
    new = v.data.copy()
    new[:, 6, :] = -350.0  # below -300 HU: no longer head, though far from -1000
    result = qc.measure(v, v.with_data(new), new != v.data, face=face, brain=np.zeros(v.shape, bool))
    assert result["face_surface_change_mm"] == pytest.approx(2.5)
    assert result["face_fraction_changed"] == pytest.approx(1 / 3)  # j = 4, 5, 6 of the head, j = 6 changed


def test_the_defaced_head_is_judged_with_the_original_threshold():
    """A defacer that dims the face cannot move the bar: the MR head threshold comes from the original."""
    data = np.zeros((10, 12, 10), np.float32)
    data[:, 1:9, :] = 200.0
    data[:, 9:11, :] = 1000.0  # a bright face layer, a quarter of the sampled voxels, so the original's threshold is 100
    v = Volume(data, np.eye(4), "MR")
    new = data.copy()
    new[:, 9:11, :] = 60.0  # dimmed below 100: gone by the original's threshold (the defaced one's would be 20)
    face = np.zeros(v.shape, bool)
    face[:, 9:12, :] = True
    result = qc.measure(v, v.with_data(new), new != data, face=face, brain=np.zeros(v.shape, bool))
    assert result["face_fraction_changed"] == 1.0
    assert result["face_surface_change_mm"] == pytest.approx(2.0)  # the surface moved back from j = 10 to j = 8


# ---- the anterior surface picture --------------------------------------------------------------------------------


def _two_depth_head() -> Volume:
    """Head columns over a (40, 24) x-z face: x < 20 front surface at j = 19 (depth 10 voxels = 20 mm),
    x >= 20 at j = 5 (48 mm); no head at all in x >= 30, z >= 20."""
    data = np.zeros((40, 30, 24), np.float32)
    data[:20, :20, :] = 100.0
    data[20:, :6, :] = 100.0
    data[30:, :, 20:] = 0.0
    return Volume(data, np.diag([1.0, 2.0, 1.0, 1.0]), "MR")


def test_anterior_surface_is_lit_from_the_front_and_farther_surfaces_are_darker():
    v = _two_depth_head()
    img = np.asarray(qc._surface_image(v, 50.0, height=24))
    assert img.shape == (24, 40)  # rows: z, columns: x, 1 mm each: no resampling
    # viewed from the front: patient right (high x) on the image left, superior (high z) at the top
    near = img[:, 20:]  # x = 19..0: the near surface faces the viewer
    far = img[4:, 10:20]  # x = 29..20, below the headless corner
    assert np.all(near[:, 8:] == int(FLAT))
    assert np.all(far[:, :4] == int(30.0 + 225.0 * (1 - (48 - 20) / 150) / LIGHT_NORM))  # 28 mm farther: 202
    assert np.all(img[:4, :10] == 0)  # x >= 30, z >= 20: no head, black


def test_anterior_surface_fade_is_linear_over_150_mm_and_stops_at_0_35():
    data = np.zeros((42, 40, 20), np.float32)
    data[:14, :38, :] = 100.0  # depth 2 voxels x 5 mm = 10 mm: the nearest surface
    data[14:28, :20, :] = 100.0  # depth 20 voxels = 100 mm: 90 mm farther, fade 1 - 90/150 = 0.4
    data[28:, :2, :] = 100.0  # depth 38 voxels = 190 mm: 180 mm farther, fade clipped to 0.35
    v = Volume(data, np.diag([1.0, 5.0, 1.0, 1.0]), "MR")
    img = np.asarray(qc._surface_image(v, 50.0, height=20))  # columns: x = 41 - column
    assert np.all(img[:, :8] == int(30.0 + 225.0 * 0.35 / LIGHT_NORM))
    assert np.all(img[:, 20:22] == int(30.0 + 225.0 * 0.4 / LIGHT_NORM))
    assert np.all(img[:, 34:] == int(FLAT))


@pytest.mark.parametrize("slope, expected", [(1.0, 0.65), (-1.0, 1.35)])
def test_anterior_surface_brighter_when_it_faces_up(slope, expected):
    """A surface receding by 1 mm per mm upwards (normal (0, -1, 1)/sqrt 2) against one coming forwards."""
    data = np.zeros((20, 40, 20), np.float32)
    for z in range(20):
        front = 30 - z if slope > 0 else 11 + z  # last head voxel; depth = 39 - front
        data[:, : front + 1, z] = 100.0
    v = Volume(data, np.eye(4), "MR")
    img = np.asarray(qc._surface_image(v, 50.0, height=20)).astype(float)
    rows = img[8:12, 8:12]  # z = 8..11: well inside the ramp (no smoothing edge)
    depth = 39.0 - np.array([30 - z if slope > 0 else 11 + z for z in range(11, 7, -1)])
    lambert = expected / (np.sqrt(2.0) * LIGHT_NORM)
    fade = 1.0 - (depth - 9.0) / 150.0  # the nearest surface of the whole face is 9 mm deep
    np.testing.assert_allclose(rows, np.floor(30.0 + 225.0 * lambert * fade)[:, None].repeat(4, 1), atol=1.0)


def test_anterior_surface_slope_in_mm_uses_each_axis_spacing():
    """Gradients are taken in mm: a face receding 2 mm (one 2 mm voxel) per 1 mm to the patient's left, on a grid of
    1 x 2 x 3 mm, faces (-2, 0, 1)/sqrt 5; lit from (0, 0.35, 1) it gets 1 / (sqrt 5 |light|) of full light."""
    data = np.zeros((30, 40, 10), np.float32)
    for x in range(30):
        data[x, : 35 - x, :] = 100.0  # depth (in voxels) 40 - (35 - x) = 5 + x
    v = Volume(data, np.diag([1.0, 2.0, 3.0, 1.0]), "MR")
    img = np.asarray(qc._surface_image(v, 50.0, height=30)).astype(float)  # 30 rows: 10 slices of 3 mm
    assert img.shape == (30, 30)
    x = np.arange(12, 18)  # well inside the ramp
    depth = (5.0 + x) * 2.0
    expected = 30.0 + 225.0 / (np.sqrt(5.0) * LIGHT_NORM) * (1.0 - (depth - 10.0) / 150.0)
    np.testing.assert_allclose(img[12:18][:, 29 - x], np.floor(expected)[None, :].repeat(6, 0), atol=1.0)


def test_anterior_surface_slope_up_uses_the_superior_spacing():
    data = np.zeros((20, 40, 20), np.float32)
    for z in range(20):
        data[:, : 31 - z, z] = 100.0  # 1 voxel (1 mm) deeper per 2 mm slice: slope 0.5, normal (0, -0.5, 1)
    v = Volume(data, np.diag([1.0, 1.0, 2.0, 1.0]), "MR")
    img = np.asarray(qc._surface_image(v, 50.0, height=40)).astype(float)  # 2 rows per slice
    z = np.array([11, 10, 9, 8])
    lambert = (1.0 - 0.35 * 0.5) / (np.sqrt(1.25) * LIGHT_NORM)
    expected = 30.0 + 225.0 * lambert * (1.0 - (9.0 + z - 9.0) / 150.0)
    rows = img[2 * (19 - z) + 1, 10]  # the second row of each slice's pair (the upsampling is bilinear)
    np.testing.assert_allclose(rows, np.floor(expected), atol=2.0)


def test_a_surface_turned_away_from_the_light_is_dark_grey_not_black():
    """Black means 'no head'; an overhang lit from behind still shows as the darkest grey, 30."""
    data = np.zeros((20, 80, 20), np.float32)
    for z in range(20):
        data[:, : 75 - 4 * z, z] = 100.0  # receding 4 mm per mm upwards: normal (0, -4, 1), facing down
    v = Volume(data, np.eye(4), "MR")
    img = np.asarray(qc._surface_image(v, 50.0, height=20))
    assert np.all(img[8:12, 8:12] == 30)


def test_anterior_surface_keeps_the_physical_aspect_ratio():
    v = Volume(np.full((30, 10, 20), 100.0, np.float32), np.diag([2.0, 1.0, 1.5, 1.0]), "MR")
    img = qc._surface_image(v, 50.0, height=90)
    assert img.size == (round(90 * (30 * 2.0) / (20 * 1.5)), 90)  # width 60 mm : height 30 mm


def test_anterior_surface_of_an_empty_volume_is_black():
    v = Volume(np.zeros((10, 10, 10), np.float32), np.eye(4), "MR")
    img = np.asarray(qc._surface_image(v, 50.0, height=10))
    assert img.shape == (10, 10) and not img.any()


# ---- the QC sheet --------------------------------------------------------------------------------------------------


def _sheet(original: Volume, defaced: Volume, size: int = 64) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(qc.qc_png(original, defaced, title="t", size=size))))


def _mid_sagittal(v: Volume, size: int, window=None) -> np.ndarray:
    spec = RenderSpec(plane="sagittal", slices=Slices("mid"), window=window or "auto", size=size)
    return np.asarray(Image.open(io.BytesIO(render(v, spec)[0].png)))


def _wide_head() -> Volume:
    """Wider (x) than deep (y): its surface picture is wider than its sagittal slice."""
    data = np.zeros((60, 20, 24), np.float32)
    data[5:55, :15, 2:22] = 100.0
    return Volume(data, np.eye(4), "MR")


@pytest.mark.parametrize("make", [_two_depth_head, _wide_head])
def test_qc_sheet_layout_original_left_defaced_right(make):
    v = make()
    sag = _mid_sagittal(v, 64)
    h, w = sag.shape
    surf = np.asarray(qc._surface_image(v, 10.0, h))
    col_w = max(w, surf.shape[1])
    sheet = _sheet(v, v)
    assert sheet.shape == (2 * h + 2 * 18, 2 * col_w)
    for col in (0, 1):  # each column: an 18-pixel label strip, the mid-sagittal slice, a strip, the surface
        x = col * col_w
        top = sheet[18 : 18 + h, x : x + col_w]
        left = (col_w - w) // 2  # centred in its column, on black
        np.testing.assert_array_equal(top[:, left : left + w], sag)
        assert not top[:, :left].any() and not top[:, left + w :].any()
        bottom = sheet[36 + h :, x : x + col_w]
        left = (col_w - surf.shape[1]) // 2
        np.testing.assert_array_equal(bottom[:, left : left + surf.shape[1]], surf)
        assert not bottom[:, :left].any() and not bottom[:, left + surf.shape[1] :].any()
    assert sheet[:18, :col_w].any() and sheet[:18, col_w:].any()  # the labels


def test_qc_sheet_shows_the_defaced_volume_in_the_original_window():
    """Both sagittal panels share the original's window, so a defacer that dims everything looks dimmer."""
    v = _two_depth_head()
    dim = v.with_data(v.data * 0.5)
    sheet = _sheet(v, dim)
    h, col_w = (sheet.shape[0] - 36) // 2, sheet.shape[1] // 2
    left, right = sheet[18 : 18 + h, :col_w].astype(float), sheet[18 : 18 + h, col_w:].astype(float)
    assert right.mean() < 0.75 * left.mean()
    # and its surface is found with the original's head threshold: the dimmed head (50) is still above it (10)
    y = 36 + h
    np.testing.assert_array_equal(sheet[y:, :col_w], sheet[y:, col_w:])


def test_qc_sheet_surface_uses_the_original_head_threshold():
    """A face dimmed below the original's head level shows as gone, even if it is above the defaced volume's own."""
    data = np.zeros((40, 30, 24), np.float32)
    data[:, :20, :] = 200.0
    data[:, 20:24, :] = 1000.0  # a bright face layer: the original's threshold is 100
    v = Volume(data, np.eye(4), "MR")
    new = data.copy()
    new[:20, 20:24, :] = 60.0  # half the face: below 100, above the 20 the defaced volume alone would give
    new[20:, 20:24, :] = 200.0  # the other half: head by either threshold
    sheet = _sheet(v, v.with_data(new))
    h, col_w = (sheet.shape[0] - 36) // 2, sheet.shape[1] // 2
    before, after = sheet[36 + h :, :col_w].astype(float), sheet[36 + h :, col_w:].astype(float)
    # where the face was dimmed the surface lies 4 mm farther back: a darker grey on a third or more of the panel
    assert (after < before).sum() > 0.3 * (before > 0).sum()
    assert not (after > before).any()


def test_qc_sheet_default_panels_are_320_pixels():
    v = Volume(np.pad(np.full((20, 20, 20), 100.0, np.float32), 2), np.eye(4), "MR")  # 24 mm cube
    sheet = np.asarray(Image.open(io.BytesIO(qc.qc_png(v, v))))
    assert sheet.shape == (2 * 320 + 2 * 18, 2 * 320)
