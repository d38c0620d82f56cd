"""summary.json schema: round trip, tolerance of newer fields, clear errors on bad files."""

from __future__ import annotations

import json

import pytest

from harness.store.summary import SUMMARY_VERSION, Coverage, Estimate, Summary, SummaryFormatError, SummaryRow, TaskSummary
from harness.results.tables import summary_tables


def _summary() -> Summary:
    row = SummaryRow("openai:gpt", "reface", n_cases=10, n_pairs=9, score_original=Estimate(0.8, 0.7, 0.9, 10),
                     score_defaced=Estimate(0.75, 0.6, 0.85, 9),
                     fidelity={"agreement": Estimate(0.9, 0.8, 0.97, 9), "kappa": Estimate(None, None, None, 0)},
                     coverage_original=Coverage(10, 10, 0, 0), coverage_defaced=Coverage(10, 8, 1, 1),
                     extra={"wilcoxon_p": 0.2})
    return Summary("run-1", "2026-11-23T03:00:00Z", "0.1.0", Coverage(20, 18, 1, 1), {"timeout": 1},
                   {"deface": 1.5, "model": 9.0}, 12.5, [TaskSummary("tumor-dx", "accuracy", "agreement", True, [row])])


def test_round_trip_through_json():
    summary = _summary()
    data = json.loads(json.dumps(summary.to_dict()))
    assert data["version"] == SUMMARY_VERSION
    assert Summary.from_dict(data) == summary
    assert summary.tasks[0].rows[0].coverage_defaced.rate == 0.8 and Coverage().rate is None


def test_unknown_keys_from_newer_minor_versions_are_ignored():
    data = _summary().to_dict()
    data["new_top_level"] = 1
    data["tasks"][0]["rows"][0]["new_cell_field"] = {"x": 1}
    assert Summary.from_dict(data) == _summary()


def test_newer_schema_and_bad_fields_are_refused_with_the_place_named():
    data = _summary().to_dict()
    with pytest.raises(SummaryFormatError, match="schema version 99 is newer"):
        Summary.from_dict(data | {"version": 99}, source="x/summary.json")
    with pytest.raises(SummaryFormatError, match="no schema version"):
        Summary.from_dict({k: v for k, v in data.items() if k != "version"})
    data["tasks"][0]["rows"][0]["score_defaced"]["value"] = "high"
    with pytest.raises(SummaryFormatError, match=r"x/summary.json: tasks\[0\].rows\[0\].score_defaced.value must be a number"):
        Summary.from_dict(data, source="x/summary.json")


def test_tables_show_scores_fidelity_and_coverage():
    from rich.console import Console

    console = Console(width=250, record=True)
    for table in summary_tables(_summary()):
        console.print(table)
    text = console.export_text()
    assert "tumor-dx" in text and "0.800 [0.700, 0.900]" in text and "0.900 [0.800, 0.970]" in text
    assert "8/10, 1 unparsable, 1 failed" in text


def test_coverage_counts_final_statuses():
    from harness.core.sample import Sample

    samples = [Sample(str(i), "t", "c", "original", "m", status=st) for i, st in enumerate(["ok", "ok", "failed", "unparsable"])]
    assert Coverage.of(samples) == Coverage(4, 2, 1, 1)
    assert Coverage.of(samples[:2], planned=5).rate == 0.4
