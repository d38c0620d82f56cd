"""The run store: one folder per evaluation run, written so that a killed run loses and duplicates nothing.

    RUN/manifest.json   how the run was made (harness.store.manifest), rewritten atomically
    RUN/samples.jsonl   one JSON line per sample outcome, append-only
    RUN/summary.json    aggregates (harness.store.summary), written atomically at the end
    RUN/qc/defacer_qc.jsonl  one line per defaced (task, case, role, condition): status, QC measures, seconds
    RUN/qc/reidentification.jsonl  one line per attacked (task, case, role, condition): face found, rank of the own
                        person, distance (no image, no embedding: face renders never enter a run folder)
    RUN/qc/             other QC files (defacing overlays, ...); original renders never leave this folder
    RUN/rejected_rows.jsonl  cohort rows the run could not use: {task, case_id, reason} (counted in coverage)
    RUN/.lock           flock'ed by the one process writing the run; holds its PID (harness.store.lock)

This module owns every file of a run folder: the runner and the readers (results, leaderboard, `harness runs`)
go through RunStore (writing) or read_run / read_samples / read_qc (reading), never through paths of their own.

samples.jsonl rules (what resume relies on):
- Each append is one complete line (append_many: several) written with one write call, then fsync. If the write
  fails half way (disk full, interrupt) or fsync fails, the file is truncated back to where the line started, so
  earlier lines are never touched. A whole line interrupted during fsync (Ctrl-C) is kept: it is in the file.
- A crash can at worst leave a torn last line (no trailing newline). Opening the run for writing truncates it with
  a warning; readers ignore it.
- A sample id is finished once a line with status "ok" or "unparsable" exists: it is never written again
  (`append` refuses). A "failed" sample may be retried: the retry appends a new line for the same id, and the
  latest line for an id is its final record. `load_samples()` returns exactly one record per id.
"""

from __future__ import annotations

import json
import os
import re
import threading
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from harness.core.errors import HarnessWarning
from harness.core.files import atomic_write_text
from harness.core.redact import redact
from harness.core.sample import DONE_STATUSES, Sample, utc_now
from harness.store.errors import RunLockedError, RunStoreError, os_problem
from harness.store.lock import LOCK, lock_holder, release_lock, take_lock
from harness.store.samples_file import (
    SAMPLES,
    ScanResult,
    encode_sample,
    iter_samples,
    json_default,
    read_samples,
    repair_and_scan,
    scan_samples,
)
from harness.store.summary import Summary

MANIFEST = "manifest.json"
SUMMARY = "summary.json"
QC_DIR = "qc"
QC_LOG = "defacer_qc.jsonl"
REID_LOG = "reidentification.jsonl"
REJECTED = "rejected_rows.jsonl"
__all__ = ["LOCK", "MANIFEST", "QC_DIR", "QC_LOG", "REJECTED", "SAMPLES", "SUMMARY", "RunData", "RunLockedError", "RunStore",
           "RunStoreError", "ScanResult", "expand_run_dirs", "find_run", "iter_samples", "lock_holder", "new_run_dir", "read_json", "read_qc", "read_reidentification",
           "read_rejected", "read_run", "read_samples", "scan_samples"]


def read_json(path: Path) -> dict | None:
    """A JSON object file, None when missing; a clear error when unreadable or not an object."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RunStoreError(path, os_problem(exc, "reading")) from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise RunStoreError(path, f"not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise RunStoreError(path, "expected a JSON object")
    return data


def new_run_dir(out_dir, label: str = "") -> Path:
    """A fresh, not yet existing run folder under `out_dir`: UTC timestamp plus an optional label."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-.")[:60]
    base = Path(out_dir) / (f"{stamp}-{slug}" if slug else stamp)
    candidate, n = base, 2
    while candidate.exists():
        candidate = base.with_name(f"{base.name}-{n}")
        n += 1
    return candidate


def expand_run_dirs(paths) -> list[Path]:
    """Run directories from what a user typed: a run directory as it is, a folder of runs (what `harness eval --out`
    writes) as the run directories inside it, in name order. A path that is neither is an error naming it."""
    found: list[Path] = []
    for p in map(Path, paths):
        if (p / MANIFEST).is_file():
            found.append(p)
        elif p.is_dir() and (inside := sorted(c for c in p.iterdir() if (c / MANIFEST).is_file())):
            found.extend(inside)
        else:
            raise RunStoreError(p, "no such folder" if not p.exists() else
                                f"neither a run directory (no {MANIFEST}) nor a folder of run directories")
    return list(dict.fromkeys(found))


def find_run(out_dir, run_key: str) -> Path | None:
    """The newest run directory under `out_dir` whose manifest carries `run_key` (the same evaluation), if any."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return None
    for candidate in sorted((c for c in out_dir.iterdir() if (c / MANIFEST).is_file()), reverse=True):
        try:
            manifest = read_json(candidate / MANIFEST)
        except RunStoreError:
            continue
        if isinstance(manifest, dict) and manifest.get("run_key") == run_key:
            return candidate
    return None


class RunStore:
    """The writer of one run directory. Thread-safe; use it from the process that owns the run (workers in a
    process pool send their Samples back to it). Use as a context manager so the lock is released."""

    def __init__(self, directory: Path, lock_fd: int, append_fd: int, manifest: dict, scan: ScanResult):
        self.directory = directory
        self.samples_path = directory / SAMPLES
        self._lock_fd = lock_fd
        self._manifest = manifest
        self._latest_status = dict(scan.status)
        self._attempts = dict(scan.attempts)
        self._mutex = threading.Lock()
        self._fd: int | None = append_fd
        self._line_in_file = False
        self._closed = False
        self.resumed = False  # True when open() continued an existing run (its manifest was kept)

    # ---- opening -------------------------------------------------------------------------------------------

    @classmethod
    def open(cls, directory, manifest: dict | None = None) -> "RunStore":
        """Open a run for writing: create it (when `manifest` is given and the folder holds no run yet) or resume
        it (the existing manifest is kept, `manifest` is ignored, the resume time is recorded; `store.resumed` is
        True). Takes the lock (RunLockedError when another process has it) and repairs a torn last line.
        """
        directory = Path(directory)
        if manifest is None and not (directory / MANIFEST).exists():
            if directory.exists():
                raise RunStoreError(directory, f"not a run directory (no {MANIFEST})")
            raise RunStoreError(directory, "no such run directory")
        if not (directory / MANIFEST).exists() and (directory / SAMPLES).exists():
            raise RunStoreError(directory, f"holds {SAMPLES} but no {MANIFEST}; not starting a new run over it")
        try:
            (directory / QC_DIR).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunStoreError(directory, os_problem(exc, "creating the run directory")) from exc
        lock_fd = take_lock(directory)
        try:
            # Decided under the lock: another process may have created or finished this run in the meantime.
            existing = (directory / MANIFEST).exists()
            if existing:
                stored = read_json(directory / MANIFEST) or {}
                resumes = stored.get("resumed_at")
                stored["resumed_at"] = (resumes if isinstance(resumes, list) else []) + [utc_now()]
            elif (directory / SAMPLES).exists():
                raise RunStoreError(directory, f"holds {SAMPLES} but no {MANIFEST}; not starting a new run over it")
            else:
                stored = redact(dict(manifest))
                stored.setdefault("started_at", utc_now())
            stored["status"], stored["ended_at"] = "running", None
            _write_json(directory / MANIFEST, stored)
            scan = repair_and_scan(directory / SAMPLES)
            append_fd = _open_append(directory / SAMPLES)
        except BaseException:
            release_lock(lock_fd)
            raise
        store = cls(directory, lock_fd, append_fd, stored, scan)
        store.resumed = existing
        return store

    # ---- state ---------------------------------------------------------------------------------------------

    @property
    def manifest(self) -> dict:
        return self._manifest

    @property
    def qc_dir(self) -> Path:
        return self.directory / QC_DIR

    def status_of(self, sample_id: str) -> str | None:
        """Latest status of a sample id ("ok" | "unparsable" | "failed"), None when never written."""
        return self._latest_status.get(sample_id)

    def is_done(self, sample_id: str) -> bool:
        return self._latest_status.get(sample_id) in DONE_STATUSES

    @property
    def done_ids(self) -> frozenset[str]:
        return frozenset(s for s, st in self._latest_status.items() if st in DONE_STATUSES)

    @property
    def failed_ids(self) -> frozenset[str]:
        return frozenset(s for s, st in self._latest_status.items() if st == "failed")

    def attempts(self, sample_id: str) -> int:
        return self._attempts.get(sample_id, 0)

    def counts(self) -> dict[str, int]:
        out = {"ok": 0, "unparsable": 0, "failed": 0}
        for status in self._latest_status.values():
            out[status] += 1
        return out

    # ---- writing -------------------------------------------------------------------------------------------

    def append(self, sample: Sample) -> None:
        """Write one sample durably (one line, fsync). Raises ValueError if the id is already finished, the
        transcript holds image bytes or a value is not JSON; RunStoreError (naming the file) on disk full or
        permission problems - then nothing of this sample is in the file and earlier lines are untouched."""
        self.append_many([sample])

    def append_many(self, samples) -> None:
        """Write several samples with one write and one fsync (all or none): for callers that finish many samples
        at once, where one fsync per sample would be the bottleneck."""
        samples = list(samples)
        lines = [encode_sample(s) for s in samples]
        ids = [s.sample_id for s in samples]
        if len(set(ids)) != len(ids):
            raise ValueError("append_many got the same sample id twice")
        if not samples:
            return
        with self._mutex:
            if self._closed or self._fd is None:
                raise RunStoreError(self.directory, "run store is closed")
            for sid in ids:
                if self.is_done(sid):
                    raise ValueError(f"sample {sid} is already finished in {self.samples_path}; "
                                     "finished samples are never written twice")
            before = {sid: (self._latest_status.get(sid), self._attempts.get(sid, 0)) for sid in ids}
            for sample in samples:
                self._latest_status[sample.sample_id] = sample.status
                self._attempts[sample.sample_id] = before[sample.sample_id][1] + 1
            try:
                self._write_line(b"".join(lines))
            except BaseException:
                if not self._line_in_file:
                    for sid, (status, attempts) in before.items():
                        if status is None:
                            self._latest_status.pop(sid, None)
                        else:
                            self._latest_status[sid] = status
                        self._attempts[sid] = attempts
                raise

    def _write_line(self, line: bytes) -> None:
        fd = self._fd
        start = os.lseek(fd, 0, os.SEEK_END)
        written = 0
        self._line_in_file = False
        try:
            view = memoryview(line)
            while written < len(line):
                written += os.write(fd, view[written:])
            self._line_in_file = True
            os.fsync(fd)
        except BaseException as exc:
            try:  # what reached the file: a signal can land after os.write returned, before `written` counted it
                written = max(written, os.fstat(fd).st_size - start)
            except OSError:
                pass
            # A half line must never stay behind. A whole line interrupted during fsync (Ctrl-C, SIGTERM) stays:
            # it is in the page cache and reaches the disk without us. A failed fsync (ENOSPC, EIO) means the
            # line may never reach the disk, so it is removed and the error reported.
            if written and (isinstance(exc, OSError) or not self._line_in_file):
                self._line_in_file = False
                try:
                    os.ftruncate(fd, start)
                except OSError:
                    pass
            if isinstance(exc, OSError):
                raise RunStoreError(self.samples_path, os_problem(exc, "appending a sample")) from exc
            raise

    def load_samples(self) -> list[Sample]:
        """One Sample per id, the latest line for each, in file order."""
        with self._mutex:
            return read_samples(self.directory)

    def iter_samples(self) -> Iterator[Sample]:
        """`load_samples` streamed (appends made while iterating may or may not be seen)."""
        return iter_samples(self.directory)

    # ---- the defacer QC log ----------------------------------------------------------------------------------

    def append_qc(self, record: dict) -> None:
        """One defacer QC line, durably (a crash loses at most the line being written; readers skip a torn one)."""
        path = self.qc_dir / QC_LOG
        data = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
        with self._mutex:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    os.write(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise RunStoreError(path, os_problem(exc, "appending a QC line")) from exc

    def qc_keys(self) -> set[tuple]:
        """(task, case_id, role, condition) of the QC lines already written (a resumed run does not repeat them)."""
        keys = set()
        for rec in read_qc(self.directory, warn=False):
            try:
                keys.add((rec["task"], rec["case_id"], rec["role"], rec["condition"]))
            except (KeyError, TypeError):
                continue
        return keys

    def write_reidentification(self, records) -> None:
        """The re-identification attack's probe records of the whole run, rewritten whole (a resumed run computes
        them again from the content-keyed cache, so nothing is lost)."""
        path = self.qc_dir / REID_LOG
        text = "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in records)
        with self._mutex:
            try:
                atomic_write_text(path, text)
            except OSError as exc:
                raise RunStoreError(path, os_problem(exc, "writing the re-identification records")) from exc

    def update_manifest(self, **fields) -> None:
        """Add or replace manifest fields (redacted) and rewrite manifest.json atomically."""
        with self._mutex:
            self._manifest.update(redact(fields))
            _write_json(self.directory / MANIFEST, self._manifest)

    def record_rejected(self, rows) -> None:
        """The cohort rows this run cannot use, one {task, case_id, reason} line each; rewritten whole (a resumed run
        reads the same cohort, so it writes the same rows)."""
        text = "".join(json.dumps({"task": str(r["task"]), "case_id": str(r["case_id"]), "reason": str(r["reason"])},
                                  ensure_ascii=False) + "\n" for r in rows)
        path = self.directory / REJECTED
        try:
            atomic_write_text(path, text)
        except OSError as exc:
            raise RunStoreError(path, os_problem(exc, "writing the rejected rows")) from exc

    def write_summary(self, summary) -> Path:
        """Write summary.json atomically. `summary` is a harness.store.summary.Summary or a plain dict."""
        data = summary.to_dict() if hasattr(summary, "to_dict") else summary
        path = self.directory / SUMMARY
        _write_json(path, data)
        return path

    def read_summary(self):
        data = read_json(self.directory / SUMMARY)
        return None if data is None else Summary.from_dict(data, source=self.directory / SUMMARY)

    def finish(self, status: str = "complete") -> None:
        """Record the end time and how the run ended ("complete", "interrupted", "failed")."""
        self.update_manifest(ended_at=utc_now(), status=status)

    # ---- closing -------------------------------------------------------------------------------------------

    def close(self) -> None:
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            release_lock(self._lock_fd)

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is not None and self._manifest.get("status") == "running":
                status = "interrupted" if issubclass(exc_type, KeyboardInterrupt) else "failed"
                try:
                    self.finish(status)
                except RunStoreError:
                    pass  # the original error matters more
        finally:
            self.close()


def _write_json(path: Path, data: dict) -> None:
    try:
        atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False, default=json_default) + "\n")
    except OSError as exc:
        raise RunStoreError(path, os_problem(exc, f"writing {path.name}")) from exc


def _open_append(path: Path) -> int:
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise RunStoreError(path, os_problem(exc, "opening samples for writing")) from exc


# ---- reading a run ---------------------------------------------------------------------------------------------

def _json_records(path: Path, what: str, *, warn: bool) -> list[dict]:
    """The JSON objects of a JSON-lines file of the run (none when it does not exist); a torn last line (a killed
    run) or a malformed line is skipped, with a warning when `warn`."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise RunStoreError(path, os_problem(exc, f"reading {what}")) from exc
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            if warn:
                warnings.warn(f"{path}: line {number} is not JSON; ignored", HarnessWarning, stacklevel=3)
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def read_qc(run_dir, *, warn: bool = True) -> list[dict]:
    """The defacer QC lines of a run; a torn last line (a killed run) or a malformed line is skipped."""
    return _json_records(Path(run_dir) / QC_DIR / QC_LOG, "the QC log", warn=warn)


@dataclass
class RunData:
    directory: Path
    manifest: dict
    samples: list[Sample]
    qc: list[dict]
    rejected: list[dict] = field(default_factory=list)  # cohort rows the run could not use: {task, case_id, reason}
    reidentification: list[dict] = field(default_factory=list)  # the privacy stage's probe records


def read_reidentification(run_dir) -> list[dict]:
    """The re-identification probe records of a run (none when the privacy stage did not run)."""
    return _json_records(Path(run_dir) / QC_DIR / REID_LOG, "the re-identification records", warn=False)


def read_run(run_dir) -> RunData:
    """A finished or stopped run, read-only: manifest, the final record of every sample, the QC lines."""
    run_dir = Path(run_dir)
    manifest = read_json(run_dir / MANIFEST)
    if manifest is None:
        raise RunStoreError(run_dir, f"not a run directory (no {MANIFEST})")
    return RunData(run_dir, manifest, read_samples(run_dir), read_qc(run_dir), read_rejected(run_dir),
                   read_reidentification(run_dir))


def read_rejected(run_dir) -> list[dict]:
    """The cohort rows a run rejected ({task, case_id, reason}); malformed lines are skipped."""
    return [row for row in _json_records(Path(run_dir) / REJECTED, "the rejected rows", warn=False)
            if all(isinstance(row.get(k), str) for k in ("task", "case_id", "reason"))]
