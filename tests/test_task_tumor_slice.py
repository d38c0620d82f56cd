"""tumor-slice: parsing, scoring in mm, pair fidelity, the geometry-based montage, and the scripted baseline end to
end on sample phantoms (original and refaced) plus a tiny random VLM whose garbage must not crash anything."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from harness.agent.loop import Budget, run_agent, run_single_turn
from harness.models import Sampling, create_model, parse_model_spec, resolve_model_spec
from harness.core.volume import Volume
from tasks import get_task
from tasks.common import text_of
from tasks.tumor.analysis import brain_montage, head_top, read_tile_layout, slice_geometry
from tests.conftest import make_head

TASK = get_task("tumor-slice")


def run_baseline(case, volumes, mode):
    inp = TASK.build_input(case, volumes, mode)
    model = create_model(resolve_model_spec(TASK.baseline))
    coro = run_agent(model, inp.messages, inp.toolbox) if inp.toolbox else run_single_turn(model, inp.messages)
    res = asyncio.run(coro)
    assert res.ok, res.failure_detail
    parsed = TASK.parse(res.answer)
    assert parsed.ok, parsed.error
    return TASK.locate(parsed.value, volumes)


# --- parsing -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ('{"slice": 57, "reason": "largest"}', 57),
    ('Here it is:\n```json\n{"slice": "61"}\n```', 61),
    ('I looked at all tiles. {"slice": 12.0, "reason": "big"} done', 12),
    ("The most representative slice is slice 88 where the mass is largest.", 88),
    ("Best: #104 (z=+12.0mm)", 104),
    ({"slice": 33, "reason": "agent submit"}, 33),
])
def test_parse_accepts_json_fences_prose_and_submits(text, expected):
    res = TASK.parse(text)
    assert res.ok and res.value["slice"] == expected


@pytest.mark.parametrize("text", ["", "no idea", '{"slice": -3}', '{"slice": "top"}', None, "\x00\x01 garbage tokens"])
def test_parse_records_garbage_as_unparsable(text):
    res = TASK.parse(text)
    assert not res.ok and res.method == "unparsable" and res.error


# --- scoring -------------------------------------------------------------------------------------------------

def test_score_distance_in_mm_and_hit_tolerance():
    truth = {"best_slice": 48}
    a = {"slice": 50, "slice_thickness_mm": 2.5}
    assert TASK.score(a, truth) == {"hit": 1.0, "distance_mm": 5.0}  # two slices of 2.5 mm: on the 5 mm tolerance
    assert TASK.score({**a, "slice": 51}, truth) == {"hit": 0.0, "distance_mm": 7.5}
    assert TASK.score({"slice": 45, "slice_thickness_mm": 1.1}, truth) == {"hit": 1.0, "distance_mm": 3.3}
    # slices thicker than the tolerance: the adjacent slice still counts
    assert TASK.score({"slice": 49, "slice_thickness_mm": 6.0}, truth)["hit"] == 1.0
    assert TASK.score({"slice": 500, "out_of_range": True}, truth) == {"hit": 0.0, "distance_mm": None}


def test_compare_and_agreement():
    o = {"slice": 40, "slice_thickness_mm": 1.2}
    assert TASK.compare(o, {"slice": 40, "slice_thickness_mm": 1.2}) == {"pick_distance_mm": 0.0, "pick_agree": 1.0, "same_slice": 1.0}
    got = TASK.compare(o, {"slice": 45, "slice_thickness_mm": 1.2})
    assert got == {"pick_distance_mm": 6.0, "pick_agree": 0.0, "same_slice": 0.0}
    agg = TASK.agreement([(o, o), (o, {"slice": 44, "slice_thickness_mm": 1.2}), (o, {"slice": 45, "slice_thickness_mm": 1.2})])
    assert agg["same_slice_rate"] == pytest.approx(1 / 3)
    assert agg["within_tolerance_rate"] == pytest.approx(2 / 3)  # 4.8 mm is within 5 mm, 6.0 mm is not
    assert agg["max_pick_distance_mm"] == pytest.approx(6.0)
    assert TASK.agreement([]) == {}


def test_locate_adds_geometry_from_the_volume():
    vol = make_head(shape=(30, 34, 26), spacing=(1.0, 1.0, 2.5))
    a = TASK.locate({"slice": 10}, {"flair": vol})
    assert a["slice_thickness_mm"] == 2.5
    assert a["slice_mm"] == pytest.approx(float(vol.voxel_to_world([14.5, 16.5, 10])[2]), abs=1e-3)
    assert TASK.locate({"slice": 26}, {"flair": vol})["out_of_range"] is True
    assert slice_geometry(vol, 0)["slice_mm"] == pytest.approx(-31.25)


def test_montage_range_follows_the_head_not_the_array():
    vol = make_head(shape=(40, 48, 60), spacing=(2.0, 2.0, 2.0))
    # the same head with empty slices added above it: the montage moves with the head's top
    padded = Volume(np.concatenate([vol.data, np.zeros((40, 48, 20), np.float32)], axis=2), vol.affine, "MR")
    m, p = brain_montage(vol), brain_montage(padded)
    assert head_top(padded) == head_top(vol) and m.indices == p.indices
    assert m.step == 2 and len(m.indices) <= 30 and m.rows * m.cols >= len(m.indices)
    assert max(m.indices) < head_top(vol)


def test_tile_layout_is_read_from_prompt_and_tool_text():
    assert read_tile_layout("Each montage has 2 rows x 3 columns.\nTile slices: 4, 8, 12, 16, 20") == ([4, 8, 12, 16, 20], 2, 3)
    tool = "flair axial montage 0..90 step 10: 10 slices (0, 10, 20, 30, 40, 50, 60, 70, 80, 90), 512x512 pixels"
    assert read_tile_layout(tool) == (list(range(0, 100, 10)), 3, 4)
    assert read_tile_layout("no layout here") is None


# --- the sample cohort ----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_build_input_in_both_modes(tumor_cohort):
    case = tumor_cohort["tumor-slice"].cases[0]
    volumes = {r: case.load(r) for r in TASK.roles}
    single = TASK.build_input(case, volumes, "single")
    assert single.toolbox is None and len(single.messages[-1].images) == 4 and len(single.render_keys) == 4
    text = text_of(single.messages[-1])
    indices, rows, cols = read_tile_layout(text)
    assert indices == list(brain_montage(volumes["flair"]).indices) and rows * cols >= len(indices)
    assert str(case.truth["best_slice"]) not in text.split("Tile slices:")[0]  # nothing about the answer leaks
    agent = TASK.build_input(case, volumes, "agent")
    assert agent.toolbox is not None and "submit" in agent.toolbox.submit_names
    assert agent.toolbox.tools["submit"].parameters["properties"]["slice"]["type"] == "integer"


@pytest.mark.slow
def test_scripted_baseline_hits_on_phantoms_and_survives_reface(tumor_cohort):
    import defacers

    cases = tumor_cohort["tumor-slice"].cases
    scores = []
    for case in cases:
        volumes = {r: case.load(r) for r in TASK.roles}
        scores.append(TASK.score(run_baseline(case, volumes, "single"), case.truth))
    # 3 of 4 hits (mean 5 mm) with the whole-head MR window, 2 of 4 (mean 19 mm) with the cranial-vault window that
    # defacing cannot move: the low-grade glioma's pick jumps from 1 mm to 56 mm off on windows that differ by a few
    # percent, a knife edge of this reader. The 8 full-resolution sample cases give 6 of 8 hits with either window.
    assert sum(s["hit"] for s in scores) >= 2, scores
    assert np.mean([s["distance_mm"] for s in scores]) < 20.0

    case = cases[2]  # metastases: several small lesions, the hardest to keep stable
    volumes = {r: case.load(r) for r in TASK.roles}
    original = run_baseline(case, volumes, "single")
    refaced = {r: defacers.get("reface").deface(v).volume for r, v in volumes.items()}
    assert brain_montage(refaced["flair"]).indices == brain_montage(volumes["flair"]).indices
    defaced = run_baseline(case, refaced, "single")
    assert TASK.compare(original, defaced)["pick_agree"] == 1.0
    agent = run_baseline(case, volumes, "agent")
    assert TASK.score(agent, case.truth)["distance_mm"] <= 10.0


@pytest.mark.slow
def test_tiny_vlm_garbage_is_parsed_or_unparsable(tiny_vlm, tumor_cohort):
    case = tumor_cohort["tumor-slice"].cases[0]
    volumes = {r: case.load(r) for r in TASK.roles}
    inp = TASK.build_input(case, volumes, "single")
    model = create_model(parse_model_spec(f"hf:{tiny_vlm}"))
    res = asyncio.run(run_single_turn(model, inp.messages, sampling=Sampling(max_tokens=16)))
    if res.ok:
        parsed = TASK.parse(res.answer)
        assert parsed.ok or parsed.method == "unparsable"
        if parsed.ok:
            TASK.score(TASK.locate(parsed.value, volumes), case.truth)
    agent = TASK.build_input(case, volumes, "agent")
    res = asyncio.run(run_agent(model, agent.messages, agent.toolbox, budget=Budget(max_steps=1), sampling=Sampling(max_tokens=8)))
    assert (res.answer is None) == (res.failure is not None)
