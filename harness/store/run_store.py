"""The run store: one folder per evaluation run, written so that a killed run loses and duplicates nothing.

    RUN/manifest.json   how the run was made (harness.store.manifest), rewritten atomically
    RUN/samples.jsonl   one JSON line per sample outcome, append-only
    RUN/summary.json    aggregates (harness.results.summary), written atomically at the end
    RUN/qc/             QC files (defacing overlays, ...); original renders never leave this folder
    RUN/.lock           flock'ed by the one process writing the run; holds its PID

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

import errno
import fcntl
import gc
import json
import os
import re
import threading
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from harness.core.files import atomic_write_text
from harness.core.errors import HarnessWarning, PathError
from harness.core.redact import redact, redact_text
from harness.core.sample import DONE_STATUSES, Sample, SampleFormatError, find_image_bytes, utc_now

MANIFEST = "manifest.json"
SAMPLES = "samples.jsonl"
SUMMARY = "summary.json"
QC_DIR = "qc"
LOCK = ".lock"


class RunStoreError(PathError):
    """A run directory cannot be read or written; names the path and what to do."""


class RunLockedError(RunStoreError):
    """Another process is writing the same run directory."""

    def __init__(self, path, pid: int | None, alive: bool = True):
        self.pid = pid
        if pid and not alive:
            problem = (f"run directory is still locked although process {pid}, which opened it, has exited: a worker "
                       "process it started may still be running; stop it, or choose another run directory")
        else:
            holder = f"process {pid}" if pid else "another process"
            problem = (f"run directory is in use by {holder} (another `harness eval` on the same --out/--resume?); "
                       "wait for it to finish or stop it, or choose another run directory")
        super().__init__(path, problem)


def _os_problem(exc: OSError, doing: str) -> str:
    if exc.errno == errno.ENOSPC:
        return f"disk full while {doing}; free space and resume the run (completed samples are kept)"
    if exc.errno == errno.EDQUOT:
        return f"disk quota exceeded while {doing}; free space and resume the run (completed samples are kept)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied while {doing}; choose a run directory you can write to"
    if exc.errno == errno.EROFS:
        return f"read-only file system while {doing}; choose a run directory you can write to"
    return f"{exc.strerror or exc} while {doing}"


@dataclass
class ScanResult:
    """What reading samples.jsonl found: the latest record per id (file order of first appearance)."""

    status: dict[str, str]  # sample id -> latest status
    final_line: dict[str, int]  # sample id -> 1-based number of the line holding its final record
    attempts: dict[str, int]
    lines: int
    bad_lines: list[int]  # 1-based numbers of complete lines that are not valid samples
    torn_tail: int  # bytes after the last newline (a crash mid-append), 0 when the file ends cleanly
    valid_size: int  # bytes up to and including the last newline


def scan_samples(path: Path) -> ScanResult:
    """Read samples.jsonl without changing it. A torn last line is reported, never parsed; bad lines are listed."""
    status: dict[str, str] = {}
    final_line: dict[str, int] = {}
    attempts: dict[str, int] = {}
    bad: list[int] = []
    number = valid_size = torn = 0
    try:
        with open(path, "rb") as fh:
            for raw in fh:  # streamed: a 100k-sample file is never held in memory at once
                if not raw.endswith(b"\n"):
                    torn = len(raw)  # only the last line can lack its newline
                    break
                number += 1
                valid_size += len(raw)
                if not raw.strip():
                    continue
                try:
                    record = json.loads(raw)
                except ValueError:
                    bad.append(number)
                    continue
                sid = record.get("sample_id") if isinstance(record, dict) else None
                if not isinstance(sid, str) or record.get("status") not in ("ok", "unparsable", "failed"):
                    bad.append(number)
                    continue
                attempts[sid] = attempts.get(sid, 0) + 1
                if status.get(sid) in DONE_STATUSES:
                    continue  # a finished sample is final; a later line for it can only come from a hand-edited file
                status[sid] = record["status"]
                final_line[sid] = number
    except FileNotFoundError:
        return ScanResult({}, {}, {}, 0, [], 0, 0)
    except OSError as exc:
        raise RunStoreError(path, _os_problem(exc, "reading samples")) from exc
    return ScanResult(status, final_line, attempts, number, bad, torn, valid_size)


def iter_samples(run_dir) -> Iterator[Sample]:
    """The final record of each sample id (latest line wins), streamed in file order, read-only and without the
    lock. Two passes over the file: one to find each id's final line, one to parse only those lines."""
    path = Path(run_dir) / SAMPLES
    wanted = set(scan_samples(path).final_line.values())
    if not wanted:
        return
    try:
        with open(path, "rb") as fh:
            for number, raw in enumerate(fh, 1):
                if number not in wanted:
                    continue
                try:
                    yield Sample.from_dict(json.loads(raw))
                except (SampleFormatError, TypeError, ValueError) as exc:
                    warnings.warn(f"{path}: line {number} ignored: {exc}", HarnessWarning, stacklevel=2)
    except OSError as exc:
        raise RunStoreError(path, _os_problem(exc, "reading samples")) from exc


def read_samples(run_dir) -> list[Sample]:
    """One Sample per id (latest line wins, order of first appearance), read-only and without the lock, in one
    pass. Holding every transcript costs ~10 kB per sample; use `iter_samples` when streaming is enough."""
    path = Path(run_dir) / SAMPLES
    found: dict[str, Sample] = {}
    enabled = gc.isenabled()
    gc.disable()  # building ~100 containers per sample triggers repeated full collections: twice as slow with gc on
    try:
        for number, record in _complete_lines(path):
            try:
                sample = Sample.from_dict(record)
            except (SampleFormatError, TypeError) as exc:
                warnings.warn(f"{path}: line {number} ignored: {exc}", HarnessWarning, stacklevel=2)
                continue
            previous = found.get(sample.sample_id)
            if previous is None or not previous.done:
                found[sample.sample_id] = sample
    finally:
        if enabled:
            gc.enable()
    return list(found.values())


def _complete_lines(path: Path) -> Iterator[tuple[int, object]]:
    """(line number, parsed JSON) for each complete, parsable line; the torn tail and bad JSON are skipped."""
    try:
        with open(path, "rb") as fh:
            for number, raw in enumerate(fh, 1):
                if not raw.endswith(b"\n"):
                    return
                if raw.strip():
                    try:
                        yield number, json.loads(raw)
                    except ValueError:
                        continue
    except FileNotFoundError:
        return
    except OSError as exc:
        raise RunStoreError(path, _os_problem(exc, "reading samples")) from exc


def read_json(path: Path) -> dict | None:
    """A JSON object file, None when missing; a clear error when unreadable or not an object."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RunStoreError(path, _os_problem(exc, "reading")) from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise RunStoreError(path, f"not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise RunStoreError(path, "expected a JSON object")
    return data


def lock_holder(run_dir) -> int | None:
    """PID of the live process writing this run, or None. Reads the lock file only; never takes the lock."""
    try:
        text = (Path(run_dir) / LOCK).read_text().strip()
        pid = int(text)
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


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
            raise RunStoreError(directory, _os_problem(exc, "creating the run directory")) from exc
        lock_fd = _take_lock(directory)
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
            scan = _repair_and_scan(directory / SAMPLES)
            append_fd = _open_append(directory / SAMPLES)
        except BaseException:
            _release_lock(lock_fd)
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
        lines = [self._encode(s) for s in samples]
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

    @staticmethod
    def _encode(sample: Sample) -> bytes:
        if not isinstance(sample, Sample):
            raise TypeError(f"append takes a Sample, not {type(sample).__name__}")
        where = find_image_bytes(sample.transcript)
        if where:
            raise ValueError(f"sample {sample.sample_id}: {where} holds image bytes; store the image sha256 and "
                             "render spec key instead")
        record = sample.to_dict()
        if record.get("error"):
            record["error"] = {k: (redact_text(v) if isinstance(v, str) else v) for k, v in record["error"].items()}
        try:
            return (json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False,
                               default=_json_default) + "\n").encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise ValueError(f"sample {sample.sample_id} cannot be stored as JSON: {exc}") from exc

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
                raise RunStoreError(self.samples_path, _os_problem(exc, "appending a sample")) from exc
            raise

    def load_samples(self) -> list[Sample]:
        """One Sample per id, the latest line for each, in file order."""
        with self._mutex:
            return read_samples(self.directory)

    def iter_samples(self) -> Iterator[Sample]:
        """`load_samples` streamed (appends made while iterating may or may not be seen)."""
        return iter_samples(self.directory)

    def update_manifest(self, **fields) -> None:
        """Add or replace manifest fields (redacted) and rewrite manifest.json atomically."""
        with self._mutex:
            self._manifest.update(redact(fields))
            _write_json(self.directory / MANIFEST, self._manifest)

    def write_summary(self, summary) -> Path:
        """Write summary.json atomically. `summary` is a harness.results.summary.Summary or a plain dict."""
        data = summary.to_dict() if hasattr(summary, "to_dict") else summary
        path = self.directory / SUMMARY
        _write_json(path, data)
        return path

    def read_summary(self):
        from harness.results.summary import Summary

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
            _release_lock(self._lock_fd)

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


def _json_default(obj):
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in a sample")


def _write_json(path: Path, data: dict) -> None:
    try:
        atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False, default=_json_default) + "\n")
    except OSError as exc:
        raise RunStoreError(path, _os_problem(exc, f"writing {path.name}")) from exc


def _open_append(path: Path) -> int:
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise RunStoreError(path, _os_problem(exc, "opening samples for writing")) from exc


def _take_lock(directory: Path) -> int:
    path = directory / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise RunStoreError(path, _os_problem(exc, "creating the lock file")) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            pid = int(os.pread(fd, 32, 0).decode().strip() or 0) or None
        except (OSError, ValueError):
            pid = None
        os.close(fd)
        raise RunLockedError(directory, pid, alive=pid is not None and _alive(pid)) from None
    except OSError as exc:
        os.close(fd)
        raise RunStoreError(path, _os_problem(exc, "locking the run directory")) from exc
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as exc:
        _release_lock(fd)
        raise RunStoreError(path, _os_problem(exc, "writing the lock file")) from exc
    return fd


def _release_lock(fd: int) -> None:
    try:
        os.ftruncate(fd, 0)  # an empty lock file says nobody is writing; we still hold the lock here
    except OSError:
        pass
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _repair_and_scan(path: Path) -> ScanResult:
    scan = scan_samples(path)
    if scan.torn_tail:
        warnings.warn(f"{path}: removed an incomplete last line ({scan.torn_tail} bytes) left by an interrupted run; "
                      "that sample will be run again", HarnessWarning, stacklevel=3)
        try:
            with open(path, "r+b") as fh:
                fh.truncate(scan.valid_size)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise RunStoreError(path, _os_problem(exc, "removing an incomplete last line")) from exc
    if scan.bad_lines:
        shown = ", ".join(str(n) for n in scan.bad_lines[:5]) + (" ..." if len(scan.bad_lines) > 5 else "")
        warnings.warn(f"{path}: {len(scan.bad_lines)} line(s) are not valid samples and are ignored (line {shown})",
                      HarnessWarning, stacklevel=3)
    return scan
