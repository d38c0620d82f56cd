"""summary.json: the documented schema of a run's aggregates (shown as tables by harness.results.tables).

Schema (version 1):

    {"version": 1, "run": "20261123-031000-ct-report", "created_at": "2026-11-23T03:10:00.000000Z",
     "harness_version": "0.1.0",
     "counts": {"planned": 40, "ok": 37, "unparsable": 2, "failed": 1},   # final status per sample id
     "failures": {"timeout": 1},                                          # error kind -> samples
     "stage_seconds": {"deface": 12.5, "render": 3.1, "model": 40.2, "score": 0.4},
     "wall_seconds": 61.0,
     "tasks": [
       {"task": "ct-report", "metric": "f1", "fidelity_metric": "agreement", "higher_is_better": true,
        "rows": [
          {"model": "scripted", "defacer": "reface", "n_cases": 10, "n_pairs": 9,
           "score_original": {"value": 0.81, "ci_low": 0.74, "ci_high": 0.88, "n": 10},
           "score_defaced":  {"value": 0.79, "ci_low": 0.70, "ci_high": 0.86, "n": 9},
           "fidelity": {"agreement": {"value": 0.93, "ci_low": 0.88, "ci_high": 0.97, "n": 9}},
           "coverage_original": {"planned": 10, "ok": 10, "unparsable": 0, "failed": 0},
           "coverage_defaced":  {"planned": 10, "ok": 8, "unparsable": 1, "failed": 1},
           "extra": {}}]}]}

Fields added by harness.results.aggregate (all optional when reading; older files simply lack them):

    task:  "version": "1",  "title": "...",
           "accuracy_metrics": [Metric.to_dict(), ...], "fidelity_metrics": [...],   # the declared columns
           "test_family": "..."                        # what Benjamini-Hochberg adjusted across
    row:   "mode": "single",
           "accuracy": {metric: {"original": Estimate, "defaced": Estimate, "delta": Estimate,   # defaced - original
                                 "test": "wilcoxon"|"mcnemar"|"kappa"|null, "statistic": float|null,
                                 "p_value": float|null, "p_adjusted": float|null,              # BH within test_family
                                 "kappa": Estimate|null, "note": str|null}},
           "agreement": {...},                          # task.agreement(pairs), JSON as the task returns it
           "privacy": {"volumes": 9, "refused": 1, "failed": 0,                    # defacer QC of this task's cases
                       "face_fraction_changed": Estimate, "face_surface_change_mm": Estimate,
                       "brain_voxels_changed_mean": float|null, "brain_voxels_changed_max": int|null} | null

score_original / score_defaced repeat the primary (first declared) accuracy metric's estimates; fidelity holds one
Estimate per declared fidelity metric (mean of task.compare over pairs).

An Estimate's value and CI bounds are null when there was nothing to estimate (e.g. no pairs). Readers accept
unknown keys (newer versions) and refuse a newer major `version` they cannot read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.core.errors import PathError

SUMMARY_VERSION = 1


class SummaryFormatError(PathError):
    """summary.json (or the object read from it) does not follow the schema; names the source and the field."""


def _number(value, where: str, source, allow_none: bool = True):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SummaryFormatError(source, f"{where} must be a number, not {type(value).__name__}")
    return value


def _int(value, where: str, source) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SummaryFormatError(source, f"{where} must be a non-negative integer, not {value!r}")
    return value


def _obj(value, where: str, source) -> dict:
    if not isinstance(value, dict):
        raise SummaryFormatError(source, f"{where} must be an object, not {type(value).__name__}")
    return value


def _str(value, where: str, source) -> str:
    if not isinstance(value, str):
        raise SummaryFormatError(source, f"{where} must be a string, not {type(value).__name__}")
    return value


@dataclass
class Estimate:
    value: float | None
    ci_low: float | None = None  # 95% confidence interval
    ci_high: float | None = None
    n: int = 0  # cases (or pairs) it was computed from

    def to_dict(self) -> dict:
        return {"value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high, "n": self.n}

    @classmethod
    def from_dict(cls, d, where: str, source) -> "Estimate":
        d = _obj(d, where, source)
        return cls(_number(d.get("value"), f"{where}.value", source), _number(d.get("ci_low"), f"{where}.ci_low", source),
                   _number(d.get("ci_high"), f"{where}.ci_high", source), _int(d.get("n", 0), f"{where}.n", source))


@dataclass
class Coverage:
    planned: int = 0
    ok: int = 0
    unparsable: int = 0
    failed: int = 0

    @classmethod
    def of(cls, samples, planned: int | None = None) -> "Coverage":
        """Counts of final statuses in `samples` (one per id); planned defaults to how many there are."""
        counts = {"ok": 0, "unparsable": 0, "failed": 0}
        n = 0
        for sample in samples:
            counts[sample.status] += 1
            n += 1
        return cls(n if planned is None else planned, counts["ok"], counts["unparsable"], counts["failed"])

    @property
    def rate(self) -> float | None:
        """Share of planned samples with a usable (parsed) answer."""
        return self.ok / self.planned if self.planned else None

    def to_dict(self) -> dict:
        return {"planned": self.planned, "ok": self.ok, "unparsable": self.unparsable, "failed": self.failed}

    @classmethod
    def from_dict(cls, d, where: str, source) -> "Coverage":
        d = _obj(d, where, source)
        return cls(*(_int(d.get(k, 0), f"{where}.{k}", source) for k in ("planned", "ok", "unparsable", "failed")))


def _opt_estimate(d, where: str, source) -> "Estimate | None":
    return None if d is None else Estimate.from_dict(d, where, source)


@dataclass
class MetricResult:
    """One accuracy metric of one row: per-condition estimates, the paired delta (defaced - original) and the paired
    test chosen by the metric's kind, with its p-value adjusted (Benjamini-Hochberg) within the task's test family."""

    original: Estimate = field(default_factory=lambda: Estimate(None))
    defaced: Estimate = field(default_factory=lambda: Estimate(None))
    delta: Estimate = field(default_factory=lambda: Estimate(None))
    test: str | None = None  # "wilcoxon" | "mcnemar" | "kappa"
    statistic: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    kappa: Estimate | None = None  # categorical metrics: agreement of the original and defaced labels
    note: str | None = None  # why a test or estimate is missing or degenerate

    def to_dict(self) -> dict:
        return {"original": self.original.to_dict(), "defaced": self.defaced.to_dict(), "delta": self.delta.to_dict(),
                "test": self.test, "statistic": self.statistic, "p_value": self.p_value,
                "p_adjusted": self.p_adjusted, "kappa": None if self.kappa is None else self.kappa.to_dict(),
                "note": self.note}

    @classmethod
    def from_dict(cls, d, where: str, source) -> "MetricResult":
        d = _obj(d, where, source)
        test, note = d.get("test"), d.get("note")
        return cls(
            Estimate.from_dict(d.get("original", {}), f"{where}.original", source),
            Estimate.from_dict(d.get("defaced", {}), f"{where}.defaced", source),
            Estimate.from_dict(d.get("delta", {}), f"{where}.delta", source),
            None if test is None else _str(test, f"{where}.test", source),
            _number(d.get("statistic"), f"{where}.statistic", source),
            _number(d.get("p_value"), f"{where}.p_value", source),
            _number(d.get("p_adjusted"), f"{where}.p_adjusted", source),
            _opt_estimate(d.get("kappa"), f"{where}.kappa", source),
            None if note is None else _str(note, f"{where}.note", source),
        )


@dataclass
class Privacy:
    """Defacer QC over the defaced volumes of one task's cases (the same for every model of the task)."""

    volumes: int = 0  # defaced volumes with QC numbers
    refused: int = 0  # volumes the defacer refused (e.g. registration too poor)
    failed: int = 0
    face_fraction_changed: Estimate = field(default_factory=lambda: Estimate(None))
    face_surface_change_mm: Estimate = field(default_factory=lambda: Estimate(None))
    brain_voxels_changed_mean: float | None = None
    brain_voxels_changed_max: int | None = None
    # the re-identification attack (harness.privacy.reidentify.summarize_outcomes without the per-volume reasons,
    # plus "attack": the models' name and dlib version); None when the privacy stage did not run
    reidentification: dict | None = None

    def reid(self, k: int = 1) -> Estimate:
        """Rank-k re-identification (share of probes whose own person the attack ranked k or better) with its CI."""
        r = self.reidentification or {}
        low, high = r.get(f"rank{k}_ci") or (None, None)
        return Estimate(r.get(f"rank{k}"), low, high, int(r.get("n_ranked") or 0))

    def to_dict(self) -> dict:
        return {"volumes": self.volumes, "refused": self.refused, "failed": self.failed,
                "reidentification": self.reidentification,
                "face_fraction_changed": self.face_fraction_changed.to_dict(),
                "face_surface_change_mm": self.face_surface_change_mm.to_dict(),
                "brain_voxels_changed_mean": self.brain_voxels_changed_mean,
                "brain_voxels_changed_max": self.brain_voxels_changed_max}

    @classmethod
    def from_dict(cls, d, where: str, source) -> "Privacy":
        d = _obj(d, where, source)
        mx = d.get("brain_voxels_changed_max")
        return cls(
            _int(d.get("volumes", 0), f"{where}.volumes", source), _int(d.get("refused", 0), f"{where}.refused", source),
            _int(d.get("failed", 0), f"{where}.failed", source),
            Estimate.from_dict(d.get("face_fraction_changed", {}), f"{where}.face_fraction_changed", source),
            Estimate.from_dict(d.get("face_surface_change_mm", {}), f"{where}.face_surface_change_mm", source),
            _number(d.get("brain_voxels_changed_mean"), f"{where}.brain_voxels_changed_mean", source),
            None if mx is None else _int(mx, f"{where}.brain_voxels_changed_max", source),
            _reidentification(d.get("reidentification"), f"{where}.reidentification", source),
        )


def _reidentification(d, where: str, source) -> dict | None:
    if d is None:
        return None
    d = _obj(d, where, source)
    out = {k: _number(d.get(k), f"{where}.{k}", source) for k in ("detected", "rank1", "rank5", "same_person", "chance_rank1")}
    out.update({k: _int(d.get(k, 0), f"{where}.{k}", source) for k in ("n", "n_ranked", "no_face")})
    for k in ("rank1_ci", "rank5_ci"):
        ci = d.get(k) or [None, None]
        if not isinstance(ci, list) or len(ci) != 2:
            raise SummaryFormatError(source, f"{where}.{k} must be [low, high]")
        out[k] = [_number(v, f"{where}.{k}", source) for v in ci]
    out["attack"] = str(d.get("attack", ""))
    return out


@dataclass
class SummaryRow:
    """One model x defacer cell of a task: scores on original and defaced volumes, fidelity, coverage."""

    model: str
    defacer: str
    n_cases: int = 0
    n_pairs: int = 0  # cases where both the original and the defaced sample have a parsed answer
    score_original: Estimate = field(default_factory=lambda: Estimate(None))
    score_defaced: Estimate = field(default_factory=lambda: Estimate(None))
    fidelity: dict[str, Estimate] = field(default_factory=dict)
    coverage_original: Coverage = field(default_factory=Coverage)
    coverage_defaced: Coverage = field(default_factory=Coverage)
    extra: dict = field(default_factory=dict)
    mode: str = ""
    accuracy: dict[str, MetricResult] = field(default_factory=dict)
    agreement: dict = field(default_factory=dict)
    privacy: Privacy | None = None

    def to_dict(self) -> dict:
        return {"model": self.model, "mode": self.mode, "defacer": self.defacer, "n_cases": self.n_cases,
                "n_pairs": self.n_pairs,
                "score_original": self.score_original.to_dict(), "score_defaced": self.score_defaced.to_dict(),
                "fidelity": {k: v.to_dict() for k, v in self.fidelity.items()},
                "coverage_original": self.coverage_original.to_dict(),
                "coverage_defaced": self.coverage_defaced.to_dict(),
                "accuracy": {k: v.to_dict() for k, v in self.accuracy.items()}, "agreement": self.agreement,
                "privacy": None if self.privacy is None else self.privacy.to_dict(), "extra": self.extra}

    @classmethod
    def from_dict(cls, d, where: str, source) -> "SummaryRow":
        d = _obj(d, where, source)
        fidelity = _obj(d.get("fidelity", {}), f"{where}.fidelity", source)
        accuracy = _obj(d.get("accuracy", {}), f"{where}.accuracy", source)
        privacy = d.get("privacy")
        return cls(
            model=_str(d.get("model"), f"{where}.model", source),
            defacer=_str(d.get("defacer"), f"{where}.defacer", source),
            n_cases=_int(d.get("n_cases", 0), f"{where}.n_cases", source),
            n_pairs=_int(d.get("n_pairs", 0), f"{where}.n_pairs", source),
            score_original=Estimate.from_dict(d.get("score_original", {}), f"{where}.score_original", source),
            score_defaced=Estimate.from_dict(d.get("score_defaced", {}), f"{where}.score_defaced", source),
            fidelity={str(k): Estimate.from_dict(v, f"{where}.fidelity.{k}", source) for k, v in fidelity.items()},
            coverage_original=Coverage.from_dict(d.get("coverage_original", {}), f"{where}.coverage_original", source),
            coverage_defaced=Coverage.from_dict(d.get("coverage_defaced", {}), f"{where}.coverage_defaced", source),
            extra=_obj(d.get("extra", {}), f"{where}.extra", source),
            mode=_str(d.get("mode", ""), f"{where}.mode", source),
            accuracy={str(k): MetricResult.from_dict(v, f"{where}.accuracy.{k}", source) for k, v in accuracy.items()},
            agreement=_obj(d.get("agreement", {}), f"{where}.agreement", source),
            privacy=None if privacy is None else Privacy.from_dict(privacy, f"{where}.privacy", source),
        )


@dataclass
class TaskSummary:
    task: str
    metric: str  # the task's primary score
    fidelity_metric: str  # the fidelity measure shown first
    higher_is_better: bool = True
    rows: list[SummaryRow] = field(default_factory=list)
    version: str = ""
    title: str = ""
    accuracy_metrics: list[dict] = field(default_factory=list)  # Metric.to_dict() of the declared metrics
    fidelity_metrics: list[dict] = field(default_factory=list)
    test_family: str = ""

    def to_dict(self) -> dict:
        return {"task": self.task, "version": self.version, "title": self.title, "metric": self.metric,
                "fidelity_metric": self.fidelity_metric, "higher_is_better": self.higher_is_better,
                "accuracy_metrics": self.accuracy_metrics, "fidelity_metrics": self.fidelity_metrics,
                "test_family": self.test_family, "rows": [r.to_dict() for r in self.rows]}

    @classmethod
    def from_dict(cls, d, where: str, source) -> "TaskSummary":
        d = _obj(d, where, source)
        rows = d.get("rows", [])
        if not isinstance(rows, list):
            raise SummaryFormatError(source, f"{where}.rows must be a list")
        hib = d.get("higher_is_better", True)
        metrics = {}
        for key in ("accuracy_metrics", "fidelity_metrics"):
            value = d.get(key, [])
            if not isinstance(value, list) or not all(isinstance(m, dict) and isinstance(m.get("name"), str) for m in value):
                raise SummaryFormatError(source, f"{where}.{key} must be a list of metric objects with a name")
            metrics[key] = value
        return cls(_str(d.get("task"), f"{where}.task", source), _str(d.get("metric"), f"{where}.metric", source),
                   _str(d.get("fidelity_metric"), f"{where}.fidelity_metric", source), bool(hib),
                   [SummaryRow.from_dict(r, f"{where}.rows[{i}]", source) for i, r in enumerate(rows)],
                   version=_str(d.get("version", ""), f"{where}.version", source),
                   title=_str(d.get("title", ""), f"{where}.title", source),
                   test_family=_str(d.get("test_family", ""), f"{where}.test_family", source), **metrics)


@dataclass
class Summary:
    run: str
    created_at: str
    harness_version: str
    counts: Coverage = field(default_factory=Coverage)
    failures: dict[str, int] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    wall_seconds: float | None = None
    tasks: list[TaskSummary] = field(default_factory=list)
    version: int = SUMMARY_VERSION

    def to_dict(self) -> dict:
        return {"version": self.version, "run": self.run, "created_at": self.created_at,
                "harness_version": self.harness_version, "counts": self.counts.to_dict(),
                "failures": dict(self.failures), "stage_seconds": dict(self.stage_seconds),
                "wall_seconds": self.wall_seconds, "tasks": [t.to_dict() for t in self.tasks]}

    @classmethod
    def from_dict(cls, d: Any, source="summary.json") -> "Summary":
        d = _obj(d, "summary", source)
        version = d.get("version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise SummaryFormatError(source, "no schema version; not a harness summary")
        if version > SUMMARY_VERSION:
            raise SummaryFormatError(source, f"schema version {version} is newer than this harness reads "
                                             f"({SUMMARY_VERSION}); upgrade harness")
        tasks = d.get("tasks", [])
        if not isinstance(tasks, list):
            raise SummaryFormatError(source, "tasks must be a list")
        failures = _obj(d.get("failures", {}), "failures", source)
        stages = _obj(d.get("stage_seconds", {}), "stage_seconds", source)
        return cls(
            run=_str(d.get("run", ""), "run", source),
            created_at=_str(d.get("created_at", ""), "created_at", source),
            harness_version=_str(d.get("harness_version", ""), "harness_version", source),
            counts=Coverage.from_dict(d.get("counts", {}), "counts", source),
            failures={str(k): _int(v, f"failures.{k}", source) for k, v in failures.items()},
            stage_seconds={str(k): _number(v, f"stage_seconds.{k}", source, False) for k, v in stages.items()},
            wall_seconds=_number(d.get("wall_seconds"), "wall_seconds", source),
            tasks=[TaskSummary.from_dict(t, f"tasks[{i}]", source) for i, t in enumerate(tasks)],
            version=version,
        )
