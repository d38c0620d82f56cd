"""Samples -> per-task rows (one per model x mode x defacer): scores, paired deltas and tests, fidelity, agreement,
coverage and privacy. Used by the end-of-run summary of `harness eval` and by the leaderboard.

Rules that keep the results trustworthy:
- A pair is the original sample and a defaced sample of the same task, case, model and mode, both with status
  "ok". Failed and unparsable samples are counted in coverage and never enter a paired statistic.
- Per-condition estimates (original, defaced) are the mean of a metric over that condition's parsed samples with
  a bootstrap 95% CI over cases; the delta is the mean of (defaced - original) over complete pairs with its own
  bootstrap CI, so it can differ from defaced - original when coverage differs.
- The paired test follows the metric's kind: continuous -> Wilcoxon signed-rank, binary -> McNemar, categorical ->
  Cohen's kappa (agreement, no p-value). Benjamini-Hochberg adjusts the p-values of one test family: all accuracy
  metrics x defacers of one task x model x mode (TEST_FAMILY).
- coverage.planned is the number of cases of the task seen anywhere in the input (samples, defacer QC or cohort
  rows the run rejected), so a sample that was never written, or a row that never became a case, shows up as
  planned - ok - unparsable - failed.
- Privacy comes from the defacer QC records (qc/defacer_qc.jsonl, one line per case x role x condition).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.core.errors import HarnessError
from harness.core.sample import REFERENCE, Sample
from harness.scoring.stats import (
    benjamini_hochberg,
    bootstrap_ci,
    cohen_kappa,
    complete_pairs,
    mcnemar,
    paired_difference_ci,
    wilcoxon_signed_rank,
)
from harness.store.run_store import read_run
from harness.store.summary import Coverage, Estimate, MetricResult, Privacy, SummaryRow, TaskSummary

TEST_FAMILY = "all accuracy-metric tests (metrics x defacers) of one task x model x mode"
N_RESAMPLES = 2000
SEED = 0


class AggregateError(HarnessError):
    """Samples or QC records cannot be aggregated (conflicting records, a task that fails on an answer)."""


@dataclass
class Cell:
    """The samples of one task x model x mode x defacer: the originals (shared by every defacer) and the defaced."""

    task: str
    model: str
    mode: str
    defacer: str
    original: dict[str, Sample] = field(default_factory=dict)  # case_id -> sample
    defaced: dict[str, Sample] = field(default_factory=dict)
    _compared: dict[str, dict] | None = field(default=None, repr=False, compare=False)

    def pairs(self) -> list[tuple[str, Sample, Sample]]:
        """(case_id, original, defaced) for the cases where both samples are ok, in case-id order."""
        return [(c, self.original[c], d) for c, d in sorted(self.defaced.items())
                if d.status == "ok" and c in self.original and self.original[c].status == "ok"]

    def compared(self, task) -> dict[str, dict]:
        """case_id -> task.compare() of that pair (every key it returns, declared or not), computed once: the
        summary's fidelity estimates and the leaderboard's per-case table read the same values."""
        if self._compared is None:
            pairs = self.pairs()
            try:
                got = task.compare_many([(o.answer, d.answer) for _, o, d in pairs]) if pairs else []
            except Exception as exc:
                raise AggregateError(f"task {self.task}: compare() failed for model {self.model}, defacer "
                                     f"{self.defacer}: {type(exc).__name__}: {exc}") from exc
            self._compared = {c: dict(g or {}) for (c, _, _), g in zip(pairs, got)}
        return self._compared


@dataclass
class TaskCells:
    task: str
    cases: set[str]  # every case id of the task seen in samples or QC records (planned)
    cells: list[Cell]  # sorted by model, mode, defacer


def final_samples(samples: Iterable[Sample]) -> list[Sample]:
    """One sample per sample id: a finished (ok/unparsable) record wins over a failed one, then the latest."""
    chosen: dict[str, Sample] = {}
    for s in samples:
        prev = chosen.get(s.sample_id)
        if prev is None or (s.done, s.created_at) >= (prev.done, prev.created_at):
            chosen[s.sample_id] = s
    return list(chosen.values())


def group_cells(samples: Iterable[Sample], qc_records: Iterable[dict] = (), rejected: Iterable[dict] = ()) -> dict[str, TaskCells]:
    """Samples (and QC records, for the case list and defacers; rejected cohort rows, for the case list) grouped into
    cells, per task."""
    originals: dict[tuple, dict[str, Sample]] = defaultdict(dict)
    defaced: dict[tuple, dict[str, Sample]] = defaultdict(dict)
    cases: dict[str, set[str]] = defaultdict(set)
    defacers: dict[str, set[str]] = defaultdict(set)
    model_modes: dict[str, set[tuple[str, str]]] = defaultdict(set)
    # In case order, not file order: samples land in completion order, and the bootstrap must not depend on it.
    for s in sorted(final_samples(samples), key=lambda s: (s.task, s.case_id, s.condition, s.model, s.mode)):
        cases[s.task].add(s.case_id)
        model_modes[s.task].add((s.model, s.mode))
        if s.condition == REFERENCE:
            slot = originals[(s.task, s.model, s.mode)]
        else:
            defacers[s.task].add(s.condition)
            slot = defaced[(s.task, s.model, s.mode, s.condition)]
        other = slot.get(s.case_id)
        if other is not None:
            raise AggregateError(
                f"task {s.task}, case {s.case_id}, model {s.model}, mode {s.mode}, condition {s.condition}: two "
                f"different samples ({other.sample_id}, {s.sample_id}) - the runs used different defacer or model "
                f"identities under one name; aggregate them separately")
        slot[s.case_id] = s
    for rec in qc_records:
        task, case, cond = rec.get("task"), rec.get("case_id"), rec.get("condition")
        if isinstance(task, str) and isinstance(case, str):
            cases[task].add(case)
            if isinstance(cond, str) and cond != REFERENCE:
                defacers[task].add(cond)
    for row in rejected:
        if isinstance(row.get("task"), str) and isinstance(row.get("case_id"), str):
            cases[row["task"]].add(row["case_id"])
    out = {}
    for task in sorted(model_modes):  # a task with QC records but no samples has no rows
        cells = [Cell(task, model, mode, d, originals.get((task, model, mode), {}),
                      defaced.get((task, model, mode, d), {}))
                 for model, mode in sorted(model_modes[task]) for d in sorted(defacers[task])]
        out[task] = TaskCells(task, cases[task], cells)
    return out


def aggregate(samples: Iterable[Sample], tasks: Mapping[str, Any], qc_records: Iterable[dict] = (),
              rejected: Iterable[dict] = (), reidentification: Iterable[dict] = ()) -> list[TaskSummary]:
    """Per-task summaries of `samples` (any number of runs; duplicates by sample id are merged). `tasks` maps a task
    name to its Task object (declared metrics, compare, agreement); a task in the samples but not in `tasks` is an
    error. QC records are the defacer QC lines of the same runs; rejected, their rejected cohort rows;
    reidentification, their re-identification probe records."""
    qc = list(qc_records)
    grouped = group_cells(samples, qc, rejected)
    missing = sorted(set(grouped) - set(tasks))
    if missing:
        raise AggregateError(f"no task definition for {', '.join(missing)} (is the task registered?)")
    privacy = privacy_by_defacer(qc, reidentification)
    return [summarize_task(tasks[name], tc, privacy) for name, tc in grouped.items()]


def summarize_task(task, tc: TaskCells, privacy: Mapping[tuple[str, str], Privacy]) -> TaskSummary:
    acc = tuple(task.accuracy_metrics)
    fid = tuple(task.fidelity_metrics)
    rows = [_row(task, cell, len(tc.cases), acc, fid, privacy.get((tc.task, cell.defacer))) for cell in tc.cells]
    _adjust(rows)
    primary = acc[0] if acc else None
    return TaskSummary(
        task=tc.task, metric=primary.name if primary else "", fidelity_metric=fid[0].name if fid else "",
        higher_is_better=primary.higher_is_better if primary else True, rows=rows,
        version=str(getattr(task, "version", "")), title=str(getattr(task, "title", "")),
        accuracy_metrics=[m.to_dict() for m in acc], fidelity_metrics=[m.to_dict() for m in fid],
        test_family=TEST_FAMILY)


def _row(task, cell: Cell, planned: int, acc, fid, privacy: Privacy | None) -> SummaryRow:
    pairs = cell.pairs()
    ok_orig = [s for s in cell.original.values() if s.status == "ok"]
    ok_def = [s for s in cell.defaced.values() if s.status == "ok"]
    accuracy = {m.name: _set_metric(task, m, ok_orig, ok_def, pairs) if m.kind == "set" else _accuracy(m, ok_orig, ok_def, pairs)
                for m in acc}
    fidelity = _fidelity(task, cell, fid)
    answers = [(o.answer, d.answer) for _, o, d in pairs]
    try:
        agreement = _json_safe(task.agreement(answers)) if answers else {}
    except Exception as exc:  # a task bug must name the task, not surface as a bare traceback from the leaderboard
        raise AggregateError(f"task {cell.task}: agreement() failed on {len(answers)} pairs of model {cell.model}, "
                             f"defacer {cell.defacer}: {type(exc).__name__}: {exc}") from exc
    primary = accuracy[acc[0].name] if acc else MetricResult()
    return SummaryRow(
        model=cell.model, defacer=cell.defacer, mode=cell.mode, n_cases=planned, n_pairs=len(pairs),
        score_original=primary.original, score_defaced=primary.defaced, fidelity=fidelity,
        coverage_original=Coverage.of(cell.original.values(), planned),
        coverage_defaced=Coverage.of(cell.defaced.values(), planned),
        accuracy=accuracy, agreement=agreement, privacy=privacy)


def _usable(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def numeric(v) -> bool:
    """A finite number: a value the statistics (and the leaderboard's per-case table) take."""
    return isinstance(v, (int, float, np.integer, np.floating)) and _usable(v) and math.isfinite(float(v))


def estimate(values, seed: int = SEED) -> Estimate:
    """Mean of `values` with a bootstrap 95% CI over them (None bounds when there are fewer than 2)."""
    values = [float(v) for v in values]
    if not values:
        return Estimate(None, None, None, 0)
    r = bootstrap_ci(values, np.mean, n_resamples=N_RESAMPLES, seed=seed)
    return _est(r.estimate, r.low, r.high, len(values))


def _est(value, low, high, n) -> Estimate:
    f = lambda x: None if x is None or not math.isfinite(x) else float(x)  # noqa: E731
    return Estimate(f(value), f(low), f(high), int(n))


def _accuracy(metric, ok_orig: list[Sample], ok_def: list[Sample], pairs) -> MetricResult:
    o_vals = [s.scores.get(metric.name) for s in ok_orig]
    d_vals = [s.scores.get(metric.name) for s in ok_def]
    po, pd, _ = complete_pairs([o.scores.get(metric.name) for _, o, _ in pairs],
                               [d.scores.get(metric.name) for _, _, d in pairs])
    res = MetricResult()
    if metric.kind == "categorical":
        res.original, res.defaced = Estimate(None, n=sum(map(_usable, o_vals))), Estimate(None, n=sum(map(_usable, d_vals)))
        res.test = "kappa"
        if po:
            k = cohen_kappa([str(v) for v in po], [str(v) for v in pd])
            res.kappa, res.statistic, res.note = _est(k.kappa, k.low, k.high, k.n), _finite(k.kappa), k.reason
        return res
    if not all(numeric(v) for v in (*filter(_usable, o_vals), *filter(_usable, d_vals))):
        res.note = f"{metric.kind} metric {metric.name} has non-numeric values; not estimated"
        return res
    res.original = estimate(filter(_usable, o_vals))
    res.defaced = estimate(filter(_usable, d_vals))
    if not po:
        res.note = "no complete pairs"
        return res
    diff = paired_difference_ci(po, pd, n_resamples=N_RESAMPLES, seed=SEED)
    res.delta = _est(diff.estimate, diff.low, diff.high, len(po))
    if metric.kind == "binary":
        if not all(float(v) in (0.0, 1.0) for v in (*po, *pd)):
            res.note = f"binary metric {metric.name} has values other than 0/1; McNemar not run"
            return res
        t = mcnemar([bool(v) for v in po], [bool(v) for v in pd])
        res.test, res.statistic, res.p_value, res.note = "mcnemar", _finite(t.statistic), _finite(t.p_value), t.reason
    else:
        t = wilcoxon_signed_rank(po, pd)
        res.test, res.statistic, res.p_value, res.note = "wilcoxon", _finite(t.statistic), _finite(t.p_value), t.reason
    return res


def _set_metric(task, metric, ok_orig: list[Sample], ok_def: list[Sample], pairs) -> MetricResult:
    """A metric of the whole set of answers (task.set_statistic): its value on each condition's samples with a
    bootstrap CI over cases, and the paired bootstrap CI of defaced - original over complete pairs. No test."""
    keys, statistic = task.set_statistic(metric.name)

    def matrix(samples) -> np.ndarray:
        rows = [[s.scores.get(k) for k in keys] for s in samples]
        rows = [r for r in rows if all(numeric(v) for v in r)]
        return np.asarray(rows, dtype=float).reshape(len(rows), len(keys))

    def one(samples) -> Estimate:
        m = matrix(samples)
        if not len(m):
            return Estimate(None, n=0)
        r = bootstrap_ci((m,), statistic, paired=True, n_resamples=N_RESAMPLES, seed=SEED)
        return _est(r.estimate, r.low, r.high, len(m))

    res = MetricResult(one(ok_orig), one(ok_def), note="set-level metric: bootstrap CIs, no paired test")
    both = [(o, d) for _, o, d in pairs
            if all(numeric(o.scores.get(k)) and numeric(d.scores.get(k)) for k in keys)]
    if both:
        mo, md = matrix([o for o, _ in both]), matrix([d for _, d in both])
        r = bootstrap_ci((mo, md), lambda a, b: statistic(b) - statistic(a), paired=True, n_resamples=N_RESAMPLES, seed=SEED)
        res.delta = _est(r.estimate, r.low, r.high, len(both))
    return res


def _finite(x) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _fidelity(task, cell: Cell, fid) -> dict[str, Estimate]:
    values: dict[str, list] = {m.name: [] for m in fid}
    for got in cell.compared(task).values():
        for name in values:
            v = got.get(name)
            if numeric(v):
                values[name].append(float(v))
    return {name: estimate(v) for name, v in values.items()}


def _adjust(rows: list[SummaryRow]) -> None:
    """Benjamini-Hochberg within each model x mode (all its defacers and accuracy metrics)."""
    families: dict[tuple[str, str], dict[tuple[int, str], float]] = defaultdict(dict)
    for i, row in enumerate(rows):
        for name, res in row.accuracy.items():
            if res.p_value is not None:
                families[(row.model, row.mode)][(i, name)] = res.p_value
    for family in families.values():
        keys = list(family)
        adjusted = benjamini_hochberg([family[k] for k in keys]).adjusted
        for (i, name), q in zip(keys, adjusted):
            rows[i].accuracy[name].p_adjusted = _finite(q)


# ------------------------------------------------------------------------------------------------- privacy

def privacy_by_defacer(qc_records: Iterable[dict], reidentification: Iterable[dict] = ()) -> dict[tuple[str, str], Privacy]:
    """(task, defacer) -> Privacy over the distinct defaced volumes (case x role) of that task. A volume QC'd in
    several runs counts once (an ok record wins over a refused or failed one); so does a volume attacked in several
    runs (the last record wins: the attack is deterministic)."""
    latest: dict[tuple, dict] = {}
    for rec in qc_records:
        if not isinstance(rec, dict) or rec.get("condition") in (None, REFERENCE):
            continue
        key = (rec.get("task"), rec.get("condition"), rec.get("case_id"), rec.get("role"),
               json.dumps(rec.get("defacer"), sort_keys=True, default=str))
        prev = latest.get(key)
        if prev is None or prev.get("status") != "ok":
            latest[key] = rec
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    # in case order, not the QC log's: jobs finish in any order (a pool, a cluster) and the bootstrap CIs must not
    # depend on it
    for (task, cond, *_), rec in sorted(latest.items(), key=lambda item: tuple(str(part) for part in item[0])):
        groups[(str(task), str(cond))].append(rec)
    out = {}
    for key, recs in groups.items():
        ok = [r.get("qc") for r in recs if r.get("status") == "ok" and isinstance(r.get("qc"), dict)]
        face = [q["face_fraction_changed"] for q in ok if numeric(q.get("face_fraction_changed"))]
        surface = [q["face_surface_change_mm"] for q in ok if numeric(q.get("face_surface_change_mm"))]
        brain = [int(q["brain_voxels_changed"]) for q in ok if numeric(q.get("brain_voxels_changed"))]
        out[key] = Privacy(
            volumes=len(ok), refused=sum(r.get("status") == "refused" for r in recs),
            failed=sum(r.get("status") == "failed" for r in recs),
            face_fraction_changed=estimate(face), face_surface_change_mm=estimate(surface),
            brain_voxels_changed_mean=float(np.mean(brain)) if brain else None,
            brain_voxels_changed_max=max(brain) if brain else None)
    for key, reid in reidentification_by_condition(reidentification).items():
        if key in out:
            out[key].reidentification = reid
    return out


def reidentification_by_condition(records: Iterable[dict]) -> dict[tuple[str, str], dict]:
    """(task, condition) -> the attack's scores (harness.privacy.reidentify) from the probe records of the runs;
    the "original" condition holds the positive control."""
    from harness.privacy.reidentify import summarize_outcomes

    latest: dict[tuple, dict] = {}
    for rec in records:
        if isinstance(rec, dict) and all(isinstance(rec.get(k), str) for k in ("task", "condition", "label")):
            latest[(rec["task"], rec["condition"], rec["label"])] = rec
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for (task, cond, _), rec in latest.items():
        groups[(task, cond)].append(rec)
    out = {}
    for key, recs in groups.items():
        scores = summarize_outcomes(recs)
        scores["no_face"] = len(scores["no_face"])
        scores["attack"] = str(recs[-1].get("attack", ""))
        out[key] = scores
    return out


def _json_safe(obj):
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "to_dict"):
        return _json_safe(obj.to_dict())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist())
    return obj


# ------------------------------------------------------------------------------------------------ run dirs

def aggregate_runs(run_dirs: Iterable, tasks: Mapping[str, Any] | None = None) -> list[TaskSummary]:
    """aggregate() over the samples and QC records of one or several run directories. `tasks` defaults to the
    task registry (tasks.get_task)."""
    runs = [read_run(d) for d in run_dirs]
    samples = [s for r in runs for s in r.samples]
    if tasks is None:
        from tasks import get_task

        tasks = {name: get_task(name) for name in sorted({s.task for s in samples})}
    return aggregate(samples, tasks, [q for r in runs for q in r.qc], [x for r in runs for x in r.rejected],
                     [x for r in runs for x in r.reidentification])
