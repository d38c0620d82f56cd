"""The run store: durable appends, resume after kill -9 / SIGTERM / SIGINT, torn lines, lock, disk errors."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
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
    with pytest.raises(RunStoreError, match="no such run directory"):
        RunStore.open(tmp_path / "missing")
    (tmp_path / "other").mkdir()
    with pytest.raises(RunStoreError, match="not a run directory"):
        RunStore.open(tmp_path / "other")
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
