"""samples.jsonl, the append-only record of a run's samples: reading it (streamed or whole, latest line per id
wins, a torn last line never parsed), repairing a torn tail, and encoding one sample as one line. The rules that
make resume safe are in harness.store.run_store."""

from __future__ import annotations

import gc
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from harness.core.errors import HarnessWarning
from harness.core.redact import redact_text
from harness.core.sample import DONE_STATUSES, Sample, SampleFormatError, find_image_bytes
from harness.store.errors import RunStoreError, os_problem

SAMPLES = "samples.jsonl"


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
        raise RunStoreError(path, os_problem(exc, "reading samples")) from exc
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
        raise RunStoreError(path, os_problem(exc, "reading samples")) from exc


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
        raise RunStoreError(path, os_problem(exc, "reading samples")) from exc


def encode_sample(sample: Sample) -> bytes:
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
                           default=json_default) + "\n").encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"sample {sample.sample_id} cannot be stored as JSON: {exc}") from exc


def json_default(obj):
    if hasattr(obj, "tolist"):  # numpy arrays and scalars (an array also has .item(), which fails beyond one value)
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in a sample")


def repair_and_scan(path: Path) -> ScanResult:
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
            raise RunStoreError(path, os_problem(exc, "removing an incomplete last line")) from exc
    if scan.bad_lines:
        shown = ", ".join(str(n) for n in scan.bad_lines[:5]) + (" ..." if len(scan.bad_lines) > 5 else "")
        warnings.warn(f"{path}: {len(scan.bad_lines)} line(s) are not valid samples and are ignored (line {shown})",
                      HarnessWarning, stacklevel=3)
    return scan
