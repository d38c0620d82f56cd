"""The run store: durable appends, resume after kill -9 / SIGTERM / SIGINT, torn lines, lock, disk errors."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest

from harness.core.errors import HarnessWarning
from harness.engine.grid import Condition, plan_grid, resume_plan
from harness.core.sample import Sample
from harness.store.run_store import RunLockedError, RunStore, RunStoreError, lock_holder, new_run_dir, read_samples
from harness.store.summary import Coverage, Summary

REPO = Path(__file__).resolve().parent.parent


def sample(i: int, status: str = "ok", **kw) -> Sample:
    return Sample(sample_id=f"s{i:05d}", task="t", case_id=f"c{i}", condition="original", model="m", status=status,
                  answer={"value": i} if status == "ok" else None, scores={"acc": 1.0}, **kw)


def lines_of(run: Path) -> list[dict]:
    raw = (run / "samples.jsonl").read_bytes()
    assert raw == b"" or raw.endswith(b"\n")
    return [json.loads(line) for line in raw.splitlines()]


@pytest.fixture
def run(tmp_path) -> Path:
    return tmp_path / "run"


def test_appends_survive_reopen_and_each_line_is_complete(run):
    with RunStore.open(run, {"config": {}}) as store:
        assert not store.resumed
        for i in range(5):
            store.append(sample(i))
        store.append(sample(5, "unparsable"))
        store.append(sample(6, "failed", error={"kind": "timeout", "message": "no reply in 60 s"}))
    assert [r["sample_id"] for r in lines_of(run)] == [f"s{i:05d}" for i in range(7)]
    assert (run / "manifest.json").is_file() and (run / "qc").is_dir()
    with RunStore.open(run) as store:
        assert store.done_ids == {f"s{i:05d}" for i in range(6)}
        assert store.failed_ids == {"s00006"}
        assert store.counts() == {"ok": 5, "unparsable": 1, "failed": 1}
        assert store.resumed and store.manifest["resumed_at"]  # the resume is recorded


def test_finished_sample_is_never_written_twice_and_a_retried_failure_has_one_final_record(run):
    with RunStore.open(run, {}) as store:
        store.append(sample(1))
        with pytest.raises(ValueError, match="already finished"):
            store.append(sample(1))
        store.append(sample(2, "failed", error={"kind": "timeout", "message": "x"}))
        store.append(sample(2, "failed", error={"kind": "timeout", "message": "y"}))
        store.append(sample(2, "ok"))
        with pytest.raises(ValueError, match="already finished"):
            store.append(sample(2, "failed"))
        assert store.attempts("s00002") == 3
        records = {s.sample_id: s for s in store.load_samples()}
    assert len(records) == 2 and records["s00002"].status == "ok"
    assert len(lines_of(run)) == 4  # the failures stay in the log; the latest line is the final record
    assert [s.sample_id for s in read_samples(run)] == ["s00001", "s00002"]


def test_torn_last_line_is_truncated_with_a_warning_and_nothing_else_is_lost(run):
    with RunStore.open(run, {}) as store:
        for i in range(3):
            store.append(sample(i))
    whole = (run / "samples.jsonl").read_bytes()
    with open(run / "samples.jsonl", "ab") as fh:
        fh.write(json.dumps(sample(3).to_dict()).encode()[:57])  # a crash in the middle of a write
    assert [s.sample_id for s in read_samples(run)] == ["s00000", "s00001", "s00002"]  # readers ignore it
    with pytest.warns(HarnessWarning, match="incomplete last line"):
        store = RunStore.open(run)
    with store:
        assert (run / "samples.jsonl").read_bytes() == whole
        assert not store.is_done("s00003")
        store.append(sample(3))
    assert [r["sample_id"] for r in lines_of(run)] == ["s00000", "s00001", "s00002", "s00003"]


def test_a_corrupt_line_in_the_middle_is_reported_and_skipped(run):
    with RunStore.open(run, {}) as store:
        store.append(sample(0))
    with open(run / "samples.jsonl", "ab") as fh:
        fh.write(b'{"not": "a sample"}\n')
        fh.write(b"garbage\n")
    with open(run / "samples.jsonl", "ab") as fh:
        fh.write((json.dumps(sample(1).to_dict()) + "\n").encode())
    with pytest.warns(HarnessWarning, match=r"2 line\(s\) are not valid samples.*line 2, 3"):
        store = RunStore.open(run)
    with store:
        assert store.done_ids == {"s00000", "s00001"}
    with pytest.warns(HarnessWarning, match="line 2 ignored"):
        assert [s.sample_id for s in read_samples(run)] == ["s00000", "s00001"]  # the garbage hides nothing


def test_unknown_fields_from_newer_versions_are_kept(run):
    record = sample(0).to_dict() | {"new_field": {"x": 1}}
    run.mkdir()
    (run / "manifest.json").write_text("{}")
    (run / "samples.jsonl").write_text(json.dumps(record) + "\n")
    (loaded,) = read_samples(run)
    assert loaded.extra == {"new_field": {"x": 1}}
    assert loaded.to_dict() == record


def test_transcript_with_image_bytes_is_refused(run):
    with RunStore.open(run, {}) as store:
        with pytest.raises(ValueError, match=r"transcript\[0\].content\[1\].image_url.url holds image bytes"):
            store.append(sample(0, transcript=[{"role": "user", "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]))
        store.append(sample(1, transcript=[{"role": "user", "content": [{"type": "image", "sha256": "ab" * 32,
                                                                         "render_spec": "cd" * 32}]}]))
    assert len(lines_of(run)) == 1


def test_api_keys_in_error_messages_are_redacted(run, monkeypatch):
    monkeypatch.setenv("MY_SERVER_TOKEN", "tok-1234567890-secret")
    with RunStore.open(run, {}) as store:
        store.append(sample(0, "failed", error={"kind": "auth", "message":
                     "401: bad key sk-proj-abcdefghijklmnop12345, token tok-1234567890-secret"}))
    text = (run / "samples.jsonl").read_text()
    assert "sk-proj-abcdefghijklmnop12345" not in text and "tok-1234567890-secret" not in text
    assert "<redacted>" in text


def test_non_finite_scores_are_stored_as_null(run):
    with RunStore.open(run, {}) as store:
        store.append(Sample("x", "t", "c", "original", "m", scores={"kappa": float("nan"), "acc": 1},
                            timings={"model": float("inf")}))
    (record,) = lines_of(run)
    assert record["scores"] == {"kappa": None, "acc": 1} and record["timings"] == {"model": None}


def test_opening_something_that_is_not_a_run_is_a_clear_error(tmp_path):
    with pytest.raises(RunStoreError, match="no such run directory") as info:
        RunStore.open(tmp_path / "missing")
    assert str(info.value).startswith(f"{tmp_path / 'missing'}: ")
    (tmp_path / "other").mkdir()
    with pytest.raises(RunStoreError, match="not a run directory") as info:
        RunStore.open(tmp_path / "other")
    assert str(info.value).startswith(f"{tmp_path / 'other'}: ")
    (tmp_path / "other" / "samples.jsonl").write_text("")
    with pytest.raises(RunStoreError, match="no manifest.json"):
        RunStore.open(tmp_path / "other", {})
    assert sorted(p.name for p in (tmp_path / "other").iterdir()) == ["samples.jsonl"]  # nothing added


def test_manifest_updates_and_summary_are_atomic_json(run):
    with RunStore.open(run, {"config": {"api_key": "sk-0123456789abcdef"}}) as store:
        store.write_summary(Summary("r", "now", "0.1.0", Coverage(1, 1, 0, 0)))
        store.finish()
        assert store.read_summary().counts.ok == 1
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["ended_at"]
    assert manifest["config"]["api_key"] == "<redacted>"
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


# ---- lock ---------------------------------------------------------------------------------------------------

HOLDER = """
import sys, time
from harness.store.run_store import RunStore
store = RunStore.open(sys.argv[1], {})
print("ready", flush=True)
sys.stdin.read()
store.close()
"""


def test_a_second_process_on_the_same_run_gets_a_clear_error_naming_the_holder(run):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        with pytest.raises(RunLockedError) as info:
            RunStore.open(run)
        assert info.value.pid == proc.pid
        assert str(run) in str(info.value) and f"process {proc.pid}" in str(info.value)
        assert lock_holder(run) == proc.pid
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    assert lock_holder(run) is None
    with RunStore.open(run) as store:  # free again once the holder is gone
        store.append(sample(0))


def test_the_same_process_cannot_open_a_run_twice(run):
    with RunStore.open(run, {}):
        with pytest.raises(RunLockedError, match=f"process {os.getpid()}"):
            RunStore.open(run)
    RunStore.open(run).close()


# ---- kill -9, SIGTERM, SIGINT -------------------------------------------------------------------------------

WRITER = """
import os, sys, time
from harness.engine.grid import Condition, plan_grid, resume_plan
from harness.engine.interrupts import exit_code, graceful_termination
from harness.core.sample import Sample
from harness.store.run_store import RunStore

run, n, delay = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
grid = plan_grid({"t": [f"case{i}" for i in range(n)]}, [Condition("original")], ["m"])
padding = "x" * 4000  # long lines make a kill during a write more likely
try:
    with graceful_termination(), RunStore.open(run, {"config": {}}) as store:
        plan = resume_plan(grid.items, store)
        print(f"todo {len(plan.todo)}", flush=True)
        for item in plan.todo:
            time.sleep(delay)
            store.append(Sample(item.sample_id, item.task, item.case_id, item.condition, item.model,
                                item.mode, answer={"text": padding}, scores={"acc": 1.0}))
        store.finish()
except KeyboardInterrupt as exc:
    sys.exit(exit_code(exc))
"""


def _start_writer(run: Path, n: int, delay: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(run), str(n), str(delay)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_lines(run: Path, at_least: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    path = run / "samples.jsonl"
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= at_least:
            return
        if proc.poll() is not None:
            raise AssertionError(f"writer ended early: {proc.communicate()}")
        time.sleep(0.01)
    raise AssertionError("writer too slow")


def _check_duplicate_free(run: Path) -> list[str]:
    ids = [r["sample_id"] for r in lines_of(run)]
    assert len(ids) == len(set(ids)), "a sample id was written twice"
    return ids


@pytest.mark.slow
def test_kill_9_mid_run_loses_at_most_the_in_flight_sample_and_resume_completes_the_rest(run):
    n = 1000
    proc = _start_writer(run, n, 0.0)
    _wait_for_lines(run, 50, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    raw = (run / "samples.jsonl").read_bytes()
    complete = raw.count(b"\n")
    assert 50 <= complete < n, "the writer was not killed mid-run"
    _check_duplicate_free(run)  # every complete line parses

    resumed = _start_writer(run, n, 0.0)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert out.strip() == f"todo {n - complete}"
    ids = _check_duplicate_free(run)
    assert len(ids) == n
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "complete" and len(manifest["resumed_at"]) == 1


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_sigint_stop_gracefully(run, sig, code):
    n = 1000
    proc = _start_writer(run, n, 0.002)
    _wait_for_lines(run, 20, proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    raw = (run / "samples.jsonl").read_bytes()
    assert raw.endswith(b"\n")  # stopped between samples, no torn line
    written = len(_check_duplicate_free(run))
    assert 20 <= written < n
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["ended_at"]
    assert lock_holder(run) is None
    with RunStore.open(run) as store:  # the lock was released
        assert len(store.done_ids) == written


# ---- disk full, permission denied ---------------------------------------------------------------------------

def test_disk_full_mid_line_leaves_earlier_lines_intact_and_names_the_file(run, monkeypatch):
    import harness.store.run_store as store_module

    with RunStore.open(run, {}) as store:
        store.append(sample(0))
        before = (run / "samples.jsonl").read_bytes()
        real_write = os.write

        def half_then_full(fd, data):
            if len(data) > 10:
                real_write(fd, bytes(data[: len(data) // 2]))  # the disk fills up part way through the line
                return len(data) // 2
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(store_module.os, "write", half_then_full)
        with pytest.raises(RunStoreError, match="disk full") as info:
            store.append(sample(1))
        assert str(run / "samples.jsonl") in str(info.value)
        assert (run / "samples.jsonl").read_bytes() == before
        assert not store.is_done("s00001")
        monkeypatch.setattr(store_module.os, "write", real_write)
        store.append(sample(1))  # space freed: the run goes on
    assert [r["sample_id"] for r in lines_of(run)] == ["s00000", "s00001"]


def test_disk_full_while_writing_the_summary_keeps_the_previous_one(run, monkeypatch):
    import harness.core.files as cache_module

    with RunStore.open(run, {}) as store:
        store.write_summary(Summary("r", "first", "0.1.0"))
        before = (run / "summary.json").read_bytes()

        def no_space(fd):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(cache_module.os, "fsync", no_space)
        with pytest.raises(RunStoreError, match=r"summary.json: disk full"):
            store.write_summary(Summary("r", "second", "0.1.0"))
    assert (run / "summary.json").read_bytes() == before
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_permission_denied_is_a_clear_error(tmp_path, monkeypatch):
    import harness.store.run_store as store_module

    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            with pytest.raises(RunStoreError, match="permission denied"):
                RunStore.open(locked / "run", {})
        finally:
            locked.chmod(0o700)
    # As root (or additionally), simulate a run directory whose samples file may not be written.
    run = tmp_path / "run"
    real_open = os.open

    def deny_samples(path, flags, mode=0o777, **kw):
        if str(path).endswith("samples.jsonl") and flags & os.O_WRONLY:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, mode, **kw)

    monkeypatch.setattr(store_module.os, "open", deny_samples)
    with pytest.raises(RunStoreError, match="permission denied") as info:
        RunStore.open(run, {})
    assert str(run / "samples.jsonl") in str(info.value)
    monkeypatch.setattr(store_module.os, "open", real_open)
    RunStore.open(run).close()  # the failed open released its lock


def test_threads_can_append_concurrently(run):
    with RunStore.open(run, {}) as store:
        def worker(k):
            for j in range(25):
                store.append(sample(k * 100 + j))

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(set(_check_duplicate_free(run))) == 200


def test_resume_plan_skips_finished_and_retries_failed_only_when_asked(run):
    grid = plan_grid({"t": ["a", "b", "c"]}, [Condition("original"), Condition("quickshear", {"name": "quickshear", "version": "1"})], ["m"])
    a_orig, a_qs, b_orig, b_qs = grid.items[:4]
    with RunStore.open(run, {}) as store:
        for item, status in ((a_orig, "ok"), (a_qs, "unparsable"), (b_orig, "failed")):
            store.append(Sample(item.sample_id, item.task, item.case_id, item.condition, item.model, item.mode, status=status))
        plan = resume_plan(grid.items, store)
        assert (plan.done, plan.skipped_failed, plan.retried, len(plan.todo)) == (2, 1, 0, 3)
        assert b_orig not in plan.todo
        retry = resume_plan(grid.items, store, retry_failed=True)
        assert (retry.done, retry.retried, len(retry.todo)) == (2, 1, 4) and retry.todo[0] == b_orig


def test_new_run_dir_names_are_unique(tmp_path):
    first = new_run_dir(tmp_path, "ct report/x")
    first.mkdir()
    second = new_run_dir(tmp_path, "ct report/x")
    assert first != second and first.name.endswith("ct-report-x") and second.name.endswith("-2")


def test_a_sample_that_is_not_json_is_refused_by_name(run):
    with RunStore.open(run, {}) as store:
        with pytest.raises(ValueError, match="sample bad cannot be stored as JSON"):
            store.append(Sample("bad", "t", "c", "original", "m", answer={"x": float("nan")}))
        with pytest.raises(ValueError, match="sample bad2 cannot be stored as JSON"):
            store.append(Sample("bad2", "t", "c", "original", "m", answer=object()))
        assert store.status_of("bad") is None
    assert lines_of(run) == []


LEFTOVER = """
import os, sys, time
from harness.store.run_store import RunStore
store = RunStore.open(sys.argv[1], {})
child = os.fork()
if child == 0:  # a worker forked by the run keeps the lock's file description open
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 1)
    os.dup2(null, 2)
    time.sleep(30)
    os._exit(0)
print(child, flush=True)
os._exit(0)  # the parent dies without closing anything, like kill -9
"""


def test_a_lock_kept_by_a_leftover_worker_is_explained(run):
    proc = subprocess.run([sys.executable, "-c", LEFTOVER, str(run)], cwd=REPO, capture_output=True, text=True, timeout=60)
    worker = int(proc.stdout.strip())
    try:
        parent = int((run / ".lock").read_text())
        with pytest.raises(RunLockedError, match=f"process {parent}, which opened it, has exited: a worker"):
            RunStore.open(run)
    finally:
        os.kill(worker, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the worker is gone (reaped by init): the run opens again
        try:
            RunStore.open(run).close()
            break
        except RunLockedError:
            time.sleep(0.05)
    else:
        raise AssertionError("lock not released after the worker ended")


def test_append_many_writes_all_or_nothing(run, monkeypatch):
    import harness.store.run_store as store_module

    with RunStore.open(run, {}) as store:
        store.append_many([sample(0), sample(1, "failed", error={"kind": "timeout", "message": "x"})])
        with pytest.raises(ValueError, match="s00000 is already finished"):
            store.append_many([sample(2), sample(0)])
        with pytest.raises(ValueError, match="same sample id twice"):
            store.append_many([sample(3), sample(3)])

        def full(fd):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(store_module.os, "fsync", full)  # the data was written but may never reach the disk
        with pytest.raises(RunStoreError, match="disk full"):
            store.append_many([sample(4), sample(5)])
        assert store.status_of("s00004") is None and store.status_of("s00001") == "failed"
        monkeypatch.undo()
        store.append_many([sample(1), sample(4), sample(5)])
    assert [r["sample_id"] for r in lines_of(run)] == ["s00000", "s00001", "s00001", "s00004", "s00005"]
    assert [s.status for s in read_samples(run)] == ["ok", "ok", "ok", "ok"]


# ---- what a resumed run keeps --------------------------------------------------------------------------------

def manifest_of(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text(encoding="utf-8"))


def test_resuming_keeps_the_manifest_and_records_each_resume(run):
    with RunStore.open(run, {"config": {"task": "ct-report"}, "label": "Läsion"}) as store:
        assert manifest_of(run)["status"] == "running" and manifest_of(run)["ended_at"] is None
        started = store.manifest["started_at"]
        assert started.endswith("Z")
        store.finish()
    assert manifest_of(run)["status"] == "complete"
    for n in (1, 2):
        with RunStore.open(run, {"config": {"task": "other"}}) as store:
            on_disk = manifest_of(run)
            assert on_disk["status"] == "running" and on_disk["ended_at"] is None  # running again, not "complete"
            assert on_disk["config"] == {"task": "ct-report"} and on_disk["label"] == "Läsion"  # kept, not replaced
            assert on_disk["started_at"] == started and len(on_disk["resumed_at"]) == n
            store.finish()
    assert manifest_of(run)["status"] == "complete"


def test_a_given_start_time_is_kept(run):
    with RunStore.open(run, {"started_at": "2024-01-02T03:04:05.000000Z"}):
        pass
    assert manifest_of(run)["started_at"] == "2024-01-02T03:04:05.000000Z"


def test_an_error_inside_the_run_marks_it_failed_and_ctrl_c_interrupted(run):
    with pytest.raises(RuntimeError):
        with RunStore.open(run, {}):
            raise RuntimeError("model server down")
    assert manifest_of(run)["status"] == "failed" and manifest_of(run)["ended_at"]
    with pytest.raises(KeyboardInterrupt):
        with RunStore.open(run):
            raise KeyboardInterrupt
    assert manifest_of(run)["status"] == "interrupted" and manifest_of(run)["ended_at"]
    with pytest.raises(RuntimeError):
        with RunStore.open(run) as store:
            store.finish()
            raise RuntimeError("after the end")  # a run that had finished stays complete
    assert manifest_of(run)["status"] == "complete"
    RunStore.open(run).close()  # each of them released the lock


def test_manifest_is_readable_json_and_holds_paths_and_sets(run):
    with RunStore.open(run, {}) as store:
        store.update_manifest(out=Path("/data/runs/x"), seeds={3, 1, 2}, label="Müller")
        with pytest.raises(ValueError):
            store.update_manifest(threshold=float("nan"))  # never written as the non-JSON token NaN
    text = (run / "manifest.json").read_text(encoding="utf-8")
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"manifest holds {c}"))
    assert data["out"] == "/data/runs/x" and data["seeds"] == [1, 2, 3] and data["label"] == "Müller"
    assert text.count("\n") > len(data)  # one field per line: a person reads and diffs it


def test_summary_can_be_a_plain_dict_and_is_absent_until_written(run):
    with RunStore.open(run, {}) as store:
        assert store.read_summary() is None
        store.write_summary(Summary("r", "now", "0.1.0", Coverage(2, 1, 1, 0)).to_dict())
        assert store.read_summary().counts.unparsable == 1
        (run / "summary.json").write_text('{"run_id": "r", "counts": {"ok": "many"}}')
        with pytest.raises(Exception, match="not a harness summary") as info:
            store.read_summary()
        assert str(info.value).startswith(f"{run / 'summary.json'}: ")  # a broken summary names its file


@pytest.mark.parametrize("text, problem", [("{not json", "not valid JSON"), ("[1, 2]", "expected a JSON object")])
def test_a_broken_manifest_is_named(run, text, problem):
    from harness.store.run_store import read_run

    run.mkdir()
    (run / "manifest.json").write_text(text)
    for action in (lambda: read_run(run), lambda: RunStore.open(run)):
        with pytest.raises(RunStoreError, match=problem) as info:
            action()
        assert str(info.value).startswith(f"{run / 'manifest.json'}: ")


def test_an_unreadable_manifest_is_named(run):
    from harness.store.run_store import read_json

    run.mkdir()
    (run / "manifest.json").mkdir()  # not a file: reading it fails
    with pytest.raises(RunStoreError, match="while reading") as info:
        read_json(run / "manifest.json")
    assert str(info.value).startswith(f"{run / 'manifest.json'}: ")


# ---- closing, status -----------------------------------------------------------------------------------------

def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_closing_releases_every_file_and_a_closed_store_refuses_appends(run):
    before = _open_fds()
    store = RunStore.open(run, {})
    store.append(sample(0))
    store.close()
    assert _open_fds() <= before  # neither the samples file nor the lock stays open
    store.close()  # closing twice is harmless
    assert _open_fds() <= before
    with pytest.raises(RunStoreError, match="run store is closed") as info:
        store.append(sample(1))
    assert str(info.value).startswith(f"{run}: ")
    assert [r["sample_id"] for r in lines_of(run)] == ["s00000"]


def test_status_and_attempts_of_a_sample_survive_reopening(run):
    with RunStore.open(run, {}) as store:
        assert store.attempts("s00001") == 0 and store.status_of("s00001") is None
        store.append(sample(1, "failed", error={"kind": "timeout", "message": "x"}))
        store.append(sample(1, "failed", error={"kind": "timeout", "message": "y"}))
        store.append(sample(2, "unparsable"))
    with RunStore.open(run) as store:
        assert store.attempts("s00001") == 2 and store.status_of("s00001") == "failed"
        assert store.attempts("s00002") == 1 and store.status_of("s00002") == "unparsable"
        assert store.attempts("s00003") == 0
        store.append(sample(1))
        assert store.attempts("s00001") == 3 and store.is_done("s00001")


def test_run_files_are_not_executable(run):
    with RunStore.open(run, {}) as store:
        store.append(sample(0))
    mode = (run / "samples.jsonl").stat().st_mode
    assert mode & 0o111 == 0 and mode & 0o600 == 0o600


# ---- failed writes --------------------------------------------------------------------------------------------

def test_a_failed_retry_keeps_the_earlier_failure_as_the_samples_state(run, monkeypatch):
    import harness.store.run_store as store_module

    with RunStore.open(run, {}) as store:
        store.append(sample(1, "failed", error={"kind": "timeout", "message": "x"}))

        def full(fd, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(store_module.os, "write", full)  # nothing at all reaches the file
        with pytest.raises(RunStoreError, match="disk full while appending a sample"):
            store.append_many([sample(1), sample(2)])
        assert store.status_of("s00001") == "failed" and store.attempts("s00001") == 1
        assert store.status_of("s00002") is None and store.attempts("s00002") == 0
        assert store.failed_ids == {"s00001"} and store.counts() == {"ok": 0, "unparsable": 0, "failed": 1}
    assert [r["status"] for r in lines_of(run)] == ["failed"]


def test_ctrl_c_during_a_write_removes_the_half_line_but_during_fsync_keeps_the_whole_one(run, monkeypatch):
    import harness.store.run_store as store_module

    real_write = os.write
    with RunStore.open(run, {}) as store:
        store.append(sample(0))
        before = (run / "samples.jsonl").read_bytes()

        def half_then_ctrl_c(fd, data):
            real_write(fd, bytes(data[: len(data) // 2]))
            raise KeyboardInterrupt

        monkeypatch.setattr(store_module.os, "write", half_then_ctrl_c)
        with pytest.raises(KeyboardInterrupt):
            store.append(sample(1))
        assert (run / "samples.jsonl").read_bytes() == before and store.status_of("s00001") is None
        monkeypatch.setattr(store_module.os, "write", real_write)

        def ctrl_c(fd):
            raise KeyboardInterrupt

        monkeypatch.setattr(store_module.os, "fsync", ctrl_c)
        with pytest.raises(KeyboardInterrupt):
            store.append(sample(2))
        monkeypatch.undo()
        assert store.status_of("s00002") == "ok"  # the line is in the file: the sample is finished
        with pytest.raises(ValueError, match="already finished"):
            store.append(sample(2))
    assert [r["sample_id"] for r in lines_of(run)] == ["s00000", "s00002"]


def test_a_run_directory_that_cannot_be_created_is_named(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(RunStoreError, match="while creating the run directory") as info:
        RunStore.open(tmp_path / "file" / "run", {})
    assert str(info.value).startswith(f"{tmp_path / 'file' / 'run'}: ")


def test_samples_without_a_manifest_are_never_overwritten_naming_the_folder(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "samples.jsonl").write_text("")
    with pytest.raises(RunStoreError, match="holds samples.jsonl but no manifest.json") as info:
        RunStore.open(tmp_path / "old", {})
    assert str(info.value).startswith(f"{tmp_path / 'old'}: ")


def test_samples_appearing_while_taking_the_lock_are_not_run_over(tmp_path, monkeypatch):
    """Another process may start writing the folder between the first check and the lock: decided again under it."""
    import harness.store.run_store as store_module

    real_take = store_module.take_lock

    def meanwhile(directory):
        (directory / "samples.jsonl").write_text("")
        return real_take(directory)

    monkeypatch.setattr(store_module, "take_lock", meanwhile)
    with pytest.raises(RunStoreError, match="holds samples.jsonl but no manifest.json") as info:
        RunStore.open(tmp_path / "run", {})
    assert str(info.value).startswith(f"{tmp_path / 'run'}: ")
    assert not (tmp_path / "run" / "manifest.json").exists()
    monkeypatch.undo()
    assert lock_holder(tmp_path / "run") is None


def test_the_failed_open_of_the_samples_file_says_what_it_was_doing(run, monkeypatch):
    import harness.store.run_store as store_module

    real_open = os.open

    def deny_samples(path, flags, mode=0o777, **kw):
        if str(path).endswith("samples.jsonl"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, mode, **kw)

    monkeypatch.setattr(store_module.os, "open", deny_samples)
    with pytest.raises(RunStoreError, match="permission denied while opening samples for writing"):
        RunStore.open(run, {})


def test_a_failed_summary_write_says_which_file(run, monkeypatch):
    import harness.core.files as files_module

    with RunStore.open(run, {}) as store:
        monkeypatch.setattr(files_module.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
        with pytest.raises(RunStoreError, match="disk full while writing summary.json"):
            store.write_summary({"run_id": "r"})


# ---- the samples file, read -----------------------------------------------------------------------------------

def test_blank_lines_lists_and_records_without_id_or_status_are_bad_lines_that_hide_nothing(run):
    from harness.store.run_store import iter_samples

    with RunStore.open(run, {}) as store:
        store.append(sample(0))
    with open(run / "samples.jsonl", "ab") as fh:
        fh.write(b"\n")
        fh.write(b"[1, 2]\n")
        fh.write(b'{"status": "ok"}\n')
        fh.write(b'{"sample_id": "s00009", "status": "done"}\n')
        fh.write((json.dumps(sample(1).to_dict()) + "\n").encode())
    with pytest.warns(HarnessWarning, match=r"3 line\(s\) are not valid samples and are ignored \(line 3, 4, 5\)$"):
        store = RunStore.open(run)
    with store:
        assert store.done_ids == {"s00000", "s00001"} and store.status_of("s00009") is None
        assert store.counts() == {"ok": 2, "unparsable": 0, "failed": 0}
    with pytest.warns(HarnessWarning, match="line 4 ignored: missing field 'sample_id'"):
        assert [s.sample_id for s in read_samples(run)] == ["s00000", "s00001"]
    assert [s.sample_id for s in iter_samples(run)] == ["s00000", "s00001"]


def test_a_record_the_readers_cannot_use_is_skipped_with_its_line_number(run):
    from harness.store.run_store import iter_samples

    with RunStore.open(run, {}) as store:
        store.append(sample(0))
    with open(run / "samples.jsonl", "ab") as fh:
        fh.write(b'{"sample_id": "s00008", "status": "ok", "task": 3}\n')
        fh.write((json.dumps(sample(1).to_dict()) + "\n").encode())
    for read in (read_samples, lambda r: list(iter_samples(r))):
        with pytest.warns(HarnessWarning, match="line 2 ignored: field 'task' must be a string") as caught:
            assert [s.sample_id for s in read(run)] == ["s00000", "s00001"]
        assert len(caught) == 1 and caught[0].category is HarnessWarning


def test_many_bad_lines_are_listed_shortly(run):
    with RunStore.open(run, {}):
        pass
    (run / "samples.jsonl").write_text("x\n" * 5)
    with pytest.warns(HarnessWarning, match=r"5 line\(s\) .*\(line 1, 2, 3, 4, 5\)$"):
        RunStore.open(run).close()
    (run / "samples.jsonl").write_text("x\n" * 6)
    with pytest.warns(HarnessWarning, match=r"6 line\(s\) .*\(line 1, 2, 3, 4, 5 \.\.\.\)$"):
        RunStore.open(run).close()


def test_a_line_for_a_finished_sample_does_not_replace_it_and_hides_nothing_after_it(run):
    """A finished sample is final: a later line for its id (a hand-edited or concatenated file) is ignored by the
    writer and by both readers alike, and the samples after it are still read."""
    from harness.store.run_store import iter_samples

    with RunStore.open(run, {}) as store:
        store.append(sample(0))
        store.append(sample(1))
    with open(run / "samples.jsonl", "ab") as fh:
        fh.write((json.dumps(sample(0, "failed", error={"kind": "x", "message": "y"}).to_dict()) + "\n").encode())
        fh.write((json.dumps(sample(2).to_dict()) + "\n").encode())
    with RunStore.open(run) as store:
        assert store.status_of("s00000") == "ok" and store.done_ids == {"s00000", "s00001", "s00002"}
        assert [(s.sample_id, s.status) for s in store.iter_samples()] == [("s00000", "ok"), ("s00001", "ok"),
                                                                           ("s00002", "ok")]
    assert [(s.sample_id, s.status) for s in read_samples(run)] == [("s00000", "ok"), ("s00001", "ok"), ("s00002", "ok")]
    assert list(iter_samples(run)) == read_samples(run)


def test_streamed_samples_are_the_final_records_in_file_order(run):
    with RunStore.open(run, {}) as store:
        assert list(store.iter_samples()) == []  # no samples file yet
        store.append(sample(0, "failed", error={"kind": "timeout", "message": "x"}))
        store.append(sample(1))
        store.append(sample(0))
        store.append(sample(2, "unparsable"))
        streamed = list(store.iter_samples())
        assert sorted(streamed, key=lambda s: s.sample_id) == store.load_samples()
    # in the order of the final lines: s00000's final record is written after s00001's
    assert [(s.sample_id, s.status) for s in streamed] == [("s00001", "ok"), ("s00000", "ok"), ("s00002", "unparsable")]
    with open(run / "samples.jsonl", "ab") as fh:
        fh.write(b'{"sample_id": "s00003", "status": "ok", "ta')  # torn tail
    from harness.store.run_store import iter_samples
    assert list(iter_samples(run)) == streamed


def test_reading_leaves_garbage_collection_on():
    import gc

    assert gc.isenabled()
    read_samples(Path("/nonexistent-run"))
    assert gc.isenabled()


def test_an_unreadable_samples_file_is_named_by_every_reader(run):
    from harness.store.run_store import iter_samples, scan_samples

    run.mkdir()
    (run / "manifest.json").write_text("{}")
    (run / "samples.jsonl").mkdir()  # cannot be read as a file
    path = run / "samples.jsonl"
    for action in (lambda: scan_samples(path), lambda: read_samples(run), lambda: list(iter_samples(run)),
                   lambda: RunStore.open(run)):
        with pytest.raises(RunStoreError, match="while reading samples") as info:
            action()
        assert str(info.value).startswith(f"{path}: ")


def test_scanning_a_missing_samples_file_finds_nothing(tmp_path):
    from harness.store.run_store import scan_samples

    scan = scan_samples(tmp_path / "samples.jsonl")
    assert (scan.status, scan.final_line, scan.attempts, scan.lines, scan.bad_lines, scan.torn_tail,
            scan.valid_size) == ({}, {}, {}, 0, [], 0, 0)


def test_scanning_counts_lines_and_finds_the_final_line_of_each_sample(run):
    from harness.store.run_store import scan_samples

    with RunStore.open(run, {}) as store:
        store.append(sample(0, "failed", error={"kind": "timeout", "message": "x"}))
        store.append(sample(1))
        store.append(sample(0, "unparsable"))
    size = (run / "samples.jsonl").stat().st_size
    with open(run / "samples.jsonl", "ab") as fh:
        fh.write(b'{"sample_id"')
    scan = scan_samples(run / "samples.jsonl")
    assert scan.status == {"s00000": "unparsable", "s00001": "ok"} and scan.final_line == {"s00000": 3, "s00001": 2}
    assert scan.attempts == {"s00000": 2, "s00001": 1} and scan.lines == 3 and scan.bad_lines == []
    assert (scan.torn_tail, scan.valid_size) == (len(b'{"sample_id"'), size)


def test_a_torn_line_that_cannot_be_removed_is_named(run, monkeypatch):
    import harness.store.samples_file as samples_module

    with RunStore.open(run, {}) as store:
        store.append(sample(0))
    with open(run / "samples.jsonl", "ab") as fh:
        fh.write(b'{"sample_id": "s0')
    real_open = open

    def read_only(path, mode="r", *args, **kw):
        if "+" in mode:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, mode, *args, **kw)

    monkeypatch.setattr(samples_module, "open", read_only, raising=False)
    with pytest.warns(HarnessWarning, match="that sample will be run again"):
        with pytest.raises(RunStoreError, match="permission denied while removing an incomplete last line") as info:
            RunStore.open(run)
    assert str(info.value).startswith(f"{run / 'samples.jsonl'}: ")


# ---- encoding a sample ----------------------------------------------------------------------------------------

def test_numpy_values_paths_and_sets_in_a_sample_are_stored_as_plain_json(run):
    np = pytest.importorskip("numpy")
    with RunStore.open(run, {}) as store:
        store.append(Sample("a", "t", "c", "original", "m", answer={
            "evans": np.float32(0.25), "n": np.int64(3), "mask": np.array([1, 0]), "file": Path("/x/y.nii"),
            "labels": {"b", "a"}, "text": "Läsion ≥ 3 mm"}))
        with pytest.raises(ValueError, match="cannot store object in a sample"):
            store.append(Sample("b", "t", "c", "original", "m", answer={"x": object()}))
    (record,) = lines_of(run)
    assert record["answer"] == {"evans": 0.25, "n": 3, "mask": [1, 0], "file": "/x/y.nii", "labels": ["a", "b"],
                                "text": "Läsion ≥ 3 mm"}


def test_appending_something_that_is_not_a_sample_names_its_type(run):
    with RunStore.open(run, {}) as store:
        with pytest.raises(TypeError, match="append takes a Sample, not dict"):
            store.append(sample(0).to_dict())
    assert lines_of(run) == []


def test_non_text_fields_of_an_error_are_kept(run):
    with RunStore.open(run, {}) as store:
        store.append(sample(0, "failed", error={"kind": "http", "message": "401 sk-proj-abcdefghijklmnop12345",
                                                "status": 401, "retry": None}))
    (record,) = lines_of(run)
    assert record["error"]["status"] == 401 and record["error"]["retry"] is None
    assert "<redacted>" in record["error"]["message"]


# ---- the defacer QC log ---------------------------------------------------------------------------------------

def qc_record(case: str, condition: str = "quickshear", **kw) -> dict:
    return {"task": "t", "case_id": case, "role": "image", "condition": condition, "status": "ok", **kw}


def test_qc_lines_are_appended_durably_and_read_back(run):
    from harness.store.run_store import read_qc, read_run

    with RunStore.open(run, {}) as store:
        store.append_qc(qc_record("a", seconds=1.5, file=Path("/x")))
        store.append_qc({"note": "no key fields"})
        store.append_qc(qc_record("b", condition="reface"))
        assert store.qc_keys() == {("t", "a", "image", "quickshear"), ("t", "b", "image", "reface")}
    raw = (run / "qc" / "defacer_qc.jsonl").read_bytes()
    assert raw.endswith(b"\n") and raw.count(b"\n") == 3
    assert raw.splitlines()[0] == json.dumps(qc_record("a", seconds=1.5, file="/x"), sort_keys=True).encode()
    assert (run / "qc" / "defacer_qc.jsonl").stat().st_mode & 0o111 == 0
    records = read_qc(run)
    assert records[0] == qc_record("a", seconds=1.5, file="/x") and records[1] == {"note": "no key fields"}
    data = read_run(run)
    assert data.directory == run and "started_at" in data.manifest
    assert data.qc == records and [s.sample_id for s in data.samples] == []
    with RunStore.open(run) as store:  # a resumed run knows which QC lines it need not repeat
        assert ("t", "a", "image", "quickshear") in store.qc_keys()


def test_a_torn_or_broken_qc_line_is_skipped_with_a_warning_naming_the_line(run):
    from harness.store.run_store import read_qc

    with RunStore.open(run, {}) as store:
        store.append_qc(qc_record("a"))
    with open(run / "qc" / "defacer_qc.jsonl", "a", encoding="utf-8") as fh:
        fh.write("\n[1]\nnot json\n")
        fh.write(json.dumps(qc_record("b")) + "\n")
        fh.write('{"task": "t", "case')  # a killed run
    with pytest.warns(HarnessWarning) as caught:
        records = read_qc(run)
    assert [r["case_id"] for r in records] == ["a", "b"]
    assert [str(w.message) for w in caught] == [f"{run / 'qc' / 'defacer_qc.jsonl'}: line 4 is not JSON; ignored",
                                                f"{run / 'qc' / 'defacer_qc.jsonl'}: line 6 is not JSON; ignored"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_qc(run, warn=False) == records
        with RunStore.open(run) as store:
            assert store.qc_keys() == {("t", "a", "image", "quickshear"), ("t", "b", "image", "quickshear")}


def test_a_run_without_qc_has_none_and_an_unreadable_qc_log_is_named(run, monkeypatch):
    import harness.store.run_store as store_module
    from harness.store.run_store import read_qc, read_run

    with RunStore.open(run, {}) as store:
        store.append(sample(0))
        assert store.qc_keys() == set()
    assert read_qc(run) == [] and read_run(run).samples == read_samples(run)
    (run / "qc" / "defacer_qc.jsonl").mkdir()
    with pytest.raises(RunStoreError, match="while reading the QC log") as info:
        read_qc(run)
    assert str(info.value).startswith(f"{run / 'qc' / 'defacer_qc.jsonl'}: ")
    (run / "qc" / "defacer_qc.jsonl").rmdir()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    with RunStore.open(run) as store:
        monkeypatch.setattr(store_module.os, "fsync", full)
        with pytest.raises(RunStoreError, match="disk full while appending a QC line") as info:
            store.append_qc(qc_record("a"))
        monkeypatch.undo()
    assert str(info.value).startswith(f"{run / 'qc' / 'defacer_qc.jsonl'}: ")


def test_reading_a_folder_that_is_not_a_run_is_a_clear_error(tmp_path):
    from harness.store.run_store import read_run

    with pytest.raises(RunStoreError, match="not a run directory \\(no manifest.json\\)") as info:
        read_run(tmp_path)
    assert str(info.value).startswith(f"{tmp_path}: ")


# ---- run folder names -----------------------------------------------------------------------------------------

@pytest.fixture
def far_from_utc(monkeypatch):
    """A local time zone hours away from UTC, so a name stamped in local time is caught."""
    if not hasattr(time, "tzset"):
        pytest.skip("needs time.tzset")
    monkeypatch.setenv("TZ", "Etc/GMT-9")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_run_folders_are_named_by_utc_time_and_a_cleaned_label(tmp_path, far_from_utc):
    from datetime import datetime, timedelta, timezone

    before = datetime.now(timezone.utc).replace(microsecond=0, tzinfo=None)
    bare, labelled = new_run_dir(tmp_path), new_run_dir(tmp_path, "/Xray CT: v2.X/")
    after = datetime.now(timezone.utc).replace(tzinfo=None)
    assert bare.parent == tmp_path and re.fullmatch(r"\d{8}-\d{6}", bare.name)
    assert before <= datetime.strptime(bare.name, "%Y%m%d-%H%M%S") <= after + timedelta(seconds=1)
    assert re.fullmatch(r"\d{8}-\d{6}-Xray-CT-v2.X", labelled.name)
    assert re.fullmatch(r"\d{8}-\d{6}", new_run_dir(tmp_path, " ./:. ").name)  # nothing left of the label
    long = new_run_dir(tmp_path, "x" * 200).name
    assert long.endswith("-" + "x" * 60)  # a long label is cut: the name stays a legal file name


def test_taken_run_folder_names_are_numbered_on(tmp_path, monkeypatch):
    import harness.store.run_store as store_module
    from datetime import datetime as real_datetime

    class Frozen(real_datetime):
        @classmethod
        def now(cls, tz=None):
            return real_datetime(2024, 5, 6, 7, 8, 9, tzinfo=tz)

    monkeypatch.setattr(store_module, "datetime", Frozen)
    names = []
    for _ in range(4):
        folder = new_run_dir(tmp_path, "lb")
        folder.mkdir()
        names.append(folder.name)
    assert names == ["20240506-070809-lb", "20240506-070809-lb-2", "20240506-070809-lb-3", "20240506-070809-lb-4"]


def test_a_samples_file_that_becomes_unreadable_while_streaming_is_named(run, monkeypatch):
    import harness.store.samples_file as samples_module
    from harness.store.run_store import iter_samples

    with RunStore.open(run, {}) as store:
        store.append(sample(0))
    real_open, calls = open, []

    def second_open_fails(path, *args, **kw):
        calls.append(path)
        if len(calls) == 2:  # the scan read it; then it was removed or its permissions changed
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kw)

    monkeypatch.setattr(samples_module, "open", second_open_fails, raising=False)
    with pytest.raises(RunStoreError, match="permission denied while reading samples") as info:
        list(iter_samples(run))
    assert str(info.value).startswith(f"{run / 'samples.jsonl'}: ")


# --- finding runs: what `harness eval` continues and what `leaderboard build` / `runs list` take -------------------

def _run(directory: Path, **manifest) -> Path:
    with RunStore.open(directory, {"tasks": {"t": {}}, **manifest}) as store:
        store.finish()
    return directory


def test_a_folder_of_runs_expands_to_its_run_directories_in_name_order(tmp_path):
    from harness.store.run_store import expand_run_dirs

    b, a = _run(tmp_path / "runs" / "20260102-b"), _run(tmp_path / "runs" / "20260101-a")
    (tmp_path / "runs" / "notes").mkdir()
    assert expand_run_dirs([tmp_path / "runs"]) == [a, b]
    assert expand_run_dirs([b, tmp_path / "runs"]) == [b, a]  # a run named twice is taken once, where first named
    with pytest.raises(RunStoreError, match=r"notes: neither a run directory \(no manifest.json\) nor a folder of run"):
        expand_run_dirs([tmp_path / "runs" / "notes"])
    with pytest.raises(RunStoreError, match="nowhere: no such folder"):
        expand_run_dirs([tmp_path / "nowhere"])


def test_the_newest_run_with_the_same_key_is_found(tmp_path):
    from harness.store.run_store import find_run

    out = tmp_path / "runs"
    assert find_run(out, "k1") is None  # no folder yet
    old = _run(out / "20260101-000000-t", run_key="k1")
    new = _run(out / "20260102-000000-t", run_key="k1")
    _run(out / "20260103-000000-t", run_key="k2")
    (out / "20260104-broken").mkdir()
    (out / "20260104-broken" / "manifest.json").write_text("{not json")
    assert find_run(out, "k1") == new != old
    assert find_run(out, "k2").name == "20260103-000000-t" and find_run(out, "k3") is None
    assert RunStore.open(new).manifest["run_key"] == "k1"  # the key survives redaction (it is not a secret)


def test_rejected_rows_round_trip_and_bad_lines_are_skipped(tmp_path):
    from harness.store.run_store import REJECTED, read_rejected, read_run

    run_dir = tmp_path / "run"
    two = [{"task": "t", "case_id": "row 3", "reason": "missing id"}, {"task": "t", "case_id": "c9", "reason": "Größe: file not found"}]
    with RunStore.open(run_dir, {"tasks": {}}) as store:
        store.record_rejected([{**two[0], "extra": 1}, two[1]])
        assert read_rejected(run_dir) == two
        assert "Größe" in (run_dir / REJECTED).read_text(encoding="utf-8")  # readable as written, not \u-escaped
        store.record_rejected(two[1:])  # rewritten whole
    assert read_rejected(run_dir) == two[1:]
    with open(run_dir / REJECTED, "a") as fh:
        fh.write('not json\n{"task": "t", "case_id": 5, "reason": "x"}\n{"task": "t", "case_id": "c10", "reason": "y"}\n')
    assert read_run(run_dir).rejected == read_rejected(run_dir) == [two[1], {"task": "t", "case_id": "c10", "reason": "y"}]
    assert read_rejected(tmp_path / "no-run") == []
    (run_dir / REJECTED).unlink()
    (run_dir / REJECTED).mkdir()  # unreadable, unwritable: errors name the file and what was being done
    with pytest.raises(RunStoreError, match=r"rejected_rows\.jsonl.*reading the rejected rows"):
        read_rejected(run_dir)
    with RunStore.open(run_dir) as store, pytest.raises(RunStoreError, match=r"rejected_rows\.jsonl.*writing the rejected rows"):
        store.record_rejected(two)
