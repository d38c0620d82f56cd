"""Tools over volumes: schemas from docstrings, argument validation, views, and measure's pixel -> mm mapping
through the display convention of harness.imaging.render."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from harness.models.scripted import call
from harness.imaging.render import RenderSpec, Slices, render
from harness.agent.tools import Tool, ToolError, Toolbox, pixel_to_voxel, validate_arguments
from harness.core.volume import Volume

SIZE = 256


def blob_volume():
    """Anisotropic grid with a translated origin and bright 3-voxel blobs at known voxels on three planes."""
    data = np.full((30, 40, 20), 10.0, dtype=np.float32)
    affine = np.array([[2.0, 0, 0, -30], [0, 1.0, 0, -15], [0, 0, 3.0, 7], [0, 0, 0, 1]])
    blobs = {
        "axial": (10, [(5, 10), (22, 31)]),  # slice k, blobs at (i, j)
        "coronal": (20, [(4, 3), (25, 15)]),  # slice j, blobs at (i, k)
        "sagittal": (15, [(6, 4), (33, 16)]),  # slice i, blobs at (j, k)
    }
    normal_axis = {"axial": 2, "coronal": 1, "sagittal": 0}
    centres = {}
    for plane, (s, pts) in blobs.items():
        centres[plane] = []
        for a, b in pts:
            ijk = {"axial": (a, b, s), "coronal": (a, s, b), "sagittal": (s, a, b)}[plane]
            box = [slice(c - 1, c + 2) for c in ijk]  # 3x3 in plane, one voxel thick
            box[normal_axis[plane]] = slice(s, s + 1)
            data[tuple(box)] = 1000.0
            centres[plane].append(np.array(ijk, dtype=float))
    return Volume(data, affine, "MR"), blobs, centres


def blob_pixels(png: bytes) -> list[tuple[float, float]]:
    """Intensity-weighted centroids (x, y) of the two bright blobs."""
    from scipy import ndimage

    arr = np.asarray(Image.open(io.BytesIO(png)), dtype=float)
    mask = arr > 128
    labels, n = ndimage.label(mask)
    assert n == 2, f"expected two blobs, found {n}"
    cy_cx = ndimage.center_of_mass(arr, labels, [1, 2])
    return [(cx, cy) for cy, cx in cy_cx]


@pytest.mark.parametrize("plane", ["axial", "coronal", "sagittal"])
def test_measure_maps_image_pixels_to_world_mm(plane):
    vol, blobs, centres = blob_volume()
    index = blobs[plane][0]
    box = Toolbox({"t1": vol}, image_size=SIZE)
    img = render(vol, RenderSpec(plane=plane, slices=Slices("index", (index,)), window=(500, 1000), size=SIZE))[0]
    found = blob_pixels(img.png)
    world_true = [vol.voxel_to_world(c) for c in centres[plane]]
    world_found = [vol.voxel_to_world(pixel_to_voxel(vol, plane, index, x, y, SIZE)) for x, y in found]
    # match each found blob to its true centre (the image order need not follow the voxel order)
    for w in world_found:
        assert min(np.linalg.norm(w - t) for t in world_true) < 0.6
    text = box.call(call("measure", 0, plane=plane, index=index, points=[list(p) for p in found])).text
    dist = float(re.search(r"distance ([\d.]+) mm", text).group(1))
    assert dist == pytest.approx(np.linalg.norm(world_true[1] - world_true[0]), abs=0.6)


def test_measure_radiological_left_right_on_colin27(colin27):
    from harness.imaging.io import load_volume

    v = load_volume(colin27)
    box = Toolbox({"t1": v}, image_size=512)
    res = box.measure("axial", 90, [[100, 200], [300, 200]])
    # 1 mm voxels, 181 mm wide on 427 pixels; image left is the patient's right (+x in RAS)
    assert "distance 84.8 mm" in res.text
    xs = [float(v) for v in re.findall(r"\(([+-][\d.]+),", res.text)]
    assert xs[0] > 0 > xs[1]
    with pytest.raises(ToolError, match="outside the 427x512 image"):
        box.measure("axial", 90, [[100, 200], [600, 200]])


def test_views_and_their_errors():
    vol, _, _ = blob_volume()
    box = Toolbox({"t1": vol, "flair": vol}, image_size=SIZE, max_montage_tiles=9)
    s = box.view_slice("coronal", mm=5.0)
    assert "coronal slice 20" in s.text and len(s.images) == 1 and s.images[0].spec_key
    m = box.view_montage("axial", start=2, stop=18, step=2)
    assert "9 slices (2, 4, 6, 8, 10, 12, 14, 16, 18)" in m.text
    auto = box.view_montage("sagittal")
    assert "9 slices" in auto.text or "8 slices" in auto.text
    with pytest.raises(ToolError, match="at most 9"):
        box.view_montage("axial", step=1)
    with pytest.raises(ToolError, match="outside the volume"):
        box.view_slice("axial", mm=500.0)
    with pytest.raises(ToolError, match="no volume 'ct'"):
        box.view_slice("axial", index=1, volume="ct")
    assert box.call(call("view_slice", 0, plane="axial", index=1, window="lung")).text.startswith("error: unknown window")
    info = box.volume_info("flair").text
    assert "30 x 40 x 20" in info and "2 x 1 x 3 mm" in info and "axial: 20 slices" in info
    specs = {t.name: t.parameters for t in box.specs()}
    assert specs["view_slice"]["properties"]["volume"]["enum"] == ["t1", "flair"]
    assert set(specs) == {"volume_info", "view_slice", "view_montage", "measure", "submit"}


def test_schema_from_docstring_and_validation():
    def grade(level: int, note: str = "", confident: bool | None = None) -> str:
        """Grade the finding.

        Args:
            level: Severity from 0 to 3,
                where 3 is worst.
            note: Free text.
        """
        return f"{level}"

    tool = Tool.from_function(grade)
    p = tool.parameters
    assert tool.description == "Grade the finding."
    assert p["required"] == ["level"] and p["additionalProperties"] is False
    assert p["properties"]["level"] == {"type": "integer", "description": "Severity from 0 to 3, where 3 is worst."}
    assert p["properties"]["note"]["default"] == "" and p["properties"]["confident"] == {"type": "boolean"}
    assert validate_arguments(p, {"level": 2.0}) == {"level": 2}
    for bad, msg in [({"level": "2"}, "must be an integer"), ({"level": True}, "must be an integer"), ({}, "missing required"),
                     ({"level": 1, "colour": "red"}, "unknown argument"), ({"level": 1.5}, "must be an integer")]:
        with pytest.raises(ToolError, match=msg):
            validate_arguments(p, bad)
