"""`harness runs list` and `harness runs show`, end to end through `python -m harness`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness.store.manifest import build_manifest
from harness.core.sample import Sample
from harness.store.run_store import RunStore
from harness.store.summary import Coverage, Estimate, Summary, SummaryRow, TaskSummary

REPO = Path(__file__).resolve().parent.parent


def harness(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "HOME": str(REPO)})


def _make_runs(out: Path) -> None:
    manifest = build_manifest({"api_key": "sk-secretsecret123"}, tasks=["ct-report"],
                              defacers={"original": {}, "reface": {"version": "0.3"}}, models=["scripted"])
    with RunStore.open(out / "20260101-000000-done", manifest) as store:
        for case in ("c1", "c2"):
            for condition in ("original", "reface"):
                store.append(Sample(f"{case}-{condition}", "ct-report", case, condition, "scripted", scores={"f1": 0.8}))
        store.write_summary(Summary("20260101-000000-done", "2026-01-01T00:01:00Z", "0.1.0", Coverage(4, 4, 0, 0),
                                    tasks=[TaskSummary("ct-report", "f1", "agreement", True, [SummaryRow(
                                        "scripted", "reface", 2, 2, Estimate(0.812, 0.7, 0.9, 2), Estimate(0.765, 0.6, 0.85, 2),
                                        {"agreement": Estimate(0.95, 0.9, 1.0, 2)}, Coverage(2, 2, 0, 0), Coverage(2, 2, 0, 0))])]))
        store.finish()
    with RunStore.open(out / "20260102-000000-killed", manifest) as store:
        store.append(Sample("a", "ct-report", "c1", "original", "scripted"))
        store.append(Sample("b", "ct-report", "c1", "reface", "scripted", status="failed",
                            error={"kind": "defacer_refused", "message": "registration failed (MI -0.31)"}))
        store.append(Sample("c", "ct-report", "c2", "reface", "scripted", status="unparsable"))
    (out / "not-a-run").mkdir()


def test_runs_list_shows_each_run_with_its_state_and_counts(tmp_path):
    _make_runs(tmp_path)
    result = harness("runs", "list", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    done = next(line for line in lines if "20260101-000000-done" in line)
    killed = next(line for line in lines if "20260102-000000-killed" in line)
    assert "complete" in done and "ct-report" in done and "original, reface" in done and "4 ok" in done
    assert "stopped" in killed and "1 ok, 1 unparsable, 1 failed" in killed
    assert "not-a-run" not in result.stdout and "sk-secret" not in result.stdout
    assert harness("runs", "list", str(tmp_path)).stdout == result.stdout  # the folder as an argument
    one = harness("runs", "list", str(tmp_path / "20260101-000000-done"))  # one run directory
    assert one.returncode == 0 and "20260101-000000-done" in one.stdout and "killed" not in one.stdout


def test_runs_show_prints_the_summary_table(tmp_path):
    _make_runs(tmp_path)
    result = harness("runs", "show", "20260101-000000-done", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "state          complete" in result.stdout and "4 ok (4 sample ids)" in result.stdout
    assert "0.812 [0.700, 0.900]" in result.stdout and "0.950 [0.900, 1.000]" in result.stdout
    assert "resume with" not in result.stdout


def test_runs_show_of_an_unfinished_run_gives_counts_failures_and_the_resume_command(tmp_path):
    _make_runs(tmp_path)
    run = tmp_path / "20260102-000000-killed"
    result = harness("runs", "show", str(run))
    assert result.returncode == 0, result.stderr
    assert "no summary.json yet" in result.stdout
    assert "defacer_refused: 1 (e.g. ct-report/c1/reface: registration failed (MI -0.31))" in result.stdout
    assert f"resume with: harness eval --resume {run}" in result.stdout


def test_runs_show_and_list_with_a_wrong_path_are_one_line_errors(tmp_path):
    result = harness("runs", "show", "nope", "--out", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.startswith("error: nope: no run directory here or under") and "Traceback" not in result.stderr
    result = harness("runs", "list", "--out", str(tmp_path / "missing"))
    assert result.returncode == 1 and "no such folder" in result.stderr
