"""Progress of a run, one bar per stage (deface, render, model, score) with counts, failures and ETA.

On a terminal it draws rich progress bars; in quiet mode (CI logs, or when the output is not a terminal) it
prints one plain line every `interval` seconds and a last one at the end, e.g.

    progress 0:01:23 | deface 3/10 (1 failed) eta 0:00:40 | render 5/10 eta 0:00:50 | model 0/20 | score 0/20

Thread-safe: call `advance` from worker threads or from futures' done-callbacks. Worker *processes* cannot reach
it: advance in the parent when their results come back (as_completed / add_done_callback).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

STAGES = ("deface", "render", "model", "score")


@dataclass(frozen=True)
class StageCounts:
    total: int
    done: int  # finished units, failures included
    failed: int
    elapsed: float  # seconds since progress started
    eta: float | None  # seconds left at the rate so far; None before the first unit finishes


class _FailedColumn(ProgressColumn):
    def render(self, task) -> Text:
        failed = task.fields.get("failed", 0)
        return Text(f"{failed} failed", style="red") if failed else Text("")


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class StageProgress:
    """Counts per stage, shown as bars or quiet lines. Use as a context manager (starts and stops the display)."""

    def __init__(self, totals: Mapping[str, int] | None = None, *, quiet: bool | None = None, interval: float = 30.0,
                 file=None, console: Console | None = None, stages=STAGES):
        self._console = console
        self._file = console.file if console is not None else (file if file is not None else sys.stderr)
        if quiet is None:
            quiet = not (console.is_terminal if console is not None else _isatty(self._file))
        self.quiet = quiet
        self.interval = interval
        self._lock = threading.Lock()
        self._stages = list(stages)
        for name in (totals or {}):
            if name not in self._stages:
                self._stages.append(name)
        self._total = {s: int((totals or {}).get(s, 0)) for s in self._stages}
        self._done = {s: 0 for s in self._stages}
        self._failed = {s: 0 for s in self._stages}
        self._t0 = time.monotonic()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._progress: Progress | None = None
        self._task_ids: dict[str, int] = {}

    # ---- display lifecycle -------------------------------------------------------------------------------

    def start(self) -> "StageProgress":
        self._t0 = time.monotonic()
        if self.quiet:
            self._ticker = threading.Thread(target=self._tick, name="progress-lines", daemon=True)
            self._ticker.start()
        else:
            self._progress = Progress(
                TextColumn("{task.description:<7}"), BarColumn(), MofNCompleteColumn(), _FailedColumn(),
                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                console=self._console or Console(file=self._file), transient=False,
            )
            for stage in self._stages:
                self._task_ids[stage] = self._progress.add_task(
                    stage, total=self._total[stage], completed=self._done[stage], failed=self._failed[stage],
                    visible=self._total[stage] > 0)
            self._progress.start()
        return self

    def stop(self) -> None:
        if self._ticker is not None:
            self._stop.set()
            self._ticker.join()
            self._ticker = None
            self._print_line()
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __enter__(self) -> "StageProgress":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- counting -----------------------------------------------------------------------------------------

    def add_total(self, stage: str, n: int = 1) -> None:
        """More units for a stage than planned (e.g. an agent asked for more renders)."""
        with self._lock:
            self._ensure(stage)
            self._total[stage] += n
            if self._progress is not None:
                self._progress.update(self._task_ids[stage], total=self._total[stage], visible=self._total[stage] > 0)

    def advance(self, stage: str, n: int = 1, *, failed: bool = False) -> None:
        """`n` units of `stage` finished (all failed when failed=True). Cache hits count too: they are done."""
        with self._lock:
            self._ensure(stage)
            self._done[stage] += n
            if failed:
                self._failed[stage] += n
            if self._done[stage] > self._total[stage]:
                self._total[stage] = self._done[stage]
            if self._progress is not None:
                self._progress.update(self._task_ids[stage], completed=self._done[stage], total=self._total[stage],
                                      failed=self._failed[stage], visible=True)

    def log(self, message: str) -> None:
        """A line above the bars (or a plain line in quiet mode), e.g. why a case failed."""
        if self._progress is not None:
            self._progress.console.print(message, markup=False, highlight=False)
        else:
            print(message, file=self._file, flush=True)

    def snapshot(self) -> dict[str, StageCounts]:
        with self._lock:
            elapsed = time.monotonic() - self._t0
            out = {}
            for s in self._stages:
                done, total = self._done[s], self._total[s]
                eta = None
                if done and total >= done:
                    eta = (total - done) * elapsed / done
                out[s] = StageCounts(total, done, self._failed[s], elapsed, eta)
            return out

    def line(self) -> str:
        """The quiet-mode line for the counts now."""
        snap = self.snapshot()
        elapsed = next(iter(snap.values())).elapsed if snap else time.monotonic() - self._t0
        parts = [f"progress {format_duration(elapsed)}"]
        for stage, c in snap.items():
            if not c.total and not c.done:
                continue
            text = f"{stage} {c.done}/{c.total}"
            if c.failed:
                text += f" ({c.failed} failed)"
            if c.done < c.total and c.eta is not None:
                text += f" eta {format_duration(c.eta)}"
            parts.append(text)
        return " | ".join(parts)

    # ---- internals ----------------------------------------------------------------------------------------

    def _ensure(self, stage: str) -> None:
        if stage in self._total:
            return
        self._stages.append(stage)
        self._total[stage] = self._done[stage] = self._failed[stage] = 0
        if self._progress is not None:
            self._task_ids[stage] = self._progress.add_task(stage, total=0, failed=0, visible=False)

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            self._print_line()

    def _print_line(self) -> None:
        print(self.line(), file=self._file, flush=True)


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
