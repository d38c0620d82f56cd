"""Face renders, the pose they are taken from, and the dlib attack on them, on the real average head at 2 mm."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness.core.volume import Volume
from harness.imaging.brainmask import brain_mask
from harness.imaging.face_render import GALLERY_VIEW, PROBE_VIEWS, VIEWS, render_faces
from harness.imaging.io import load_nifti, save_nifti
from harness.privacy import volume_faces
from harness.privacy.face_models import SAME_PERSON_DISTANCE, face_models
from harness.privacy.pose import NoFaceInView, face_pose, fitted_pose
from harness.privacy.volume_faces import attack_volume

ORIGINAL = {"name": "original", "version": "1", "params": {}}


@pytest.fixture(scope="module")
def head(pydeface_head) -> Volume:
    """The pydeface average head (a real face) at 2 mm: a template fit takes ~1 s."""
    v = load_nifti(pydeface_head, modality="MR")
    affine = v.affine.copy()
    affine[:3, :3] *= 2
    return Volume(v.data[::2, ::2, ::2], affine, "MR")


@pytest.fixture(scope="module")
def pose(head):
    return face_pose(head)


@pytest.fixture(scope="module")
def renders(head, pose):
    return {r.view.name: r for r in render_faces(head, pose, VIEWS)}


def _distance(a, b) -> float:
    return float(np.linalg.norm(np.subtract(a, b)))


def test_renders_are_deterministic_and_show_a_face_dlib_finds(head, pose, renders):
    again = render_faces(head, pose, [GALLERY_VIEW])[0]
    assert again.png() == renders[GALLERY_VIEW.name].png()
    assert set(renders) == {v.name for v in VIEWS} and len(renders) == 6
    front = renders[GALLERY_VIEW.name]
    assert 0.3 < front.hit_fraction < 0.95  # the head fills the window, with air around it
    models = face_models()
    found = {name: models.find(r.image) for name, r in renders.items()}
    assert all(f.detected for f in found.values()), {n: f.detector for n, f in found.items()}
    gallery = found[GALLERY_VIEW.name].embedding
    # the same head in other yaws and light is the same person by dlib's rule
    assert max(_distance(gallery, found[v.name].embedding) for v in PROBE_VIEWS) < SAME_PERSON_DISTANCE
    # the diagnostic scores name the candidate the attack took, and nothing where there is no candidate
    assert found[GALLERY_VIEW.name].detector == "hog"
    assert models.best_scores(front.image)[0] == found[GALLERY_VIEW.name].score
    assert models.best_scores(np.zeros_like(front.image)) == (None, None)


def test_a_probe_face_needs_a_sure_hog_score_or_the_cnns_word(renders):
    """A probe's HOG candidate below HOG_SURE is a detected face only where the CNN finds one (then with the CNN's
    box and confidence), else an unsure candidate that is still embedded; a gallery face is enrolled at HOG's own
    threshold; a sure HOG candidate never waits for the CNN."""
    from collections import namedtuple
    from copy import copy

    from harness.privacy import face_models as fm

    real = face_models()
    image = renders[GALLERY_VIEW.name].image
    boxes, scores, _ = real.hog.run(fm._rgb(image), fm.HOG_UPSAMPLE, 0.0)
    box = boxes[int(np.argmax(scores))]
    Detection = namedtuple("Detection", "rect confidence")

    class Hog:
        def __init__(self, score):
            self.score = score

        def run(self, rgb, upsample, threshold):
            return [box], [self.score], [0]

    class Cnn:
        def __init__(self, *found):
            self.found, self.calls = list(found), 0

        def __call__(self, rgb, upsample):
            self.calls += 1
            return self.found

    models = copy(real)
    models.hog, models.cnn = Hog(fm.HOG_SURE - 0.01), Cnn()
    unsure = models.find(image)
    assert not unsure.detected and not unsure.sure and models.cnn.calls == 1
    enrolled = models.find(image, enrol=True)
    assert enrolled.detector == "hog" and enrolled.sure and enrolled.score == pytest.approx(fm.HOG_SURE - 0.01)
    assert unsure.detector == "hog" and unsure.embedding == enrolled.embedding  # the same box, matched all the same
    models.hog = Hog(fm.HOG_SURE - 0.01)
    models.hog.run = lambda rgb, upsample, threshold: ([], [], [])
    assert models.find(image).embedding is None  # no candidate at all: nothing to match
    models.cnn = Cnn(Detection(box, 0.2), Detection(box, 0.9))
    confirmed = models.find(image)
    assert confirmed.detector == "cnn" and confirmed.score == 0.9 and confirmed.detected
    models.hog, models.cnn = Hog(fm.HOG_SURE), Cnn()
    assert models.find(image).detector == "hog" and models.cnn.calls == 0


def test_only_an_originals_gallery_view_is_enrolled(head, tmp_path, monkeypatch):
    real = face_models()
    enrolled = []

    class Recorder:
        def find(self, gray, *, enrol=False):
            enrolled.append((enrol, gray.copy()))
            return real.find(gray, enrol=enrol)

    monkeypatch.setattr(volume_faces, "face_models", Recorder)
    attack_volume(head, head, ORIGINAL, tmp_path)
    assert [e for e, _ in enrolled].count(True) == 1 and len(enrolled) == len(VIEWS)
    gallery = render_faces(head, volume_faces.pose_cached(head, tmp_path), [GALLERY_VIEW])[0].image
    assert np.array_equal(next(g for e, g in enrolled if e), gallery)
    enrolled.clear()
    attack_volume(head, head, {"name": "reface", "version": "1", "params": {}}, tmp_path)
    assert len(enrolled) == len(PROBE_VIEWS) and not any(e for e, _ in enrolled)


def test_pose_follows_a_turned_head(head, pose):
    t = np.radians(20.0)
    rot = np.eye(4)
    rot[:2, :2] = [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]  # the head turned 20 degrees about S-I
    turned = face_pose(Volume(head.data, rot @ head.affine, "MR"))
    expected = rot[:3, :3] @ np.asarray(pose.anterior)
    assert np.degrees(np.arccos(np.clip(np.dot(turned.anterior, expected), -1, 1))) < 3.0
    assert _distance(turned.anchor, rot[:3, :3] @ np.asarray(pose.anchor)) < 4.0  # mm


def test_bad_input_is_no_face_in_view_with_the_reason(head, pose):
    blank = Volume(np.zeros(head.shape, np.float32), head.affine, "MR")
    with pytest.raises(NoFaceInView, match="no face in view.*blank"):
        face_pose(blank)
    stripped = Volume(np.where(brain_mask(head), head.data, 0.0), head.affine, "MR")
    with pytest.raises(NoFaceInView, match="no face in view"):
        face_pose(stripped)
    # a field of view that ends above the eyes (a CT cut at the orbits)
    eyes_k = int(round(head.world_to_voxel(pose.anchor)[2]))
    affine = head.affine.copy()
    affine[:3, 3] = head.voxel_to_world([0, 0, eyes_k + 8])
    cut = Volume(head.data[:, :, eyes_k + 8:], affine, "MR")
    with pytest.raises(NoFaceInView, match="field of view ends before the (eyes|mouth)"):
        face_pose(cut)
    # Colin27's case: the field of view ends between the nose and the mouth. The attack refuses it; the fitted pose
    # (a diagnostic's) is still the head's own
    below_nose = eyes_k - int(round(30 / head.spacing[2]))
    affine[:3, 3] = head.voxel_to_world([0, 0, below_nose])
    no_mouth = Volume(head.data[:, :, below_nose:], affine, "MR")
    with pytest.raises(NoFaceInView, match="field of view ends before the mouth"):
        face_pose(no_mouth)
    fitted = fitted_pose(no_mouth)
    assert np.degrees(np.arccos(np.clip(np.dot(fitted.anterior, pose.anterior), -1, 1))) < 3.0
    assert _distance(fitted.anchor, pose.anchor) < 4.0  # mm


def test_attack_is_cached_by_content_and_a_cached_answer_runs_no_model(head, tmp_path, monkeypatch):
    first = attack_volume(head, head, ORIGINAL, tmp_path)
    assert not first.from_cache and set(first.findings) == {v.name for v in VIEWS}
    files = list((tmp_path / "face-attack").glob("*.json"))
    assert len(files) == 1 and len(json.loads(files[0].read_text())["views"]) == 6

    def no_models():
        raise AssertionError("a cached attack must not load the models")

    monkeypatch.setattr(volume_faces, "face_models", no_models)
    monkeypatch.setattr(volume_faces, "render_faces", no_models)
    again = attack_volume(head, head, ORIGINAL, tmp_path)
    assert again.from_cache and again.findings == first.findings
    # another defacer identity is another entry: computed, not answered from the original's
    with pytest.raises(AssertionError, match="cached attack"):
        attack_volume(head, head, {"name": "reface", "version": "x", "params": {}}, tmp_path)
    reface, deface = ({"name": n, "version": "1", "params": {}} for n in ("reface", "deface"))
    assert volume_faces.attack_key(head.content_hash, reface) != volume_faces.attack_key(head.content_hash, deface)
    assert volume_faces.attack_key(head.content_hash, reface) != volume_faces.attack_key("0" * 64, reface)
    files[0].write_text("{not json")  # a damaged entry is computed again, never trusted
    with pytest.raises(AssertionError, match="cached attack"):
        attack_volume(head, head, ORIGINAL, tmp_path)


def test_a_fresh_pose_is_the_cached_pose(head, tmp_path):
    """What is rendered never depends on whether the pose was cached: a fresh fit comes back as stored."""
    fresh = volume_faces.pose_cached(head, tmp_path)
    assert volume_faces.pose_cached(head, tmp_path) == fresh


def test_a_volume_without_a_face_is_recorded_as_such(tmp_path, head):
    blank = Volume(np.zeros(head.shape, np.float32), head.affine, "MR")
    faces = attack_volume(blank, blank, ORIGINAL, tmp_path)
    assert faces.no_face and "blank" in faces.no_face and faces.findings == {}
    assert attack_volume(blank, blank, ORIGINAL, tmp_path).from_cache


def test_faces_cli_writes_the_views(head, tmp_path):
    from typer.testing import CliRunner

    from harness.cli import _register, app

    _register()
    save_nifti(head, tmp_path / "head.nii.gz")
    res = CliRunner().invoke(app, ["faces", str(tmp_path / "head.nii.gz"), "--out", str(tmp_path / "faces")])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "faces").glob("*.png")) == sorted(f"head-{v.name}.png" for v in VIEWS)
    run_dir = tmp_path / "runs" / "r1"
    run_dir.mkdir(parents=True)
    (run_dir / "manifest.json").write_text("{}")
    (run_dir / "samples.jsonl").write_text("")
    refused = CliRunner().invoke(app, ["faces", str(tmp_path / "head.nii.gz"), "--out", str(run_dir / "qc" / "faces")])
    assert refused.exit_code != 0 and "never go into a run folder" in str(refused.exception)
    assert not (run_dir / "qc").exists()


def test_privacy_cli_prints_one_json_object_and_names_a_volume_without_a_face(head, tmp_path):
    from typer.testing import CliRunner

    from harness.cli import _register, app

    _register()
    save_nifti(head, tmp_path / "a" / "t1.nii.gz")
    save_nifti(Volume(np.zeros(head.shape, np.float32), head.affine, "MR"), tmp_path / "b" / "t1.nii.gz")
    rows = [{"id": "a", "volumes": {"t1": "a/t1.nii.gz"}, "truth": {"evans_ratio": 0.3}},
            {"id": "b", "volumes": {"t1": "b/t1.nii.gz"}, "truth": {"evans_ratio": 0.3}}]
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["privacy", "--cohort", str(tmp_path / "manifest.jsonl"), "--task", "nph-evans", "-d", "quickshear",
            "--json", "--cache-dir", str(tmp_path / "cache")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    o, q = report["originals"], report["defacers"]["quickshear"]
    assert (o["n"], o["detected"], o["gallery_people"]) == (1, 1.0, 1)
    assert o["control_rank1"] == 1.0  # its own re-renders rank it first (the only person: chance is 100 %)
    assert list(o["no_face"]) == ["b/t1"] and "blank" in o["no_face"]["b/t1"]
    assert q["n"] == 1 and q["chance_rank1"] == 1.0 and list(q["no_face"]) == ["b/t1"]
    assert set(q) >= {"detected", "rank1", "rank5", "same_person"} and 0.0 <= q["detected"] <= 1.0
