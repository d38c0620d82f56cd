"""Rendering: radiological display convention, orientation independence, windows, aspect, montage, determinism."""

import io

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from harness.imaging.io import load_volume, save_nifti
from harness.imaging.render import (
    WINDOW_PRESETS,
    RenderError,
    RenderSpec,
    Slices,
    parse_montage,
    parse_window,
    render,
    resolve_window,
    slice_positions_mm,
)
from harness.core.volume import Volume
from tests.conftest import make_head


def _pixels(img) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(img.png)))


def _marker_volume() -> Volume:
    """Zeros with one bright block at the patient's right-anterior-superior corner."""
    data = np.zeros((30, 40, 20), np.float32)
    data[24:, 30:, 14:] = 1000
    return Volume(data, np.diag([1.0, 1.0, 1.0, 1.0]), "MR", {})


@pytest.mark.parametrize(
    "plane, index, where",
    [
        ("axial", 16, "top-left"),  # patient right -> image left, anterior -> top
        ("coronal", 35, "top-left"),  # patient right -> image left, superior -> top
        ("sagittal", 27, "top-left"),  # anterior -> image left, superior -> top
    ],
)
def test_radiological_convention(plane, index, where):
    img = render(_marker_volume(), RenderSpec(plane=plane, slices=Slices("index", (index,)), window=(500, 1000), size=64))[0]
    px = _pixels(img)
    h, w = px.shape
    quadrants = {
        "top-left": px[: h // 2, : w // 2].mean(),
        "top-right": px[: h // 2, w // 2 :].mean(),
        "bottom-left": px[h // 2 :, : w // 2].mean(),
        "bottom-right": px[h // 2 :, w // 2 :].mean(),
    }
    assert max(quadrants, key=quadrants.get) == where
    assert quadrants[where] > 50 and min(quadrants.values()) == 0


@pytest.mark.parametrize("codes", ["LPS", "PIR", "ASL"])
@pytest.mark.parametrize("plane", ["axial", "coronal", "sagittal"])
def test_storage_orientation_does_not_change_the_picture(tmp_path, codes, plane):
    head = make_head(shape=(30, 36, 26), spacing=(1.0, 1.2, 2.0))
    transform = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"), nib.orientations.axcodes2ornt(codes))
    data = nib.orientations.apply_orientation(head.data, transform)
    affine = head.affine @ nib.orientations.inv_ornt_aff(transform, head.shape)
    nib.save(nib.Nifti1Image(data, affine), str(tmp_path / "twin.nii.gz"))
    spec = RenderSpec(plane=plane, slices=Slices.parse("30%,50%,70%"), montage=(1, 3), labels=True)
    ras = render(load_volume(save_nifti(head, tmp_path / "ras.nii.gz")), spec)
    twin = render(load_volume(tmp_path / "twin.nii.gz"), spec)
    assert [i.png for i in ras] == [i.png for i in twin]


def test_same_volume_and_spec_give_byte_identical_pngs(small_head):
    spec = RenderSpec(plane="coronal", slices=Slices.parse("every:5"), window="auto", labels=True, montage=(0, 0))
    a = render(small_head, spec)
    b = render(make_head(), spec)  # a separately built but identical volume
    assert [i.sha256 for i in a] == [i.sha256 for i in b]


def test_spec_key_is_stable_and_distinguishes_specs():
    a = RenderSpec(plane="axial", slices=Slices.parse("40,50"), window="brain")
    assert a.key == RenderSpec(plane="axial", slices=Slices("index", (40, 50)), window="brain").key
    assert len(a.key) == 16 and int(a.key, 16) >= 0
    others = [
        RenderSpec(plane="coronal", slices=Slices.parse("40,50"), window="brain"),
        RenderSpec(plane="axial", slices=Slices.parse("40,51"), window="brain"),
        RenderSpec(plane="axial", slices=Slices.parse("40,50"), window="bone"),
        RenderSpec(plane="axial", slices=Slices.parse("40,50"), window="brain", size=256),
        RenderSpec(plane="axial", slices=Slices.parse("40,50"), window="brain", montage=(1, 2)),
        RenderSpec(plane="axial", slices=Slices.parse("40,50"), window="brain", labels=True),
    ]
    assert len({a.key, *(o.key for o in others)}) == 7
    assert hash(a) == hash(RenderSpec(plane="axial", slices=Slices.parse("40,50"), window="brain"))


def test_ct_window_presets_map_hounsfield_units(small_ct):
    data = np.full((8, 8, 8), -1000.0, np.float32)
    data[:, :4, :] = 40.0  # brain-window centre -> mid grey
    data[:, 4:6, :] = 80.0  # centre + width/2 -> white
    ct = Volume(data, np.eye(4), "CT", {})
    px = _pixels(render(ct, RenderSpec(window="brain", size=8))[0])
    # display rows run anterior -> posterior, so the j < 4 half is the bottom half of the image
    assert set(np.unique(px[4:, :])) == {128}
    assert set(np.unique(px[2:4, :])) == {255}
    assert set(np.unique(px[:2, :])) == {0}
    assert resolve_window(small_ct, "auto") == WINDOW_PRESETS["brain"]
    assert WINDOW_PRESETS["bone"] == (600.0, 2800.0) and WINDOW_PRESETS["subdural"] == (75.0, 215.0)


def test_window_presets_are_the_documented_ones(small_ct):
    """Agents and users pick presets by name from the README and the tool descriptions: a changed centre or width
    would silently change every CT image a model sees."""
    import re
    from pathlib import Path

    from harness.agent import tools

    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text().split())
    documented = re.search(r"Window presets \(centre/width, HU\): (.*?);", readme).group(1)
    table = {name: (float(c), float(w)) for name, c, w in re.findall(r"(\w+) (-?\d+)/(\d+)", documented)}
    assert table == WINDOW_PRESETS and len(table) == 5
    for name, (centre, width) in table.items():
        assert resolve_window(small_ct, name) == (centre, width)
        assert parse_window(f"{centre:g}/{width:g}") == (centre, width) and parse_window(name.upper()) == name
    offered = re.search(r"a preset \(([^)]*)\)", open(tools.__file__).read()).group(1)
    assert {n.strip() for n in offered.split(",")} == set(WINDOW_PRESETS)


def test_mr_auto_window_ignores_outliers_and_defacing_cannot_move_it(colin27):
    from harness.imaging.brainmask import brain_mask

    v = load_volume(colin27)
    centre, width = resolve_window(v, "auto")
    lo, hi = centre - width / 2, centre + width / 2
    assert 0 < lo < 40 and 130 < hi < 254  # background (0) and the brightest fat do not set the range
    # the face removed (brain untouched): below the front of the brain, and all that lies in front of it
    brain = brain_mask(v)
    front = int(np.nonzero(brain.any(axis=(0, 2)))[0].max())
    face = np.zeros(v.shape, bool)
    face[:, 150:, :80] = True
    face[:, front + 1:, :] = True
    defaced = v.with_data(np.where(face & ~brain, 0.0, v.data).astype(np.float32))
    d_centre, d_width = resolve_window(defaced, "auto")
    # the whole head's window moves by ~6 % here; what is left is the brain mask of the defaced head differing by a
    # few voxels (up to 0.3 % on sample heads)
    assert abs(d_centre - centre) <= 0.01 * width and abs(d_width - width) <= 0.01 * width


def test_mr_auto_window_without_a_brain_uses_the_head():
    flat = Volume(np.where(np.arange(300) % 3, 500.0, 0.0).astype(np.float32).reshape(10, 10, 3), np.eye(4), "MR", {})
    assert resolve_window(flat, "auto") == (250.0, 500.0)  # one tissue value: the full range, never a zero width
    tiny = Volume(np.arange(1000, dtype=np.float32).reshape(10, 10, 10), np.eye(4), "MR", {})
    centre, width = resolve_window(tiny, "auto")
    # percentiles of the (sampled) voxels above 2 % of the range, as before brain windows: 0-19 are background
    assert 20 <= centre - width / 2 < 40 and 850 < centre + width / 2 < 1000


def test_auto_renders_have_their_own_spec_key():
    """A changed auto-window recipe makes new images; their key must change with it (presets and fixed windows
    keep theirs)."""
    from harness.imaging import render as render_module

    auto, fixed = RenderSpec(window="auto"), RenderSpec(window=(40.0, 80.0))
    before = auto.key, fixed.key
    recipe = render_module.MR_AUTO_WINDOW
    try:
        render_module.MR_AUTO_WINDOW = recipe + "-next"
        assert RenderSpec(window="auto").key != before[0] and RenderSpec(window=(40.0, 80.0)).key == before[1]
    finally:
        render_module.MR_AUTO_WINDOW = recipe


def test_pixel_aspect_follows_spacing():
    v = make_head(shape=(40, 40, 20), spacing=(1.0, 1.0, 3.0))
    axial = render(v, RenderSpec(plane="axial", size=200))[0]
    coronal = render(v, RenderSpec(plane="coronal", size=200))[0]
    assert (axial.width, axial.height) == (200, 200)
    assert (coronal.width, coronal.height) == (133, 200)  # 40 mm wide, 60 mm tall
    v2 = make_head(shape=(40, 40, 10), spacing=(1.0, 1.0, 2.0))
    sag = render(v2, RenderSpec(plane="sagittal", size=200))[0]
    assert (sag.width, sag.height) == (200, 100)


def test_montage_grid_and_labels(small_head):
    spec = RenderSpec(plane="axial", slices=Slices.parse("every:6"), montage=(2, 3), size=64, labels=True)
    [img] = render(small_head, spec)
    assert img.slices == (0, 6, 12, 18, 24, 30)
    tile = render(small_head, RenderSpec(plane="axial", size=64))[0]  # 80 x 96 mm -> 53 x 64 px
    assert (tile.width, tile.height) == (53, 64)
    assert (img.width, img.height) == (3 * 53, 2 * 64)
    unlabelled = render(small_head, RenderSpec(plane="axial", slices=Slices.parse("every:6"), montage=(2, 3), size=64))[0]
    assert img.png != unlabelled.png
    with pytest.raises(RenderError, match="room for 4 slices but 6"):
        render(small_head, RenderSpec(slices=Slices.parse("every:6"), montage=(2, 2)))


def test_slice_selection_forms(small_head):
    v = small_head  # 40 x 48 x 36 at 2 mm, centred on 0
    assert Slices.parse("mid").resolve(v, "axial") == [18]
    assert Slices.parse("all").resolve(v, "sagittal") == list(range(40))
    assert Slices.parse("0%,50%,100%").resolve(v, "coronal") == [0, 24, 47]
    assert Slices.parse("every:10").resolve(v, "axial") == [0, 10, 20, 30]
    assert Slices.parse("every:10mm").resolve(v, "axial") == [0, 5, 10, 15, 20, 25, 30, 35]
    positions = slice_positions_mm(v, "axial")
    assert positions[0] == pytest.approx(-35.0) and positions[-1] == pytest.approx(35.0)
    assert Slices.parse("-35mm,0mm,11mm").resolve(v, "axial") == [0, 17, 23]
    with pytest.raises(RenderError, match="z=90 mm is outside the volume"):
        Slices.parse("90mm").resolve(v, "axial")
    with pytest.raises(RenderError, match="slice index 40 is outside the sagittal range 0..39"):
        Slices.parse("40").resolve(v, "sagittal")
    for bad in ("", "abc", "1,2%", "every:0", "150%", "every:-2mm"):
        with pytest.raises(RenderError):
            Slices.parse(bad)


def test_bad_spec_values_are_clear_errors():
    with pytest.raises(RenderError, match="plane must be one of"):
        RenderSpec(plane="oblique")  # type: ignore[arg-type]
    with pytest.raises(RenderError, match="unknown window 'lung'"):
        RenderSpec(window="lung")
    with pytest.raises(RenderError, match="window width must be positive"):
        RenderSpec(window=(40, 0))
    with pytest.raises(RenderError, match="size must be between"):
        RenderSpec(size=2)
    assert parse_window("40/80") == (40.0, 80.0)
    with pytest.raises(RenderError, match="cannot read window"):
        parse_window("40/eighty")
    assert parse_montage("auto") == (0, 0) and parse_montage("3x4") == (3, 4) and parse_montage(None) is None
    with pytest.raises(RenderError, match="cannot read montage"):
        parse_montage("3by4")


@pytest.mark.parametrize("height", [60, 240, 517])
def test_kept_label_glyphs_draw_the_pixels_imagedraw_text_draws(height):
    """Labels are drawn from kept glyph masks; the pixels must be exactly ImageDraw.text's, or every stored image
    hash (and the viewer's re-render check) would change with the cache."""
    from PIL import ImageDraw

    from harness.imaging import render as r

    rng = np.random.default_rng(height)
    base = Image.fromarray(rng.integers(0, 256, (height, 300), dtype=np.uint8), "L")
    size = max(10, height // 24)
    kept, direct = base.copy(), base.copy()
    draw = ImageDraw.Draw(direct)
    for xy, text, anchor in (((4, 2), "#17 z=-12.5mm", None), ((4, height // 2), "R", "lm"), ((296, height // 2), "L", "rm")):
        r._label(ImageDraw.Draw(kept), xy, text, size, anchor)
        r._label(ImageDraw.Draw(kept), xy, text, size, anchor)  # drawn twice from the kept masks: still the same
        for _ in range(2):
            draw.text(xy, text, fill=255, font=r._font(size), anchor=anchor, stroke_width=2, stroke_fill=0)
    assert np.array_equal(np.asarray(kept), np.asarray(direct))
