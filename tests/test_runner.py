"""The runner behind `harness eval`: grid, caches, resume after kill -9, no duplicate lines, lock, failures that
are recorded while the run goes on, and the summary schema. Uses a small real task (tests/runner_fixtures.py) on
real phantom heads and real defacers, so every stage runs for real."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

import defacers.cache
import harness.engine.executors
import harness.imaging.io
from harness.results.compare import compare_runs
from harness.data.sample_cohort import write_sample_cohort
from defacers import parse_defacer_spec as parse_defacer_arg
from harness.core.errors import HarnessError
from harness.engine.runner import EvalConfig, EvalError, EvalOutcome, FailFast, Runner
from harness.results.run_summary import summarize_run
from harness.store.run_store import read_qc
from harness.store.run_store import RunLockedError, read_json
from harness.store.summary import Summary
from tests import runner_fixtures

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """Three nph-evans phantoms at 2.6 mm (coarse, so defacing takes about a second)."""
    return write_sample_cohort("nph-evans", n=3, seed=7, out=tmp_path_factory.mktemp("cohort"), resolution_scale=2.0)


@pytest.fixture
def task():
    with runner_fixtures.install():
        yield


def run(cohort, out, cache, **kw) -> EvalOutcome:
    cfg = EvalConfig(tasks=["nph-evans"], defacers=kw.pop("defacers", ["reface"]), cohort=str(cohort), out=out,
                     cache_dir=cache, workers=kw.pop("workers", 0), quiet=True, privacy=kw.pop("privacy", False), **kw)
    return Runner(cfg, argv=["harness", "eval", "--test"]).run(summarize=summarize_run)


def lines(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]


def test_full_run_then_resume_and_rerun_cost_nothing(task, cohort, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = run(cohort, tmp_path / "runs", cache, workers=1)  # defacing in a real worker process
    assert first.counts == {"ok": 6, "unparsable": 0, "failed": 0} or Counter(first.counts)["ok"] == 6
    assert first.model_calls == 6 and first.defacer_runs == 3
    recs = lines(first.run_dir)
    assert len(recs) == 6 and len({r["sample_id"] for r in recs}) == 6
    assert Counter(r["condition"] for r in recs) == {"original": 3, "reface": 3}
    assert all(r["scores"]["abs_error"] is not None for r in recs)
    # the defaced answers differ from the originals: the face in the rendered image changed
    by_case = {(r["case_id"], r["condition"]): r["answer"]["evans_ratio"] for r in recs}
    assert any(by_case[(c, "original")] != by_case[(c, "reface")] for c, _ in by_case)
    qc = read_qc(first.run_dir)
    assert len(qc) == 3 and {q["status"] for q in qc} == {"ok"}
    assert all(q["qc"]["brain_voxels_changed"] == 0 and q["qc"]["face_fraction_changed"] > 0.5 for q in qc)
    manifest = read_json(first.run_dir / "manifest.json")
    assert manifest["status"] == "complete" and manifest["cohort"]["nph-evans"]["size"] == 3
    summary = Summary.from_dict(read_json(first.run_dir / "summary.json"))
    [task_summary] = summary.tasks
    [row] = task_summary.rows
    assert (row.defacer, row.n_pairs) == ("reface", 3)
    assert row.fidelity["abs_diff"].n == 3 and row.fidelity["abs_diff"].value > 0

    resumed = run(cohort, tmp_path / "runs", cache, resume=first.run_dir)
    assert (resumed.skipped_done, resumed.model_calls, resumed.defacer_runs) == (6, 0, 0)
    assert len(lines(first.run_dir)) == 6

    again = run(cohort, tmp_path / "runs", cache)  # the same command again: continues the same run
    assert (again.run_dir, again.skipped_done, again.model_calls, again.defacer_runs) == (first.run_dir, 6, 0, 0)
    assert len(lines(first.run_dir)) == 6 and len(list((tmp_path / "runs").iterdir())) == 1
    other = run(cohort, tmp_path / "runs", cache, defacers=["deface"])  # another evaluation: a run of its own
    assert other.run_dir != first.run_dir and other.skipped_done == 0
    forced = run(cohort, tmp_path / "runs", cache, new_run=True)
    assert forced.run_dir not in (first.run_dir, other.run_dir) and forced.skipped_done == 0 and forced.model_calls == 0

    # a new run directory on the same caches reads no voxels and starts no worker: volume hashes are remembered by
    # file identity, defacings found by them, images come from the render cache
    reads = []
    real_volume, real_nifti = harness.imaging.io.load_volume, defacers.cache.load_nifti
    monkeypatch.setattr(harness.imaging.io, "load_volume", lambda *a, **k: reads.append(a) or real_volume(*a, **k))
    monkeypatch.setattr(defacers.cache, "load_nifti", lambda *a, **k: reads.append(a) or real_nifti(*a, **k))
    monkeypatch.setattr(harness.engine.executors, "worker_pool", None)  # calling it would fail the run
    fresh_dir = run(cohort, tmp_path / "other-runs", cache, workers=1)
    assert (fresh_dir.model_calls, fresh_dir.defacer_runs, fresh_dir.counts["ok"], reads) == (0, 0, 6, [])
    assert fresh_dir.wall_seconds < first.wall_seconds
    assert [q["qc"] for q in read_qc(fresh_dir.run_dir)] == [q["qc"] for q in qc]

    def shown(run_dir):  # what each sample showed: volume hashes, render specs, image hashes; and its answer
        images = lambda t: re.findall(r'"image_sha256": "([0-9a-f]{64})"', json.dumps(t))  # noqa: E731
        return {(r["case_id"], r["condition"]): (r["cache_keys"], images(r["transcript"]), r["answer"]) for r in lines(run_dir)}

    assert shown(fresh_dir.run_dir) == shown(first.run_dir) and all(v[1] for v in shown(first.run_dir).values())

    rows = compare_runs(first.run_dir, fresh_dir.run_dir)  # same model, same answers: paired differences are 0
    assert {(r.condition, r.metric) for r in rows} == {(c, m) for c in ("original", "reface") for m in ("abs_error", "close")}
    assert all(r.n == 3 and r.diff == 0 for r in rows)
    cli = subprocess.run([sys.executable, "-m", "harness", "compare", first.run_dir, fresh_dir.run_dir], capture_output=True,
                         text=True, cwd=ROOT, env={**os.environ, "COLUMNS": "200"})
    assert cli.returncode == 0 and "abs_error" in cli.stdout and "reface" in cli.stdout


def test_defacer_parameters_make_separate_samples_and_a_resume_must_ask_for_the_same(task, cohort, tmp_path):
    cache = tmp_path / "cache"
    both = ["quickshear(buffer_mm=5)", "quickshear(buffer_mm=20)"]
    first = run(cohort, tmp_path / "runs", cache, defacers=both)
    assert (first.counts["ok"], first.defacer_runs, first.model_calls) == (9, 6, 9)
    recs = lines(first.run_dir)
    assert Counter(r["condition"] for r in recs) == {"original": 3, **{d: 3 for d in both}}
    params = {r["condition"]: r["defacer"]["params"] for r in recs if r["condition"] != "original"}
    assert params == {"quickshear(buffer_mm=5)": {"buffer_mm": 5.0}, "quickshear(buffer_mm=20)": {"buffer_mm": 20.0}}
    # resuming with only one of them (or another model) would mark the run complete with the rest never run
    with pytest.raises(EvalError, match=r"evaluated defacers original, quickshear\(buffer_mm=20\), quickshear\(buffer_mm=5\); "
                                        r"this command asks for original, quickshear\(buffer_mm=20\)"):
        run(cohort, tmp_path / "runs", cache, defacers=both[1:], resume=first.run_dir)
    with pytest.raises(EvalError, match="evaluated models scripted:runner-test-brightness; this command asks for scripted:other"):
        run(cohort, tmp_path / "runs", cache, defacers=both, models=["scripted:other"], resume=first.run_dir)
    again = run(cohort, tmp_path / "runs", cache, defacers=both[::-1], resume=first.run_dir)  # order does not matter
    assert (again.skipped_done, again.model_calls, again.defacer_runs) == (9, 0, 0)


def test_timeout_and_retries_from_the_command_line_bound_each_request(task, cohort, tmp_path):
    from tests.fixtures.fake_openai import FakeOpenAI

    with FakeOpenAI(default=("sleep", 2.0, ("ok", '{"evans_ratio": 0.3}'))) as fake:
        started = time.monotonic()
        outcome = run(cohort, tmp_path / "runs", tmp_path / "cache", defacers=[], limit=1, base_url=fake.base_url,
                      models=["openai-compatible:slow"], timeout_s=0.3, max_retries=1)
        seconds = time.monotonic() - started
    [rec] = lines(outcome.run_dir)
    assert rec["status"] == "failed" and rec["error"]["kind"] == "timeout", rec["error"]
    assert len(fake.requests) == 2 and seconds < 10  # one try and one retry, each given 0.3 s (not 300 s x 6)
    manifest = read_json(outcome.run_dir / "manifest.json")
    assert (manifest["config"]["timeout_s"], manifest["config"]["max_retries"]) == (0.3, 1)


def test_rejected_rows_are_reported_kept_and_counted_in_coverage(task, cohort, tmp_path, capsys):
    folder = Path(cohort).parent  # the fixture is the manifest file
    rows = [json.loads(line) for line in Path(cohort).read_text().splitlines()]
    good = [r for r in rows if r.get("task") == "nph-evans"][:2]  # the phantoms also have seg-fidelity rows
    for row in good:
        row["volumes"] = {role: str(folder / path) for role, path in row["volumes"].items()}
        row.pop("masks", None)
    bad = [{"id": "bad-missing-file", "volumes": {"t1": str(tmp_path / "nowhere.nii.gz")}, "truth": {"evans_ratio": 0.3}},
           {"id": "bad-no-volume", "truth": {"evans_ratio": 0.3}},
           {"volumes": {"t1": good[0]["volumes"]["t1"]}, "truth": {"evans_ratio": 0.3}},  # no id
           {**good[1], "truth": {"evans_ratio": 0.9}}]  # a second row under a used id
    manifest = tmp_path / "mixed.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in good + bad))
    outcome = run(manifest, tmp_path / "runs", tmp_path / "cache")
    assert outcome.counts["ok"] == 4 and len(outcome.rejected) == 4
    printed = capsys.readouterr().err
    assert "4 cohort rows rejected (nph-evans: 4), not evaluated but counted in coverage" in printed
    assert "bad-missing-file: " in printed and str(outcome.run_dir / "rejected_rows.jsonl") in printed
    assert outcome.counts["failed"] == 0
    kept = [json.loads(line) for line in (outcome.run_dir / "rejected_rows.jsonl").read_text().splitlines()]
    assert {r["case_id"] for r in kept} == {"bad-missing-file", "bad-no-volume", "row 5", good[1]["id"]}
    assert all(r["task"] == "nph-evans" and r["reason"] for r in kept)
    [row] = Summary.from_dict(read_json(outcome.run_dir / "summary.json")).tasks[0].rows
    assert (row.coverage_original.planned, row.coverage_original.ok) == (5, 2)  # 2 of the 5 case ids, not 2 of 2
    shown = subprocess.run([sys.executable, "-m", "harness", "runs", "show", str(outcome.run_dir)], capture_output=True,
                           text=True, cwd=ROOT)
    assert shown.returncode == 0 and "4 cohort rows rejected" in shown.stdout and "bad-no-volume: " in shown.stdout


STAND_IN_VLLM = """#!{python}
# A stand-in for `vllm serve MODEL --host H --port P`: an OpenAI-compatible server that answers every chat request.
import json, os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

args = sys.argv[1:]
assert args[0] == "serve", args
host, port = args[args.index("--host") + 1], int(args[args.index("--port") + 1])
open(os.environ["STAND_IN_PIDS"], "a").write(f"{{os.getpid()}} {{args[1]}}\\n")

class Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def _send(self, doc):
        body = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._send({{"status": "ok"}})

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        message = {{"role": "assistant", "content": json.dumps({{"evans_ratio": 0.31}})}}
        self._send({{"id": "x", "object": "chat.completion", "model": args[1],
                    "choices": [{{"index": 0, "message": message, "finish_reason": "stop"}}],
                    "usage": {{"prompt_tokens": 1, "completion_tokens": 1}}}})

ThreadingHTTPServer((host, port), Handler).serve_forever()
"""


def test_serve_starts_the_model_server_for_the_run_and_stops_it(cohort, tmp_path):
    """`harness eval --serve` with a `vllm` executable on PATH (a stand-in: this machine has no GPU)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    vllm = bin_dir / "vllm"
    vllm.write_text(STAND_IN_VLLM.format(python=sys.executable))
    vllm.chmod(0o755)
    pids = tmp_path / "pids.txt"
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "STAND_IN_PIDS": str(pids)}
    out = tmp_path / "runs"
    proc = _child(["--task", "nph-evans", "--defacer", "reface", "--cohort", cohort, "--out", out, "--cache-dir",
                   tmp_path / "cache", "--limit", "1", "--workers", "0", "--quiet", "--model", "vllm:stand-in/model",
                   "--serve"], env)
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 0, stderr[-3000:]
    [(pid, model)] = [line.split() for line in pids.read_text().splitlines()]
    assert model == "stand-in/model" and not Path(f"/proc/{pid}").exists()  # started once, stopped after the run
    [run_dir] = out.iterdir()
    recs = lines(run_dir)
    assert len(recs) == 2 and {r["status"] for r in recs} == {"ok"} and {r["answer"]["evans_ratio"] for r in recs} == {0.31}
    assert {r["model"] for r in recs} == {"vllm:stand-in/model"}


def _child(args, env_extra=None) -> subprocess.Popen:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", "tests.runner_child", *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_lines(run_root: Path, n: int, proc: subprocess.Popen, timeout=120) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for samples in run_root.glob("*/samples.jsonl"):
            if len(samples.read_text().splitlines()) >= n:
                return samples.parent
        if proc.poll() is not None:
            raise AssertionError(f"child ended early: {proc.communicate()}")
        time.sleep(0.2)
    raise AssertionError("no samples written in time")


def test_kill_9_mid_run_loses_nothing_and_resume_completes(task, cohort, tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "runs"
    proc = _child(["--task", "nph-evans", "--defacer", "reface", "--cohort", cohort, "--out", out, "--cache-dir", cache,
                   "--workers", "0", "--concurrency", "1", "--quiet"], {runner_fixtures.SLOW_ENV: "1.5"})
    run_dir = _wait_for_lines(out, 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    before = lines(run_dir)
    assert 2 <= len(before) < 6 and len({r["sample_id"] for r in before}) == len(before)
    assert read_json(run_dir / "manifest.json")["status"] == "running"  # killed: never finished
    resumed = run(cohort, out, cache, resume=run_dir)
    after = lines(run_dir)
    assert resumed.skipped_done == len(before)
    assert len(after) == 6 and len({r["sample_id"] for r in after}) == 6
    assert after[: len(before)] == before  # nothing rewritten
    assert read_json(run_dir / "manifest.json")["status"] == "complete"


def test_second_process_on_the_same_run_is_refused(task, cohort, tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "runs"
    proc = _child(["--task", "nph-evans", "--defacer", "reface", "--cohort", cohort, "--out", out, "--cache-dir", cache,
                   "--workers", "0", "--concurrency", "1", "--quiet"], {runner_fixtures.SLOW_ENV: "3"})
    try:
        run_dir = _wait_for_lines(out, 1, proc)
        with pytest.raises(RunLockedError, match=f"pid {proc.pid}|{proc.pid}"):
            run(cohort, out, cache, resume=run_dir)
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_a_refusing_defacer_is_recorded_and_the_exit_code_says_so(task, cohort, tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "runs"
    proc = _child(["--task", "nph-evans", "--defacer", "external:cmd(command=false {input} {output})", "--cohort", cohort,
                   "--out", out, "--cache-dir", cache, "--workers", "0", "--quiet"])
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 3, stderr
    [run_dir] = list(out.iterdir())
    recs = lines(run_dir)
    status = Counter((r["condition"], r["status"]) for r in recs)
    assert status == {("original", "ok"): 3, ("external:cmd(command=false {input} {output})", "failed"): 3}
    assert {r["error"]["kind"] for r in recs if r["status"] == "failed"} == {"defacer_refused"}
    assert {q["status"] for q in read_qc(run_dir)} == {"refused"}
    assert "3 failed" in stdout and "harness runs show" in stdout


def test_an_unreadable_case_fails_alone_and_fail_fast_stops(task, cohort, tmp_path):
    broken = tmp_path / "cohort"
    broken.mkdir()
    rows = [json.loads(line) for line in Path(cohort).read_text().splitlines()]
    for row in rows:  # manifest paths are relative to the manifest: point them back at the original files
        for group in ("volumes", "masks"):
            row[group] = {k: str((Path(cohort).parent / v).resolve()) for k, v in row.get(group, {}).items()}
    second = [r for r in rows if r.get("task") == "nph-evans"][1]  # the phantoms also have seg-fidelity rows
    bad = Path(second["volumes"]["t1"])
    (tmp_path / "bad.nii.gz").write_bytes(bad.read_bytes()[:2000])  # truncated
    second["volumes"]["t1"] = str(tmp_path / "bad.nii.gz")
    (broken / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    outcome = run(broken / "manifest.jsonl", tmp_path / "runs", tmp_path / "cache")
    recs = lines(outcome.run_dir)
    failed = [r for r in recs if r["status"] == "failed"]
    assert len(recs) == 6 and len(failed) == 2 and {r["case_id"] for r in failed} == {second["id"]}
    assert {r["error"]["kind"] for r in failed} == {"bad_input"} and all("bad.nii.gz" in r["error"]["message"] for r in failed)
    with pytest.raises(FailFast):
        run(broken / "manifest.jsonl", tmp_path / "runs2", tmp_path / "cache", fail_fast=True)


def test_defacer_arguments_and_bad_modes():
    assert parse_defacer_arg("reface") == ("reface", {})
    assert parse_defacer_arg("quickshear(buffer_mm=5)") == ("quickshear", {"buffer_mm": 5})
    assert parse_defacer_arg("external:cmd(command=tool {input} {output}, timeout_s=30.5)") == (
        "external:cmd", {"command": "tool {input} {output}", "timeout_s": 30.5})
    with pytest.raises(HarnessError, match="cannot read defacer parameter"):
        parse_defacer_arg("quickshear(5)")


def test_unknown_mode_is_a_clear_error(task, cohort, tmp_path):
    with pytest.raises(EvalError, match="has no 'agent' mode; its modes: single"):
        Runner(EvalConfig(tasks=["nph-evans"], defacers=["reface"], cohort=str(cohort), mode="agent", out=tmp_path))


def test_the_privacy_stage_attacks_every_volume_and_the_summary_shows_it(task, cohort, tmp_path, capsys):
    pytest.importorskip("dlib", reason="the attack needs the [privacy] extra, which [test] includes")
    cache = tmp_path / "cache"
    first = run(cohort, tmp_path / "runs", cache, defacers=["deface"], privacy=True, limit=1)
    assert "privacy 2/2" in capsys.readouterr().err.splitlines()[-1]  # the stage counts on the progress display
    records = [json.loads(line) for line in (first.run_dir / "qc" / "reidentification.jsonl").read_text().splitlines()]
    # a case x {original (the positive control), deface}: one record each, no image and no embedding
    assert Counter(r["condition"] for r in records) == {"original": 1, "deface": 1}
    assert all(set(r) >= {"case_id", "role", "detected", "rank", "distance", "no_face", "attack"} for r in records)
    assert not any(isinstance(v, (list, dict)) for r in records for v in r.values())
    assert not list(first.run_dir.rglob("*.png")), "face renders never enter a run folder"
    summary = Summary.from_dict(read_json(first.run_dir / "summary.json"))
    [row] = summary.tasks[0].rows
    reid = row.privacy.reidentification
    from rich.console import Console

    from harness.results.tables import summary_tables

    console = Console(width=250, record=True)
    for table in summary_tables(summary):
        console.print(table)
    assert "re-identified (rank-1)" in console.export_text()  # what `harness eval` prints at the end
    assert reid["n"] + reid["no_face"] == 1 and reid["detected"] is not None and "dlib" in reid["attack"]
    assert first.stage_seconds["privacy"] > 0
    # a second run reads the attack back from the cache: no model is loaded
    from harness.privacy import volume_faces

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(volume_faces, "face_models", lambda: pytest.fail("the attack ran again"))
        again = run(cohort, tmp_path / "runs2", cache, defacers=["deface"], privacy=True, limit=1)
    assert (again.run_dir / "qc" / "reidentification.jsonl").read_text() == (first.run_dir / "qc" / "reidentification.jsonl").read_text()


def test_tumour_contrasts_are_defaced_once_and_found_again_with_their_t1_reference(tmp_path, monkeypatch):
    """The QC of T1c/T2/FLAIR uses the case's T1 brain mask, and that reference is part of the defacer cache key:
    every stage that needs a defaced contrast must look it up with the same reference, or it defaces it again."""
    import defacers.base

    cohort = write_sample_cohort("tumor-slice", n=1, seed=3, out=tmp_path / "cohort", resolution_scale=2.6)
    cfg = dict(tasks=["tumor-slice"], defacers=["deface"], cohort=str(cohort), cache_dir=tmp_path / "cache", workers=0,
               quiet=True, privacy=False)
    calls = []
    real = defacers.base.Defacer.deface
    monkeypatch.setattr(defacers.base.Defacer, "deface", lambda self, *a, **k: calls.append(self.name) or real(self, *a, **k))
    first = Runner(EvalConfig(out=tmp_path / "runs", **cfg), argv=["harness", "eval", "--test"]).run(summarize=summarize_run)
    assert first.defacer_runs == 4 and len(calls) == 4 and first.counts["ok"] == 2  # 4 contrasts, each defaced once
    assert {q["role"]: q["brain_mask_role"] for q in read_qc(first.run_dir)} == {r: "t1" for r in ("t1", "t1c", "t2", "flair")}

    def no_defacing(self, *a, **k):
        raise AssertionError(f"{self.name} defaced again")

    monkeypatch.setattr(defacers.base.Defacer, "deface", no_defacing)
    again = Runner(EvalConfig(out=tmp_path / "other-runs", **cfg), argv=["harness", "eval", "--test"]).run(summarize=summarize_run)
    assert again.defacer_runs == 0 and again.counts["ok"] == 2
