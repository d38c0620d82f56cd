"""The runs a view shows, read once: their samples, the pairs (original and defaced sample of the same task, case,
model and mode) with the fidelity values of each, the grid of counts and the failures grouped by reason.

A pair is listed for every defaced sample, also when one side failed (the view is where one looks at why); its
fidelity values are computed only when both sides are ok, as in the statistics (harness.results.aggregate).
"Answer changed" means the parsed answers differ, or one side has an answer and the other has not.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from harness.core.errors import HarnessError
from harness.core.sample import REFERENCE, STATUSES, Sample
from harness.results.aggregate import AggregateError, final_samples, group_cells
from harness.results.failures import FailureGroup, failure_groups
from harness.store.manifest import names_of
from harness.store.run_store import read_run

__all__ = ["STATUSES", "GridRow", "Pair", "Selection", "ViewRun", "load_runs"]


@dataclass
class Pair:
    pair_id: str  # the defaced sample's id: a defaced sample has exactly one original
    original: Sample | None  # None when the run holds no original sample for this case, model and mode
    defaced: Sample
    fidelity: dict = field(default_factory=dict)  # metric -> value; empty unless both sides are ok
    fidelity_error: str = ""  # why there are no fidelity values although both sides are ok

    @property
    def changed(self) -> bool:
        o, d = self.original, self.defaced
        if o is None:
            return False
        if o.status == "ok" and d.status == "ok":
            return o.answer != d.answer
        return (o.status == "ok") != (d.status == "ok")

    def score_deltas(self) -> dict[str, float]:
        """defaced - original of every score both sides have as a number."""
        if self.original is None:
            return {}
        return {m: d - o for m, d in self.defaced.scores.items() if _number(d) and _number(o := self.original.scores.get(m))}


@dataclass
class GridRow:
    task: str
    model: str
    mode: str
    condition: str
    planned: int  # cases of the task seen in the run (samples, QC lines, rejected rows)
    counts: Counter

    @property
    def coverage(self) -> float:
        return self.counts["ok"] / self.planned if self.planned else 0.0


@dataclass
class ViewRun:
    rid: str  # a URL-safe name, unique among the runs of one view
    directory: Path
    manifest: dict
    samples: dict[str, Sample]  # sample id -> final record
    qc: list[dict]
    rejected: list[dict]
    pairs: dict[str, Pair] = field(default_factory=dict)
    grid: list[GridRow] = field(default_factory=list)
    failures: list[FailureGroup] = field(default_factory=list)
    pair_of: dict[str, list[str]] = field(default_factory=dict)  # sample id -> ids of the pairs it is part of

    @property
    def facts(self) -> list[tuple[str, str]]:
        m = self.manifest
        harness = m.get("harness") if isinstance(m.get("harness"), dict) else {}
        version = str(harness.get("version", "?")) + (f" (git {str(harness['git_sha'])[:10]})" if harness.get("git_sha") else "")
        return [("run", str(self.directory)), ("status", str(m.get("status", "?"))),
                ("started (UTC)", str(m.get("started_at", "-"))), ("ended (UTC)", str(m.get("ended_at") or "-")),
                ("harness", version), ("tasks", ", ".join(names_of(m.get("tasks"))) or "-")]

    def identities(self, section: str) -> list[tuple[str, str]]:
        """(name, identity as text) of the manifest's defacers or models."""
        entry = self.manifest.get(section)
        if not isinstance(entry, dict):
            return [(n, "") for n in names_of(entry)]
        return [(str(k), ", ".join(f"{a}={b}" for a, b in v.items() if b not in (None, "", {})) if isinstance(v, dict) else str(v))
                for k, v in entry.items()]

    def changed_samples(self) -> set[str]:
        """Ids of both samples of every pair whose answer changed after defacing."""
        return {s.sample_id for p in self.pairs.values() if p.changed for s in (p.original, p.defaced) if s is not None}

    def metrics(self, kind: str) -> list[str]:
        """Names of the accuracy ("accuracy") or fidelity ("fidelity") metrics the samples and pairs carry."""
        values = (s.scores for s in self.samples.values()) if kind == "accuracy" else (p.fidelity for p in self.pairs.values())
        return sorted({k for v in values for k in v})


def load_runs(run_dirs: Iterable[Path], tasks=None) -> list[ViewRun]:
    """The runs, read and indexed. `tasks`: task name -> Task for the fidelity values (default: the registry; a
    task that is not installed gives pairs without fidelity values and says why)."""
    out: list[ViewRun] = []
    used: set[str] = set()
    for directory in run_dirs:
        data = read_run(directory)
        rid = _unique(re.sub(r"[^A-Za-z0-9._-]+", "-", Path(directory).name).strip(".-") or "run", used)
        samples = {s.sample_id: s for s in final_samples(data.samples)}
        run = ViewRun(rid, Path(directory), data.manifest, samples, data.qc, data.rejected)
        _index(run, tasks)
        out.append(run)
    return out


def _unique(name: str, used: set[str]) -> str:
    candidate, n = name, 2
    while candidate in used:
        candidate, n = f"{name}-{n}", n + 1
    used.add(candidate)
    return candidate


def _index(run: ViewRun, tasks) -> None:
    try:
        cells = group_cells(run.samples.values(), run.qc, run.rejected)
    except AggregateError as exc:
        raise HarnessError(f"{run.directory}: {exc}") from exc
    counts = Counter((s.task, s.model, s.mode, s.condition, s.status) for s in run.samples.values())
    for task, tc in cells.items():
        task_obj, task_problem = _task(task, tasks)
        seen = set()
        for cell in tc.cells:
            for case_id, defaced in cell.defaced.items():
                pair = Pair(defaced.sample_id, cell.original.get(case_id), defaced)
                if pair.original is not None and pair.original.status == defaced.status == "ok":
                    pair.fidelity, pair.fidelity_error = _fidelity(task_obj, task_problem, pair)
                run.pairs[pair.pair_id] = pair
                for s in (pair.original, defaced):
                    if s is not None:
                        run.pair_of.setdefault(s.sample_id, []).append(pair.pair_id)
            for condition in [REFERENCE, cell.defacer]:
                key = (task, cell.model, cell.mode, condition)
                if key not in seen:
                    seen.add(key)
                    run.grid.append(GridRow(task, cell.model, cell.mode, condition, len(tc.cases),
                                            Counter({st: counts[(*key, st)] for st in STATUSES})))
        if not tc.cells:  # a task whose samples are all originals (a run without defacers)
            for model, mode in sorted({(s.model, s.mode) for s in run.samples.values() if s.task == task}):
                key = (task, model, mode, REFERENCE)
                run.grid.append(GridRow(*key, len(tc.cases), Counter({st: counts[(*key, st)] for st in STATUSES})))
    run.failures = failure_groups(run.samples.values())


def _task(name: str, tasks):
    if tasks is not None:
        return (tasks[name], "") if name in tasks else (None, f"task {name} is not given")
    from tasks import get_task

    try:
        return get_task(name), ""
    except HarnessError as exc:
        return None, f"task {name} is not installed here ({exc})"


def _fidelity(task, problem: str, pair: Pair) -> tuple[dict, str]:
    if task is None:
        return {}, problem
    try:
        values = task.compare(pair.original.answer, pair.defaced.answer) or {}
    except Exception as exc:  # an answer the task cannot compare is shown, not fatal to the view
        return {}, f"compare() failed: {type(exc).__name__}: {exc}"
    return {str(k): v for k, v in values.items()}, ""


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v


@dataclass(frozen=True)
class Selection:
    """What `harness view --out` copies (and the lists' filters): each field None = any."""

    task: str | None = None
    defacer: str | None = None  # a sample's condition: a defacer spec, or "original"
    model: str | None = None
    mode: str | None = None
    status: str | None = None
    changed: bool = False  # only samples of pairs whose answer changed after defacing

    def samples(self, run: ViewRun) -> list[Sample]:
        changed = run.changed_samples() if self.changed else set()
        return [s for s in run.samples.values()
                if all(want is None or want == have for want, have in
                       ((self.task, s.task), (self.defacer, s.condition), (self.model, s.model), (self.mode, s.mode),
                        (self.status, s.status)))
                and (not self.changed or s.sample_id in changed)]

    def pairs(self, run: ViewRun) -> list[Pair]:
        """The pairs whose defaced sample is selected (its original comes with it)."""
        chosen = {s.sample_id for s in self.samples(run)}
        return [p for p in run.pairs.values() if p.pair_id in chosen]
