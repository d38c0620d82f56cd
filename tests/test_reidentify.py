"""Re-identification statistics on hand-made embeddings: ranks, same-person share, detection, no face in view."""

from __future__ import annotations

import numpy as np
import pytest

from harness.imaging.face_render import FACE_RENDER_VERSION, GALLERY_VIEW, PROBE_VIEWS
from harness.privacy.face_models import Finding
from harness.privacy.reidentify import Gallery, Subject, reidentification_report, score_condition
from harness.privacy.report_text import attack_label
from harness.privacy.volume_faces import VolumeFaces

NONE = Finding(None, 0.0, None)


def approx(value):
    return pytest.approx(value, abs=1e-3)  # shares are reported to 4 decimals


def _unit(i: int, scale: float = 1.0) -> np.ndarray:
    e = np.zeros(128)
    e[i] = scale
    return e


def _faces(gallery=None, probes=()) -> VolumeFaces:
    findings = {GALLERY_VIEW.name: NONE if gallery is None else Finding("hog", 1.0, tuple(gallery))}
    for view, emb in zip(PROBE_VIEWS, probes):
        findings[view.name] = NONE if emb is None else Finding("hog", 1.0, tuple(emb))
    return VolumeFaces(findings)


@pytest.fixture
def originals():
    # people p0..p5 sit 1.0 apart (unit vectors on axes 0..5, distance sqrt 2 between any two)
    out = {Subject(f"p{i}", f"p{i}/t1"): _faces(_unit(i), [_unit(i) + _unit(60, 0.3)]) for i in range(6)}
    out[Subject("p0", "p0/flair")] = _faces(None, [None])  # a second volume of p0 whose face was not found
    out[Subject("gone", "gone/t1")] = VolumeFaces({}, "no face in view: the volume is blank")
    return out


def test_ranks_distances_and_shares(originals):
    gallery = Gallery(originals)
    assert gallery.people == [f"p{i}" for i in range(6)]
    probes = {
        Subject("p0", "p0/t1"): _faces(None, [_unit(0) + _unit(60, 0.5)]),  # close to p0: rank 1, same person
        Subject("p1", "p1/t1"): _faces(None, [_unit(2) * 0.9 + _unit(1) * 0.3]),  # nearer p2 than p1: rank 2
        Subject("p2", "p2/t1"): _faces(None, [None, None]),  # no face found: not identified, not detected
        Subject("p3", "p3/t1"): "not defaced: the template fits poorly",  # refused: neither private nor found
        Subject("gone", "gone/t1"): _faces(None, [_unit(7)]),  # its person has no gallery face: not ranked
    }
    s = score_condition(gallery, probes)
    assert s["n"] == 4 and s["n_ranked"] == 3
    assert s["detected"] == approx(3 / 4)
    assert s["rank1"] == approx(1 / 3) and s["rank5"] == approx(2 / 3)
    assert s["same_person"] == approx(1 / 3)
    assert s["chance_rank1"] == approx(1 / 6)
    assert s["no_face"] == {"p3/t1": "not defaced: the template fits poorly"}
    lo, hi = s["rank1_ci"]
    assert 0.0 <= lo < s["rank1"] < hi <= 1.0
    assert gallery.rank("p1", np.asarray([_unit(2) * 0.9 + _unit(1) * 0.3]))[0] == 2


def test_an_unsure_candidate_is_matched_but_not_detected(originals):
    """A probe whose only candidate the detectors are not sure of (a weak HOG score, no CNN face) is not a detected
    face, yet an attacker still matches it: it ranks its person and counts as the same person."""
    gallery = Gallery(originals)
    unsure = Finding("hog", 0.1, tuple(_unit(0) + _unit(60, 0.2)), sure=False)
    faces = VolumeFaces({GALLERY_VIEW.name: NONE, PROBE_VIEWS[0].name: unsure, PROBE_VIEWS[1].name: NONE})
    s = score_condition(gallery, {Subject("p0", "p0/t1"): faces})
    assert s["detected"] == 0.0 and s["rank1"] == 1.0 and s["same_person"] == 1.0
    assert Finding.from_dict(unsure.as_dict()) == unsure and not unsure.detected


def test_the_best_view_and_any_gallery_face_of_the_person_count(originals):
    originals[Subject("p1", "p1/flair")] = _faces(_unit(9), [])  # p1's second volume looks different
    gallery = Gallery(originals)
    # one view far from everyone, one near p1's FLAIR face: the near one decides
    rank, distance = gallery.rank("p1", np.asarray([_unit(30), _unit(9) + _unit(60, 0.1)]))
    assert rank == 1 and distance == approx(0.1)


def test_report_counts_the_positive_control_and_no_face(originals):
    report = reidentification_report(originals, {"reface": {s: _faces(None, [_unit(0)]) for s in originals}})
    o = report["originals"]
    assert o["n"] == 7 and o["gallery_people"] == 6
    assert o["detected"] == approx(6 / 7)
    # p0..p5 re-seen at 0.3 from their gallery face: all rank 1; p0's FLAIR (no face found) is not identified
    assert o["control_rank1"] == approx(6 / 7) and o["control_same_person"] == approx(6 / 7)
    assert o["no_face"] == {"gone/t1": "no face in view: the volume is blank"}
    d = report["defacers"]["reface"]
    # every probe is p0's face: only p0's volumes are identified
    assert d["n"] == 7 and d["rank1"] == approx(2 / 7)
    assert set(report["attack"]) >= {"name", "dlib", "models", "render"}
    # the board's attack line names the render recipe: other renders, other figures with the same weights
    assert f"renders {FACE_RENDER_VERSION}" in attack_label(report["attack"])
