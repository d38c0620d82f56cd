"""Samples -> per-task rows, checked against values computed by hand."""

from __future__ import annotations

import pytest

from harness.results.aggregate import AggregateError, aggregate, aggregate_runs
from harness.scoring.stats import benjamini_hochberg
from harness.store.summary import Summary, TaskSummary
from tasks.base import Metric
from tests.leaderboard_fixtures import MeasureTask, qc_line, sample, write_run

TASK = MeasureTask()


def toy_samples():
    t = TASK
    return [
        sample(t, "c1", "original", "m1", 0.30), sample(t, "c2", "original", "m1", 0.32),
        sample(t, "c3", "original", "m1", 0.28), sample(t, "c4", "original", "m1", status="failed"),
        sample(t, "c1", "quickshear", "m1", 0.31), sample(t, "c2", "quickshear", "m1", 0.36),
        sample(t, "c3", "quickshear", "m1", status="unparsable"), sample(t, "c4", "quickshear", "m1", 0.29),
    ]


def toy_qc():
    return [qc_line("toy-measure", "c1", "quickshear", 0.9, 12.0, 0), qc_line("toy-measure", "c2", "quickshear", 0.8, 10.0, 5),
            qc_line("toy-measure", "c3", "quickshear", status="refused"),
            qc_line("toy-measure", "c4", "quickshear", 0.7, 8.0, 1)]


def test_row_matches_hand_computed_values():
    [summary] = aggregate(toy_samples(), {"toy-measure": TASK}, toy_qc())
    assert summary.metric == "abs_error" and summary.higher_is_better is False
    assert [m["name"] for m in summary.accuracy_metrics] == ["abs_error", "correct"]
    [row] = summary.rows
    assert (row.model, row.mode, row.defacer, row.n_cases, row.n_pairs) == ("m1", "single", "quickshear", 4, 2)
    err = row.accuracy["abs_error"]
    # original: |0.30-0.3|, |0.32-0.3|, |0.28-0.3| (c4 failed); defaced: c1, c2, c4 (c3 unparsable)
    assert err.original.value == pytest.approx(0.04 / 3) and err.original.n == 3
    assert err.defaced.value == pytest.approx(0.08 / 3) and err.defaced.n == 3
    # pairs c1 (0 -> 0.01) and c2 (0.02 -> 0.06): delta 0.025, Wilcoxon exact with two positive differences: p 0.5
    assert err.delta.value == pytest.approx(0.025) and err.delta.n == 2
    assert err.delta.ci_low <= 0.025 <= err.delta.ci_high
    assert err.test == "wilcoxon" and err.p_value == pytest.approx(0.5)
    correct = row.accuracy["correct"]
    assert correct.original.value == pytest.approx(2 / 3) and correct.defaced.value == pytest.approx(1 / 3)
    assert correct.test == "mcnemar" and correct.p_value == pytest.approx(1.0)  # one discordant pair
    assert row.score_original == err.original  # primary metric mirrored for the run summary table
    assert row.fidelity["ratio_diff"].value == pytest.approx(0.025)
    assert row.fidelity["same_call"].value == pytest.approx(0.5)  # c1 changes its call, c2 keeps it
    assert row.agreement["ratio"]["bland_altman"]["bias"] == pytest.approx(0.025)
    assert row.coverage_original.to_dict() == {"planned": 4, "ok": 3, "unparsable": 0, "failed": 1}
    assert row.coverage_defaced.to_dict() == {"planned": 4, "ok": 3, "unparsable": 1, "failed": 0}
    p = row.privacy
    assert (p.volumes, p.refused, p.failed) == (3, 1, 0)
    assert p.face_fraction_changed.value == pytest.approx(0.8)
    assert p.face_surface_change_mm.value == pytest.approx(10.0)
    assert (p.brain_voxels_changed_mean, p.brain_voxels_changed_max) == (pytest.approx(2.0), 5)


def test_bh_family_is_one_model_and_mode():
    t = TASK
    samples = []
    for model, shift in (("m1", 0.05), ("m2", 0.0)):
        for i in range(12):
            ratio = 0.25 + i * 0.01
            samples.append(sample(t, f"c{i}", "original", model, ratio))
            samples.append(sample(t, f"c{i}", "quickshear", model, ratio + shift + 0.001 * i))
            samples.append(sample(t, f"c{i}", "reface", model, ratio + (0.002 * (i % 3) - 0.002)))
    [summary] = aggregate(samples, {"toy-measure": t})
    assert [(r.model, r.defacer) for r in summary.rows] == [("m1", "quickshear"), ("m1", "reface"),
                                                           ("m2", "quickshear"), ("m2", "reface")]
    for model in ("m1", "m2"):
        rows = [r for r in summary.rows if r.model == model]
        raw = [r.accuracy[m].p_value for r in rows for m in ("abs_error", "correct")]
        expected = benjamini_hochberg(raw).adjusted
        got = [r.accuracy[m].p_adjusted for r in rows for m in ("abs_error", "correct")]
        assert got == pytest.approx(expected)
    shifted = summary.rows[0].accuracy["abs_error"]  # a shift of 0.05 on 12 cases: significant before adjustment
    assert shifted.p_value < 0.05 < shifted.p_adjusted


def test_rows_survive_summary_round_trip():
    tasks = aggregate(toy_samples(), {"toy-measure": TASK}, toy_qc())
    data = Summary("run", "2026-11-23T00:00:00Z", "0.1.0", tasks=tasks).to_dict()
    back = Summary.from_dict(data)
    assert back.tasks[0].to_dict() == tasks[0].to_dict()
    old = {k: v for k, v in tasks[0].to_dict().items() if k not in ("accuracy_metrics", "version")}
    old["rows"] = [{k: v for k, v in r.items() if k not in ("accuracy", "privacy", "mode")} for r in old["rows"]]
    assert TaskSummary.from_dict(old, "tasks[0]", "old.json").rows[0].privacy is None  # older files still read


def test_conflicting_identities_are_refused():
    t = TASK
    a = sample(t, "c1", "quickshear", "m1", 0.3, defacer_version="1")
    b = sample(t, "c1", "quickshear", "m1", 0.3, defacer_version="2")
    with pytest.raises(AggregateError, match="different defacer or model identities"):
        aggregate([sample(t, "c1", "original", "m1", 0.3), a, b], {"toy-measure": t})


def test_aggregate_runs_merges_a_retry_and_reads_qc(tmp_path):
    t = TASK
    first = write_run(tmp_path / "r1", toy_samples()[:4] + [sample(t, "c1", "quickshear", "m1", status="failed")], toy_qc())
    second = write_run(tmp_path / "r2", toy_samples()[4:])  # the retry of c1 succeeded in a later run
    [summary] = aggregate_runs([first, second], {"toy-measure": t})
    row = summary.rows[0]
    assert row.coverage_defaced.ok == 3 and row.coverage_defaced.failed == 0
    assert row.privacy.volumes == 3


def test_categorical_metric_gets_kappa_and_no_p_value():
    class Graded(MeasureTask):
        accuracy_metrics = (Metric("grade", "severity grade the model gives", True, kind="categorical"),)

        def score(self, answer, truth):
            return {"grade": "high" if answer["ratio"] > 0.3 else "low"}

    t = Graded()
    ratios = {"c1": (0.25, 0.26), "c2": (0.35, 0.36), "c3": (0.28, 0.32), "c4": (0.40, 0.41)}
    samples = [sample(t, c, cond, "m1", r) for c, (o, d) in ratios.items() for cond, r in (("original", o), ("quickshear", d))]
    [summary] = aggregate(samples, {"toy-measure": t})
    res = summary.rows[0].accuracy["grade"]
    # labels original low, high, low, high vs defaced low, high, high, high: po 0.75, pe 0.5*0.25+0.5*0.75 = 0.5
    assert res.test == "kappa" and res.kappa.value == pytest.approx(0.5) and res.p_value is None
    assert res.original.value is None and res.original.n == 4


def test_the_summary_does_not_depend_on_the_order_samples_finished_in():
    """samples.jsonl holds samples in completion order, which concurrency reshuffles from run to run: the same
    samples must give the same confidence intervals."""
    t = TASK
    values = [0.30, 0.41, 0.22, 0.35, 0.28, 0.50, 0.19, 0.33]
    samples = [sample(t, f"c{i}", cond, "m1", v + (0.02 * i if cond != "original" else 0.0))
               for i, v in enumerate(values) for cond in ("original", "quickshear")]
    forward = aggregate(samples, {"toy-measure": TASK})[0].to_dict()
    backward = aggregate(samples[::-1], {"toy-measure": TASK})[0].to_dict()
    assert forward == backward
