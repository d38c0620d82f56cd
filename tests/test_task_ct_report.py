"""ct-report: parsing, scoring against hand-computed values, pairs, inputs in both modes, the scripted baseline
on real phantom cases (original and defaced), the detectors on drawn slices, and the tiny VLM's garbage."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from harness.agent.loop import run_agent, run_single_turn
from harness.data import load_cohort
from harness.data.sample_cohort import write_sample_cohort
from harness.models import create_model
from harness.imaging.render import to_uint8
from harness.scoring.text import DEFAULT_BERTSCORE_MODEL_ID
from tasks import get_task
from tasks.ct_report import detect as ct_detect, task as ct_report

TASK = get_task("ct-report")


@pytest.fixture
def no_bertscore(monkeypatch):
    """Fast tests leave BERTScore out (its model takes ~8 s to load); test_bertscore_is_scored covers it."""
    from harness.scoring import cache

    real = cache.cached_text_scores
    monkeypatch.setattr(cache, "cached_text_scores", lambda name, cands, refs, **options:
                        [0.5] * len(cands) if name == "bertscore" else real(name, cands, refs, **options))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Two coarse phantoms (2.4 and 1.8 x 5 mm voxels): case 0 normal, case 1 a right intraparenchymal haematoma."""
    out = tmp_path_factory.mktemp("ct-cohort")
    write_sample_cohort("ct-report", n=2, seed=0, out=out, resolution_scale=2.0)
    return load_cohort(str(out / "manifest.jsonl"), "ct-report")


# --- parsing ------------------------------------------------------------------------------------------------------

REPORT = {"findings": "Acute left subdural haematoma, 8 mm. No midline shift.", "impression": "1. Acute left subdural haematoma."}


@pytest.mark.parametrize("text,method", [
    (json.dumps(REPORT), "json"),
    ("Here is my report:\n```json\n" + json.dumps(REPORT, indent=2) + "\n```\nDone.", "fenced-json"),
    ("I looked at both windows. " + json.dumps(REPORT) + " Hope this helps.", "embedded-json"),
    ("{'findings': 'Acute left subdural haematoma, 8 mm. No midline shift.', 'impression': '1. Acute left subdural haematoma.',}", "repaired-json"),
])
def test_parse_json_variants(text, method):
    parsed = TASK.parse(text)
    assert parsed.ok, parsed.error
    assert parsed.method == method
    assert parsed.value == REPORT


def test_parse_plain_text_report_with_headings():
    text = ("TECHNIQUE: Non-contrast CT.\n\n**FINDINGS:**\nAcute left subdural haematoma.\nNo midline shift.\n\n"
            "## Impression:\n1. Acute left subdural haematoma.\n")
    parsed = TASK.parse(text)
    assert parsed.ok and parsed.method == "regex"
    assert parsed.value["findings"] == "Acute left subdural haematoma.\nNo midline shift."
    assert parsed.value["impression"] == "1. Acute left subdural haematoma."


@pytest.mark.parametrize("garbage", ["", "   ", "I cannot interpret medical images.", "{\"findings\": 3}",
                                     "FINDINGS: something but no impression heading", None, "{" * 500])
def test_garbage_is_unparsable_not_wrong(garbage):
    parsed = TASK.parse(garbage)
    assert not parsed.ok and parsed.method == "unparsable" and parsed.error


def test_parse_submitted_dict():
    assert TASK.parse(dict(REPORT)).value == REPORT
    missing = TASK.parse({"findings": "No acute abnormality."})
    assert not missing.ok and "impression" in missing.error


# --- scoring ------------------------------------------------------------------------------------------------------

TRUTH = {"report": "TECHNIQUE: Non-contrast CT.\n\nFINDINGS:\nAcute left subdural haematoma.\nAir-fluid level in the left maxillary sinus.\n\nIMPRESSION:\n1. Acute left subdural haematoma.\n",
         "report_findings": "Acute left subdural haematoma.\nAir-fluid level in the left maxillary sinus.",
         "report_impression": "1. Acute left subdural haematoma."}


def test_reference_text_drops_technique_and_headings():
    assert ct_report.reference_text(TRUTH) == TRUTH["report_findings"] + "\n" + TRUTH["report_impression"]
    only_report = ct_report.reference_text({"report": TRUTH["report"]})
    assert only_report.startswith("Acute left subdural") and "TECHNIQUE" not in only_report and "IMPRESSION" not in only_report


def test_score_by_finding_group(no_bertscore):
    # the reference has sdh (+ its parent label intracranial_haemorrhage) and sinus disease; the candidate misses
    # the sinus: intracranial tp=2 -> F1 1; extracranial fn=1 -> F1 0; skull vacuous -> 1; all 2*2/(2*2+1) = 0.8
    answer = {"findings": "Acute left subdural haematoma. The paranasal sinuses are clear.", "impression": "Left subdural haematoma."}
    s = TASK.score(answer, TRUTH)
    assert s["findings_f1_intracranial"] == 1.0
    assert s["findings_f1_extracranial"] == 0.0
    assert s["findings_f1_skull"] == 1.0
    assert s["findings_f1"] == pytest.approx(0.8)
    assert 0.3 < s["rougeL"] < 1.0
    assert set(s) == {m.name for m in TASK.accuracy_metrics}


def test_identical_report_scores_one(no_bertscore):
    answer = {"findings": TRUTH["report_findings"], "impression": TRUTH["report_impression"]}
    s = TASK.score(answer, TRUTH)
    assert s["rougeL"] == pytest.approx(1.0)
    assert all(s[f"findings_f1{g}"] == 1.0 for g in ("", "_intracranial", "_skull", "_extracranial"))


def test_compare_uses_the_original_as_reference(no_bertscore):
    original = {"findings": "Acute left subdural haematoma. Left periorbital soft-tissue swelling.", "impression": "Left subdural haematoma."}
    defaced = {"findings": "Acute left subdural haematoma. The orbits are unremarkable.", "impression": "Left subdural haematoma."}
    c = TASK.compare(original, defaced)
    assert set(c) == {m.name for m in TASK.fidelity_metrics}
    assert c["findings_f1_intracranial"] == 1.0 and c["findings_f1_extracranial"] == 0.0
    assert TASK.compare(original, original)["rougeL"] == pytest.approx(1.0)


def test_agreement_per_label_and_group():
    sdh = {"findings": "Acute left subdural haematoma. Left maxillary sinus air-fluid level.", "impression": "Subdural haematoma."}
    sdh_clear = {"findings": "Acute left subdural haematoma. The paranasal sinuses are clear.", "impression": "Subdural haematoma."}
    normal = {"findings": "No intracranial haemorrhage. The paranasal sinuses are clear.", "impression": "No acute abnormality."}
    out = TASK.agreement([(sdh, sdh_clear), (normal, normal)])
    assert out["n_pairs"] == 2
    assert out["identical_calls"] == {"intracranial": 1.0, "skull": 1.0, "extracranial": 0.5}
    assert out["labels"]["subdural_haemorrhage"]["agreement"] == 1.0 and out["labels"]["subdural_haemorrhage"]["kappa"] == pytest.approx(1.0)
    assert out["labels"]["sinus_disease"] == {"group": "extracranial", "agreement": 0.5, "original_positive": 1, "defaced_positive": 0,
                                              "kappa": pytest.approx(0.0)}
    json.dumps(out)


def test_identity_records_bertscore_model_and_prompts():
    ident = TASK.identity()
    assert ident["bertscore"]["model"] == DEFAULT_BERTSCORE_MODEL_ID
    assert len(ident["prompts"]) == 16 and len(ident["render"]) == 2


@pytest.mark.slow
def test_bertscore_is_scored():
    """The real metric (loads the offline MiniLM once): a paraphrase scores above an unrelated report."""
    ref = {"findings": "Acute left subdural haematoma. No midline shift.", "impression": "Left subdural haematoma."}
    close = {"findings": "There is an acute subdural haematoma on the left. Midline structures are central.", "impression": "Acute left SDH."}
    far = {"findings": "The paranasal sinuses are clear. The orbits are normal.", "impression": "Normal study."}
    s_close, s_far = TASK.compare(ref, close)["bertscore"], TASK.compare(ref, far)["bertscore"]
    assert 0 < s_far < s_close < 1


# --- detectors on drawn slices --------------------------------------------------------------------------------------

def _drawn_slice(blob_at: tuple[float, float], blob_r: float, size: int = 200, mm: float = 1.0):
    """An axial slice as displayed (patient right on the image left): scalp, skull ring, brain, one 70 HU blob."""
    y, x = np.mgrid[:size, :size].astype(float)
    c = size / 2
    r = np.hypot((x - c) / 0.8, y - c)
    hu = np.full((size, size), -1000.0)
    hu[r < 90] = 40.0   # scalp
    hu[r < 84] = 1200.0  # skull
    hu[r < 78] = 33.0   # brain
    by, bx = blob_at
    hu[(np.hypot(x - bx, y - by) < blob_r) & (r < 78)] = 70.0
    return to_uint8(hu, ct_detect.BRAIN_WINDOW), to_uint8(hu, ct_detect.BONE_WINDOW), mm


def test_detector_finds_extra_axial_blood_on_the_patients_side():
    # a lens against the inner table on the image's right = the patient's left
    brain, bone, mm = _drawn_slice((100, 100 + 0.8 * 78), 14)
    facts = ct_detect.analyse_tile(brain, bone, mm, 0, 0.7)
    assert facts.brain
    assert [(b.kind, b.side) for b in facts.blobs] == [("extra", "left")]


def test_detector_finds_deep_blood_and_nothing_in_a_normal_slice():
    brain, bone, mm = _drawn_slice((100, 75), 10)  # deep, image left = patient right
    facts = ct_detect.analyse_tile(brain, bone, mm, 0, 0.7)
    assert [(b.kind, b.side) for b in facts.blobs] == [("iph", "right")]
    brain, bone, mm = _drawn_slice((100, 75), 0)
    assert ct_detect.analyse_tile(brain, bone, mm, 0, 0.7).blobs == []


# --- inputs and the scripted baseline on real phantoms ------------------------------------------------------------

def test_single_input_shows_brain_and_bone_montages(cohort):
    case = cohort.cases[0]
    inp = TASK.build_input(case, {"ct": case.load("ct")}, "single")
    assert inp.toolbox is None and len(inp.render_keys) == 2
    images = [p for m in inp.messages for p in m.images]
    assert len(images) == 2 and images[0].sha256 != images[1].sha256
    text = inp.messages[-1].text
    assert "4 rows x 4 columns" in text and "mm per pixel" in text and '"findings"' in text
    assert inp.messages[0].role == "system"


def test_agent_input_has_tools_and_a_report_submit(cohort):
    case = cohort.cases[0]
    inp = TASK.build_input(case, {"ct": case.load("ct")}, "agent")
    assert {"volume_info", "view_slice", "view_montage", "measure", "submit"} <= set(inp.toolbox.tools)
    submit = inp.toolbox.tools["submit"]
    assert submit.submits and set(submit.parameters["required"]) == {"findings", "impression"}
    assert not [p for m in inp.messages for p in m.images]


def _baseline_answer(case, volume, mode: str):
    inp = TASK.build_input(case, {"ct": volume}, mode)
    model = create_model("scripted:ct-report")
    if inp.toolbox is None:
        result = asyncio.run(run_single_turn(model, inp.messages))
    else:
        result = asyncio.run(run_agent(model, inp.messages, inp.toolbox))
    assert result.ok, result.failure_detail
    parsed = TASK.parse(result.answer)
    assert parsed.ok, parsed.error
    return parsed.value


@pytest.mark.parametrize("mode", ["single", "agent"])
def test_scripted_baseline_reads_the_haematoma(cohort, mode, no_bertscore):
    case = cohort.cases[1]  # right intraparenchymal haematoma
    answer = _baseline_answer(case, case.load("ct"), mode)
    assert "right" in answer["impression"].lower() and "intraparenchymal" in answer["impression"].lower()
    scores = TASK.score(answer, case.truth)
    assert scores["findings_f1_intracranial"] == 1.0
    normal = cohort.cases[0]
    assert TASK.score(_baseline_answer(normal, normal.load("ct"), mode), normal.truth)["findings_f1"] == 1.0


def test_scripted_baseline_on_a_refaced_volume(cohort, no_bertscore, tmp_path):
    import defacers

    case = cohort.cases[1]
    original = case.load("ct")
    refaced = defacers.deface_cached(defacers.get("reface"), original, tmp_path).volume
    assert refaced.content_hash != original.content_hash
    a, b = _baseline_answer(case, original, "single"), _baseline_answer(case, refaced, "single")
    pair = TASK.compare(a, b)
    assert pair["findings_f1_intracranial"] == 1.0  # the brain is untouched by refacing
    assert set(pair) == {m.name for m in TASK.fidelity_metrics}


@pytest.mark.slow
def test_tiny_vlm_garbage_is_parsed_or_recorded(cohort, tiny_vlm):
    case = cohort.cases[0]
    inp = TASK.build_input(case, {"ct": case.load("ct")}, "single")
    model = create_model(f"hf:{tiny_vlm}")
    result = asyncio.run(run_single_turn(model, inp.messages))
    if result.ok:
        parsed = TASK.parse(result.answer)
        assert parsed.ok or (parsed.method == "unparsable" and parsed.error)
    else:
        assert result.failure


def test_summary_shows_every_metric_and_the_extracranial_loss(no_bertscore):
    """Through the aggregation the run summary uses: defaced reports that lose the sinus finding show up in the
    extracranial rows (accuracy and fidelity), not in the intracranial ones."""
    from rich.console import Console

    from harness.results.aggregate import aggregate
    from harness.core.sample import Sample
    from harness.results.tables import summary_tables
    from harness.store.summary import Summary

    with_sinus = {"findings": TRUTH["report_findings"], "impression": TRUTH["report_impression"]}
    without = {"findings": "Acute left subdural haematoma.\nThe paranasal sinuses are not included on these images.",
               "impression": TRUTH["report_impression"]}
    samples = []
    for i in range(4):
        for condition, answer in (("original", with_sinus), ("reface", without)):
            samples.append(Sample(f"{condition}-{i}", "ct-report", f"case-{i}", condition, "scripted:ct-report", mode="single",
                                  answer=answer, scores=TASK.score(answer, TRUTH)))
    summary = Summary("run", "now", "0", tasks=aggregate(samples, {"ct-report": TASK}))
    row = summary.tasks[0].rows[0]
    assert row.accuracy["findings_f1_intracranial"].delta.value == 0.0
    assert row.accuracy["findings_f1_extracranial"].delta.value == -1.0
    assert row.fidelity["findings_f1_extracranial"].value == 0.0 and row.fidelity["findings_f1_intracranial"].value == 1.0
    console = Console(width=200, record=True)
    for table in summary_tables(summary):
        console.print(table)
    text = console.export_text()
    assert "findings_f1_extracranial" in text and "0.000 (-1.000)" in text and "fidelity: bertscore" in text


def test_baseline_revision_keys_its_cached_replies(tmp_path):
    """The baseline's code hash is its revision, so a warm response cache never replays an older baseline."""
    from harness.models import Message, ResponseCache, Sampling
    from harness.models.response_cache import request_key

    import hashlib

    from harness.core.prompts import PROMPTS_DIR

    code = hashlib.sha256(b"".join(Path(m.__file__).read_bytes() for m in (ct_report, ct_detect)))
    code.update((PROMPTS_DIR / "ct-report" / "baseline_report.j2").read_bytes())
    model = create_model("scripted:ct-report", ResponseCache(tmp_path / "r.sqlite"))
    assert model.spec.revision == "code-" + code.hexdigest()[:12] and model.spec.revision.startswith("code-")
    messages = [Message.user("x")]
    older = type(model.spec)(**{**model.spec.__dict__, "revision": "code-older"})
    assert request_key(model.spec, messages, [], Sampling()) != request_key(older, messages, [], Sampling())
