"""nph-evans: parsing, scoring, pair fidelity and agreement against hand-computed values; the four routes on real
sample-cohort phantoms (original and refaced); the tiny random VLM's garbage is recorded, never crashes."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import math
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from harness.core.failures import FailureKind
from harness.engine import sample_jobs
from harness.agent.loop import Budget, run_agent, run_single_turn
from harness.models import Sampling, create_model, parse_model_spec, scripted_names
from harness.scoring.stats import cohen_kappa
from tasks import get_task
from harness.imaging.compact import MASK_FORMAT, MaskFormatError, decode_mask, encode_mask, mask_dice
from tasks.nph_evans.task import MONTAGE_BELOW_VERTEX_MM, montage_slices


@pytest.fixture(scope="module")
def task():
    return get_task("nph-evans")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Two phantoms at coarse resolution (~5 s): case 0 ER 0.27 (no NPH), case 1 ER 0.40 (NPH)."""
    from harness.data import load_cohort
    from harness.data.sample_cohort import write_sample_cohort

    out = tmp_path_factory.mktemp("nph-cohort")
    manifest = write_sample_cohort("nph-evans", n=2, seed=3, out=out, resolution_scale=1.6)
    cases = load_cohort(str(manifest), "nph-evans").cases
    assert [c.truth["evans_ratio"] > 0.3 for c in cases] == [False, True]
    return cases


def _run(task, volume, mode, model=None, **kw):
    model = model or create_model("scripted:nph-evans")
    inp = task.build_input(None, {"t1": volume}, mode)
    if inp.toolbox is not None:
        res = asyncio.run(run_agent(model, inp.messages, inp.toolbox, **kw))
    else:
        res = asyncio.run(run_single_turn(model, inp.messages, **kw))
    return res, (task.parse(res.answer) if res.ok else None)


# --- contract ----------------------------------------------------------------------------------------------------

def test_registered_with_its_routes_and_baseline(task):
    assert task.name == "nph-evans" and task.roles == ("t1",)
    assert set(task.modes) == {"single", "agent", "direct", "labels"} and task.default_mode == "agent"
    assert set(task.direct_modes) == {"direct", "labels"}
    assert task.baseline == "scripted:nph-evans" and "nph-evans" in scripted_names()
    assert [m.name for m in task.accuracy_metrics] == ["er_abs_error", "nph_correct"]
    assert {m.name for m in task.fidelity_metrics} == {"er_abs_diff", "nph_agree", "ventricle_dice"}


# --- parsing -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, er, nph", [
    ('{"evans_ratio": 0.31, "nph": true}', 0.31, True),
    ('Looking at tile 5:\n```json\n{"evans_ratio": "0.27", "nph": "no", "tile": 5}\n```', 0.27, False),
    ('The horns are wide. Final answer: {"evans_ratio": 0.33} - consistent with NPH.', 0.33, None),
    ("I measured an Evans ratio of 0.29, so NPH: no.", 0.29, False),
    ("{'evans_ratio': 0.35, 'nph': True,}", 0.35, True),
])
def test_parse_is_tolerant(task, text, er, nph):
    p = task.parse(text)
    assert p.ok, p.error
    assert p.value["evans_ratio"] == pytest.approx(er)
    assert p.value.get("nph") is nph


def test_parse_accepts_the_typed_submit(task):
    p = task.parse({"evans_ratio": 0.3, "frontal_horn_width_mm": 42.0, "inner_skull_width_mm": 140.0, "slice_index": 88, "nph": False})
    assert p.ok and p.value["slice_index"] == 88 and p.value["frontal_horn_width_mm"] == 42.0


@pytest.mark.parametrize("text", ["", "lorem ipsum <unk> 0x0", '{"ratio": 0.3}', '{"evans_ratio": 1.7}',
                                  '{"evans_ratio": -0.2}', "Evans ratio: high", None])
def test_garbage_is_unparsable(task, text):
    p = task.parse(text)
    assert not p.ok and p.method == "unparsable" and p.error


def test_a_failed_segmentation_is_unparsable_not_wrong(task):
    p = task.parse({"error": "no lateral ventricles found"})
    assert not p.ok


# --- scoring, fidelity, agreement --------------------------------------------------------------------------------

def test_score_against_hand_values(task):
    truth = {"evans_ratio": 0.32}
    assert task.score({"evans_ratio": 0.28}, truth) == {"er_abs_error": pytest.approx(0.04), "nph_correct": 0.0}
    # an explicit NPH call wins over the ratio (the model may weigh other signs)
    assert task.score({"evans_ratio": 0.28, "nph": True}, truth)["nph_correct"] == 1.0
    assert task.score({"evans_ratio": 0.30}, {"evans_ratio": 0.25}) == {"er_abs_error": pytest.approx(0.05), "nph_correct": 1.0}


def test_compare_with_masks(task):
    a = np.zeros((10, 12, 8), bool)
    b = np.zeros_like(a)
    a[2:6, 3:7, 1:3] = True  # 32 voxels
    b[4:8, 3:7, 1:3] = True  # 32 voxels, 16 shared
    o = {"evans_ratio": 0.29, "ventricle_mask": encode_mask(a)}
    d = {"evans_ratio": 0.31, "ventricle_mask": encode_mask(b)}
    got = task.compare(o, d)
    assert got["er_abs_diff"] == pytest.approx(0.02)
    assert got["nph_agree"] == 0.0  # 0.29 -> no, 0.31 -> yes
    assert got["ventricle_dice"] == pytest.approx(2 * 16 / 64)
    assert task.compare({"evans_ratio": 0.2}, {"evans_ratio": 0.25}) == {"er_abs_diff": pytest.approx(0.05), "nph_agree": 1.0, "ventricle_dice": None}


def test_mask_encoding_round_trips_and_rejects_bad_payloads():
    rng = np.random.default_rng(0)
    m = np.zeros((30, 40, 20), bool)
    m[5:25, 10:30, 4:15] = rng.random((20, 20, 11)) > 0.5
    doc = json.loads(json.dumps(encode_mask(m)))
    assert doc["format"] == MASK_FORMAT and doc["voxels"] == int(m.sum())
    assert np.array_equal(decode_mask(doc), m)
    assert not decode_mask(encode_mask(np.zeros((3, 4, 5), bool))).any()
    assert mask_dice(doc, encode_mask(m[:, :, :19])) is None  # different grids: no Dice
    bad_box = {**doc, "origin": [25, 0, 0]}
    short = {**doc, "data": base64.b64encode(zlib.compress(b"\x00")).decode()}
    for bad in (bad_box, short, {**doc, "data": "%%%"}, {**doc, "format": "rle"}, {**doc, "shape": [30, 40]}, "mask"):
        with pytest.raises(MaskFormatError):
            decode_mask(bad)
        assert mask_dice(bad, doc) is None


def test_agreement_states_its_forms(task):
    orig = [0.25, 0.28, 0.31, 0.35, 0.22]
    defc = [0.26, 0.28, 0.29, 0.36, 0.22]
    pairs = [({"evans_ratio": o}, {"evans_ratio": d}) for o, d in zip(orig, defc)]
    got = task.agreement(pairs)
    diffs = np.subtract(defc, orig)
    ba = got["evans_ratio_bland_altman"]
    assert ba["bias"] == pytest.approx(diffs.mean()) and ba["sd"] == pytest.approx(diffs.std(ddof=1))
    assert ba["loa_high"] == pytest.approx(diffs.mean() + 1.96 * diffs.std(ddof=1))
    assert got["evans_ratio_icc"]["form"] == "ICC(2,1)" and 0.8 < got["evans_ratio_icc"]["icc"] <= 1.0
    # NPH calls: orig F F T T F, defaced F F F T F -> po 0.8; pe = 0.6*0.8 + 0.4*0.2 = 0.56; kappa = 0.24/0.44
    assert got["nph_kappa"]["kappa"] == pytest.approx((0.8 - 0.56) / 0.44)
    assert got["nph_kappa"]["kappa"] == pytest.approx(cohen_kappa([o > 0.3 for o in orig], [d > 0.3 for d in defc]).kappa)
    assert got["n_pairs"] == 5
    json.dumps(got)  # JSON-able for summary.json


# --- inputs on real phantoms ---------------------------------------------------------------------------------------

def test_single_input_is_a_montage_around_the_horn_level(task, cohort):
    from harness.imaging.brainmask import head_mask

    vol = cohort[0].load("t1")
    indices = montage_slices(vol)
    top = np.nonzero(head_mask(vol).any(axis=(0, 1)))[0].max()
    below = [(top - k) * vol.spacing[2] for k in indices]
    lo, hi = MONTAGE_BELOW_VERTEX_MM
    assert all(lo - vol.spacing[2] <= b <= hi + vol.spacing[2] for b in below)
    inp = task.build_input(cohort[0], {"t1": vol}, "single")
    assert inp.toolbox is None and len(inp.render_keys) == 1
    (msg,) = inp.messages
    assert len(msg.images) == 1 and "rows x" in msg.text and "mm per pixel" in msg.text and "JSON" in msg.text


def test_agent_input_has_a_typed_submit(task, cohort):
    inp = task.build_input(cohort[0], {"t1": cohort[0].load("t1")}, "agent")
    assert [m.role for m in inp.messages] == ["system", "user"] and not inp.messages[1].images
    tools = {t.name: t for t in inp.toolbox.specs()}
    assert {"volume_info", "view_slice", "view_montage", "measure", "submit"} <= set(tools)
    props = tools["submit"].parameters["properties"]
    assert props["evans_ratio"]["type"] == "number" and props["nph"]["type"] == "boolean" and props["slice_index"]["type"] == "integer"
    with pytest.raises(ValueError):
        task.build_input(cohort[0], {"t1": cohort[0].load("t1")}, "direct")


# --- the routes end to end ---------------------------------------------------------------------------------------

def test_direct_route_segments_and_keeps_its_mask(task, cohort):
    case = cohort[1]
    vol = case.load("t1")
    p = task.parse(task.solve_direct(case, {"t1": vol}))
    assert p.ok, p.error
    scores = task.score(p.value, case.truth)
    assert scores["nph_correct"] == 1.0 and scores["er_abs_error"] < 0.05
    assert 0 <= p.value["slice_index"] < vol.shape[2]
    assert p.value["evans_ratio"] == pytest.approx(p.value["frontal_horn_width_mm"] / p.value["inner_skull_width_mm"], abs=1e-3)
    mask = decode_mask(p.value["ventricle_mask"])
    assert mask.shape == vol.shape and mask.sum() * np.prod(vol.spacing) > 5000  # > 5 ml of lateral ventricle
    assert task.compare(p.value, p.value)["ventricle_dice"] == 1.0


def test_labels_route_reads_the_ventricles_of_the_cohorts_label_map(task, cohort):
    """The labels route measures the given map's lateral ventricles (here the phantom's exact map, given as the
    cohort's FreeSurfer-numbered label map), not a segmentation of its own; a condition without a map is bad input."""
    case = cohort[1]
    vol = case.load("t1")
    exact = case.truth["masks"]["labels"]
    given = dataclasses.replace(case, label_maps={"original": exact}, label_table="freesurfer")
    p = task.parse(task.solve_direct(given, {"t1": vol}, "original", "labels"))
    assert p.ok, p.error
    labels = np.asarray(nib.load(str(exact)).dataobj)
    assert np.array_equal(decode_mask(p.value["ventricle_mask"]), np.isin(labels, (4, 43)))
    assert p.value["source"] == f"label map {Path(exact).name}"
    assert task.score(p.value, case.truth)["er_abs_error"] < 0.02
    kind, message = sample_jobs.solve(task, given, lambda: {"t1": vol}, "reface", "labels")["failed"]
    assert kind == FailureKind.BAD_INPUT and "none for 'reface'" in message
    own = task.solve_direct(case, {"t1": vol}, "original", "labels")  # no maps: the harness's tissue segmentation
    assert own["source"] == "harness segmentation" and task.score(own, case.truth)["nph_correct"] == 1.0


@pytest.fixture(scope="module")
def full_resolution_cases(tmp_path_factory):
    """The built-in sample's first three phantoms at full resolution (~15 s): coarse voxels hide millimetre errors."""
    from harness.data import load_cohort
    from harness.data.sample_cohort import write_sample_cohort

    manifest = write_sample_cohort("nph-evans", n=3, seed=0, out=tmp_path_factory.mktemp("nph-full"))
    return load_cohort(str(manifest), "nph-evans").cases


@pytest.mark.slow
def test_direct_route_measures_both_widths_of_the_label_maps(task, full_resolution_cases):
    """The ratio alone hides a wrong numerator or denominator within its tolerance: each width is checked against
    the phantom's label maps (truth counts whole voxels; the inner table is placed mid-band, so about 2 mm)."""
    for case in full_resolution_cases:
        vol = case.load("t1")
        p = task.parse(task.solve_direct(case, {"t1": vol})).value
        assert p["slice_index"] == pytest.approx(case.truth["slice_index"], abs=5.0 / vol.spacing[2]), case.id
        assert p["frontal_horn_width_mm"] == pytest.approx(case.truth["frontal_horn_width_mm"], abs=1.5), case.id
        assert p["inner_skull_width_mm"] == pytest.approx(case.truth["inner_skull_width_mm"], abs=2.5), case.id


@pytest.mark.parametrize("mode", ["single", "agent"])
def test_scripted_baseline_reads_the_images(task, cohort, mode):
    for case in cohort:
        res, p = _run(task, case.load("t1"), mode)
        assert res.ok and p.ok, (res.failure, p and p.error)
        scores = task.score(p.value, case.truth)
        assert scores["er_abs_error"] < 0.03 and scores["nph_correct"] == 1.0, (case.id, p.value, case.truth)
    if mode == "agent":  # it measured with the tool and submitted millimetres
        names = [t["name"] for t in res.transcript if t["type"] == "tool_result"]
        assert names.count("measure") == 2 and names[-1] == "submit"
        assert 20 < p.value["frontal_horn_width_mm"] < 80 and 100 < p.value["inner_skull_width_mm"] < 180


@pytest.mark.slow
def test_scripted_baseline_on_a_refaced_volume(task, cohort, tmp_path):
    import defacers

    case = cohort[0]
    original = case.load("t1")
    refaced = defacers.deface_cached(defacers.get("reface"), original, tmp_path).volume
    assert refaced.content_hash != original.content_hash
    answers = {}
    for name, vol in (("original", original), ("reface", refaced)):
        for mode in ("single", "agent"):
            res, p = _run(task, vol, mode)
            assert p is not None and p.ok
            answers[name, mode] = p.value
        answers[name, "direct"] = task.parse(task.solve_direct(case, {"t1": vol})).value
    for mode in ("single", "agent", "direct"):
        fid = task.compare(answers["original", mode], answers["reface", mode])
        assert fid["nph_agree"] == 1.0 and fid["er_abs_diff"] < 0.02, (mode, fid)
        if mode == "direct":
            assert fid["ventricle_dice"] > 0.9
        assert task.score(answers["reface", mode], case.truth)["er_abs_error"] < 0.08


@pytest.mark.slow
def test_tiny_vlm_garbage_is_recorded_not_crashing(task, cohort, tiny_vlm):
    model = create_model(parse_model_spec(f"hf:{tiny_vlm}"))
    vol = cohort[0].load("t1")
    res, p = _run(task, vol, "single", model=model, sampling=Sampling(max_tokens=24))
    assert res.ok or res.failure in ("empty_reply",)
    if p is not None:
        assert p.ok or (p.method == "unparsable" and p.error)
    res, p = _run(task, vol, "agent", model=model, budget=Budget(max_steps=2), sampling=Sampling(max_tokens=16))
    assert (res.answer is None) == (res.failure is not None)
    if res.ok:
        assert p.ok or p.method == "unparsable"
    else:
        assert res.failure == "budget_exceeded" and not math.isnan(res.wall_s)
