"""Phantom faces: a distinct, seed-determined identity per case, feature moves that never reach inside the skull,
and a skin taken from the template's own intensity. (How far apart dlib puts the faces is measured by
benchmarks/privacy.py and benchmarks/phantom_faces.py, not here.)"""

from __future__ import annotations

import numpy as np
import pytest

from harness.data import sample_cohort
from harness.imaging.io import load_volume
from harness.phantoms import anatomy as A
from harness.phantoms import face_shape
from harness.phantoms.face_sources import colin27_face
from harness.phantoms import head as P
from tasks.nph_evans.phantom import PHANTOMS as NPH_PHANTOMS

INTRACRANIAL = (A.CSF, A.VENTRICLE, A.FRONTAL_HORN, A.GM, A.WM)


@pytest.fixture(scope="module")
def atlas():
    return A.load_atlas()


def case_rng(index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([0, 1, index]))


def test_identities_are_fixed_by_seed_and_differ_by_millimetres_in_the_features(atlas):
    shaper = face_shape.shaper_for(atlas)
    centres = np.array([shaper._centre_mm(p) for f in face_shape.FEATURES for p in f.parts])
    faces = [face_shape.draw_face(P._face_rng(case_rng(i))) for i in range(6)]
    assert face_shape.draw_face(P._face_rng(case_rng(0))) == faces[0]
    moves = [shaper.displacement(centres, f) for f in faces]
    for a in range(len(faces)):
        for b in range(a + 1, len(faces)):
            apart = np.linalg.norm(moves[a] - moves[b], axis=1)
            # some feature differs by more than a nose's width of variation, and the face as a whole by millimetres
            assert apart.max() > 4.0 and np.sqrt(np.mean(apart**2)) > 1.5, (a, b, apart.round(1))


def test_drawing_a_face_takes_nothing_from_the_case_stream():
    rng, twin = case_rng(4), case_rng(4)
    P._face_rng(rng)
    assert rng.random() == twin.random()


def test_features_move_the_face_and_never_the_inside_of_the_skull(atlas, monkeypatch):
    shaper = face_shape.shaper_for(atlas)
    skull = np.argwhere(np.isin(atlas.labels, INTRACRANIAL)[::2, ::2, ::2]) * 2
    points = skull @ atlas.affine[:3, :3].T + atlas.affine[:3, 3]
    extreme = {f.name: 2.5 * f.sd_mm for f in face_shape.FEATURES}
    assert not shaper.displacement(points, extreme).any()

    with_face = P.make_head(atlas, case_rng(2), resolution_scale=3.0)
    monkeypatch.setattr(face_shape, "draw_face", lambda rng: {})
    without = P.make_head(atlas, case_rng(2), resolution_scale=3.0)
    assert with_face.face_features_mm and not without.face_features_mm
    inside = np.isin(without.labels, INTRACRANIAL) | np.isin(with_face.labels, INTRACRANIAL)
    assert np.array_equal(with_face.labels[inside], without.labels[inside])
    assert (with_face.labels != without.labels).sum() > 200  # the face itself did change


def _ball_head(label_radius: float, skin_radius: float, frame_at: int | None = None) -> P.Head:
    """A head whose labels end at label_radius while its template intensity crosses SKIN_T1 at skin_radius."""
    n = 40
    r = np.linalg.norm(np.indices((n, n, n)) - (n - 1) / 2, axis=0)
    labels = np.where(r <= label_radius, A.SCALP, A.BACKGROUND).astype(np.uint8)
    texture = (P.SKIN_T1 * np.clip(1.0 + (skin_radius - r) / 2.0, 0.0, 3.0)).astype(np.float32)
    if frame_at is not None:
        texture[:, :, frame_at] = 0.5  # a bright plane away from the skin, like the template's head-holder
    return P.Head(labels, texture, np.eye(4), 0.0, {})


@pytest.mark.parametrize("skin_radius", [8.6, 11.4])
def test_the_skin_is_where_the_template_intensity_puts_it(skin_radius):
    head = _ball_head(10.0, skin_radius, frame_at=39)
    labels, tissue = P.skin(head)
    profile = tissue[19, 19, 20:]  # from near the centre outwards, one voxel per mm
    k = int(np.argmax(profile < 0.5))  # the profile falls from 1 to 0: it crosses 0.5 between voxels k-1 and k
    crossing = (k - 1 + (profile[k - 1] - 0.5) / (profile[k - 1] - profile[k])) + 0.5  # voxel 20 lies 0.5 out
    assert abs(crossing - skin_radius) < 0.35
    assert not tissue[:, :, 39].any()  # the frame is no skin
    changed = labels != head.labels  # only the background at the skin is synthesised as tissue
    assert np.all(head.labels[changed] == A.BACKGROUND) and np.all(labels[changed] == A.SCALP)


def test_a_new_head_version_is_a_new_cohort_cache(monkeypatch):
    before = sample_cohort.cohort_key(NPH_PHANTOMS, 0, 1.0)
    monkeypatch.setattr(sample_cohort, "HEAD_VERSION", P.HEAD_VERSION + 1)
    assert sample_cohort.cohort_key(NPH_PHANTOMS, 0, 1.0) != before


def test_colin27s_face_changes_the_face_and_nothing_inside_the_skull(atlas):
    if A.colin27_files() is None:
        pytest.skip("mricron-data (Colin27) is not installed")  # CI installs it
    t1, labels = colin27_face(atlas.t1, atlas.labels, atlas.affine, load_volume(A.colin27_files()[0]), A.SKIN_T1)
    faced = A.Atlas(t1, labels, atlas.affine, A.COLIN27_FACE_ATLAS, "")
    assert faced.labels.shape == atlas.labels.shape
    skull = np.isin(atlas.labels, INTRACRANIAL)
    assert np.array_equal(faced.labels[skull], atlas.labels[skull]) and np.array_equal(faced.t1[skull], atlas.t1[skull])
    face = np.zeros(atlas.labels.shape, bool)
    face[:, int(0.7 * face.shape[1]):, : int(0.55 * face.shape[2])] = True  # anterior, lower: eyes, nose, cheeks
    head = face & ((atlas.labels > 0) | (faced.labels > 0))
    assert np.abs(faced.t1 - atlas.t1)[head].mean() > 0.035
    assert (faced.labels != atlas.labels)[face].sum() > 1000  # the skin follows Colin27's face
