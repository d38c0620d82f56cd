"""The task contract: how a case becomes model input, how an answer is parsed and scored, and which metrics a task
declares (the leaderboard's columns come from these declarations, not from a hand-edited schema).

A task is one module (or package) in tasks/ - or in another package, through the `harness.tasks` entry point -
plus one prompt folder prompts/<task>/ (Jinja templates, no prompt text in Python). It declares everything the
rest of harness needs to know about it: the volumes it reads (roles), its ground truth (truth_fields, checked by
check_truth, read from flat table columns by truth_from_columns), the generator of its built-in sample cohort
(phantoms), its scripted baseline, and its metrics. Nothing outside the task branches on its name.

Flow for one sample (task, case, condition, model, mode), driven by harness's runner:
  volumes = the case's volumes, defaced by the condition's defacer
  inp = task.build_input(case, volumes, mode)          -> messages (+ a Toolbox in agent mode)
  result = run_single_turn / run_agent(model, inp...)   -> raw answer text or submitted answer
  parsed = task.parse(result.answer)                    -> ParseResult (unparsable is recorded, never scored)
  scores = task.score(parsed.value, case.truth)         -> {metric: value} for the declared accuracy metrics
Then per pair (same case, model, mode; original vs a defacer):
  task.compare(original_answer, defaced_answer)         -> {metric: value} for the declared fidelity metrics
  task.agreement(pairs)                                  -> set-level agreement (kappa, ICC, Bland-Altman, ...)
The "direct" mode (and any other of task.direct_modes) has no model: task.solve_direct(case, volumes, condition, mode)
computes the answer itself (e.g. Evans ratio by segmentation, or a label map the cohort gives for that condition), so
algorithmic routes go through the same scoring and pairing.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Literal, Mapping, Sequence

MetricKind = Literal["continuous", "binary", "categorical", "set"]
TruthKind = Literal["number", "integer", "text", "boolean", "object", "list"]
TRUE_WORDS = frozenset({"1", "true", "yes", "y", "present", "positive"})
FALSE_WORDS = frozenset({"0", "false", "no", "n", "absent", "negative"})


@dataclass(frozen=True)
class Metric:
    """A declared metric. kind decides the paired statistics: continuous -> bootstrap CI + Wilcoxon signed-rank,
    binary -> McNemar, categorical -> Cohen's kappa, set -> a value of the whole set of answers (e.g. macro-F1, from
    per-sample counts the task names in set_statistic()) with bootstrap CIs and a paired bootstrap delta, no test.
    group splits reports (e.g. intracranial vs extracranial)."""

    name: str
    description: str
    higher_is_better: bool
    kind: MetricKind = "continuous"
    unit: str = ""
    group: str | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "higher_is_better": self.higher_is_better,
                "kind": self.kind, "unit": self.unit, "group": self.group}


@dataclass(frozen=True)
class SetStatistic:
    """A statistic of the whole cohort that task.agreement() reports (a dict with "cr" or "estimate", "low", "high" at
    `path`), which the leaderboard tabulates per defacer and plots against re-identification (e.g. nCR)."""

    name: str
    path: tuple[str, ...]
    description: str
    higher_is_better: bool

    def value_of(self, agreement: Mapping) -> tuple[float | None, float | None, float | None, int]:
        """(value, CI low, CI high, n) at `path` of an agreement dict; Nones when absent."""
        node: Any = agreement
        for key in self.path:
            node = node.get(key) if isinstance(node, Mapping) else None
        if not isinstance(node, Mapping):
            return None, None, None, 0
        value = node.get("cr", node.get("estimate"))
        return value, node.get("low"), node.get("high"), int(node.get("n") or 0)


@dataclass(frozen=True)
class TruthField:
    """One ground-truth field of a task, as cohort sources read it (a manifest key, a CSV or participants.tsv column).

    Required fields are checked (a case without them is rejected with the reason); optional ones pass through.
    bounds: open interval for numbers; minimum: smallest integer; choices: allowed texts (compared lower-cased).
    from_mask: a mask name (e.g. "seg") from which the task can compute this field when it is absent.
    """

    name: str
    kind: TruthKind
    description: str
    required: bool = False
    bounds: tuple[float, float] | None = None
    minimum: int | None = None
    choices: tuple[str, ...] = ()
    from_mask: str | None = None

    def from_column(self, value: Any) -> Any:
        """A value as a table cell holds it (text) -> the field's type; JSON for objects and lists."""
        if not isinstance(value, str):
            return value
        text = value.strip()
        if self.kind in ("object", "list"):
            if not text:
                return {} if self.kind == "object" else []
            try:
                return json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"column {self.name!r} is not valid JSON ({exc.msg})") from None
        if self.kind in ("number", "integer"):
            number = _number(text)
            if number is not None:
                return int(number) if self.kind == "integer" and number == int(number) else number
        if self.kind == "boolean":
            if text.lower() in TRUE_WORDS:
                return True
            if text.lower() in FALSE_WORDS:
                return False
        return value

    def check(self, value: Any) -> tuple[Any, str | None]:
        """(value coerced to the field's type, None) or (value, the problem)."""
        if self.kind in ("number", "integer"):
            number = _number(value)
            if self.kind == "integer":
                if number is None or number != int(number) or (self.minimum is not None and number < self.minimum):
                    what = "a non-negative integer" if self.minimum == 0 else "an integer"
                    return value, f"{self.name} must be {what}, got {value!r}"
                return int(number), None
            if number is None or (self.bounds and not self.bounds[0] < number < self.bounds[1]):
                where = f" between {self.bounds[0]:g} and {self.bounds[1]:g}" if self.bounds else ""
                return value, f"{self.name} must be a number{where}, got {value!r}"
            return number, None
        if self.kind == "text":
            if self.choices:
                text = str(value).strip().lower()
                if text not in self.choices:
                    return value, f"{self.name} {value!r} is not one of {', '.join(self.choices)}"
                return text, None
            if not isinstance(value, str) or not value.strip():
                return value, f"{self.name} must be non-empty text"
            return value, None
        if self.kind == "boolean" and not isinstance(value, bool):
            return value, f"{self.name} must be true or false, got {value!r}"
        if self.kind == "object" and not isinstance(value, dict):
            return value, f"{self.name} must be an object"
        if self.kind == "list" and not isinstance(value, list):
            return value, f"{self.name} must be a list"
        return value, None

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v not in (None, (), False)}


def _number(value) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


@dataclass
class ModelInput:
    """What the model gets for one sample: the opening messages, and a Toolbox in agent mode (None = single turn).
    render_keys lists the render spec keys of the images inside, for cache keys and the transcript."""

    messages: list
    toolbox: Any = None
    render_keys: list[str] = field(default_factory=list)


class Task(ABC):
    name: ClassVar[str]
    version: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str]
    roles: ClassVar[tuple[str, ...]]  # the case volumes this task reads, e.g. ("t1",) or ("t1", "t1c", "t2", "flair")
    # For co-registered contrasts: the role whose brain mask measures the defacing QC of every role of a case (a T1's
    # mask; those of T2/FLAIR/T1c can take in face tissue). None: each volume is measured with its own mask.
    brain_mask_role: ClassVar[str | None] = None
    truth_fields: ClassVar[tuple[TruthField, ...]] = ()  # the ground truth a case carries; () = none required
    phantoms: ClassVar[Any] = None  # a harness.phantoms.PhantomGenerator for the built-in sample cohort, or None
    modes: ClassVar[tuple[str, ...]] = ("single", "agent")
    # modes with no model: solve_direct computes the answer (the model column reads "algorithm:<task>")
    direct_modes: ClassVar[tuple[str, ...]] = ("direct",)
    default_mode: ClassVar[str] = "single"
    baseline: ClassVar[str]  # the model spec of the task's CPU baseline, e.g. "scripted:nph-evans"
    answer_schema: ClassVar[dict]  # harness.core.parsing schema of a parsed answer
    accuracy_metrics: ClassVar[tuple[Metric, ...]]  # answer vs ground truth, one value per sample
    fidelity_metrics: ClassVar[tuple[Metric, ...]]  # defaced answer vs original answer, one value per pair
    # Fidelity metrics with a `group` (e.g. a brain region) are also tabulated group x defacer on the leaderboard;
    # board_statistic: a cohort-level statistic of agreement() shown per defacer and against re-identification.
    board_statistic: ClassVar[SetStatistic | None] = None

    def identity(self) -> dict:
        return {"task": self.name, "version": self.version}

    @abstractmethod
    def build_input(self, case, volumes: Mapping[str, Any], mode: str) -> ModelInput:
        """Model input for one case in one mode (volumes: role -> Volume, already defaced by the condition)."""

    @abstractmethod
    def parse(self, answer: Any):
        """Raw answer (reply text, or what the agent submitted) -> harness.core.parsing.ParseResult."""

    def locate(self, answer: dict, volumes: Mapping[str, Any]) -> dict:
        """The parsed answer completed with facts of the case's geometry that the model cannot state itself (e.g. the
        world position of a picked slice), so that score() and compare() need nothing but answers and truth.
        Called by the runner after a successful parse; the default leaves the answer as it is."""
        return answer

    @abstractmethod
    def score(self, answer: dict, truth: dict) -> dict[str, float | None]:
        """Values of the accuracy metrics for one parsed answer (None = undefined for this case)."""

    @abstractmethod
    def compare(self, original: dict, defaced: dict) -> dict[str, float | None]:
        """Values of the fidelity metrics for one pair of parsed answers of the same case and model."""

    def set_statistic(self, metric: str) -> tuple[tuple[str, ...], Callable[[Any], float]]:
        """For a metric of kind "set": the per-sample score keys it is computed from, and a function of the
        (samples x keys) array of their values that gives the metric (e.g. macro-F1 from per-class TP/FP/FN)."""
        raise NotImplementedError(f"task {self.name} declares set metric {metric!r} but no set_statistic()")

    def compare_many(self, pairs: Sequence[tuple[dict, dict]]) -> list[dict[str, float | None]]:
        """compare() of each (original, defaced) pair; a task whose metric is faster in batches overrides it."""
        return [self.compare(o, d) for o, d in pairs]

    def agreement(self, pairs: Sequence[tuple[dict, dict]]) -> dict[str, Any]:
        """Set-level agreement between original and defaced answers (kappa, ICC, Bland-Altman...). JSON-able."""
        return {}

    def solve_direct(self, case, volumes: Mapping[str, Any], condition: str = "original", mode: str = "direct") -> dict:
        """The answer of one of the task's algorithmic routes (`mode`, one of its direct_modes that it lists in modes).
        condition: what the volumes are seen through ("original" or the defacer as typed), for a task whose answer
        the cohort gives per condition. Raises HarnessError for bad input (recorded as such, with the reason)."""
        raise NotImplementedError(f"task {self.name} has no direct route")

    # --- ground truth: how cohort sources read and check it ----------------------------------------------------
    def truth_from_columns(self, columns: Mapping[str, Any]) -> dict:
        """Truth from a flat row (CSV columns, participants.tsv, a table of reports): the columns named by the
        declared fields, converted from text. Raises ValueError naming a column that cannot be read."""
        truth = {}
        for f in self.truth_fields:
            value = columns.get(f.name)
            if value is not None and value != "":
                truth[f.name] = f.from_column(value)
        return truth

    def complete_truth(self, truth: dict) -> dict:
        """Fill truth the task can compute from what a case carries (e.g. from a segmentation in truth["masks"]);
        called before check_truth. Raises ValueError (or HarnessError) with the reason when it cannot."""
        return truth

    def check_truth(self, truth: Mapping[str, Any]) -> tuple[dict, list[str]]:
        """(truth with its required fields coerced, problems); no problems = the case is usable."""
        truth = dict(truth)
        required = [f for f in self.truth_fields if f.required]
        problems = [f"missing ground truth {f.name!r}" for f in required if truth.get(f.name) in (None, "")]
        if problems:
            return truth, problems
        for f in required:
            truth[f.name], problem = f.check(truth[f.name])
            if problem:
                problems.append(problem)
        return truth, problems

    def truth_available(self, fields, masks) -> bool:
        """Whether a source that offers these truth fields and masks gives every required field of this task."""
        return all(f.name in fields or (f.from_mask is not None and f.from_mask in masks)
                   for f in self.truth_fields if f.required)

    def brain_reference_role(self, case, role: str) -> str | None:
        """The role whose brain mask measures the defacing QC of `role` in this case, when it is another role
        (brain_mask_role); None: the volume's own mask. Part of the defacer cache key, so every stage asks here."""
        other = self.brain_mask_role
        return other if other not in (None, role) and other in case.volumes else None

    def brain_reference(self, case, role: str, cache_dir):
        """The volume of brain_reference_role (lazy when its hash is remembered under cache_dir), or None."""
        other = self.brain_reference_role(case, role)
        return None if other is None else case.load_remembered(other, cache_dir)

    def headline(self, truth: Mapping[str, Any]) -> str:
        """One line about a case's truth, for `harness data show` (default: the required fields)."""
        return "  ".join(f"{f.name} {truth.get(f.name)}" for f in self.truth_fields if f.required)

    def metrics(self) -> dict:
        return {"accuracy": [m.to_dict() for m in self.accuracy_metrics], "fidelity": [m.to_dict() for m in self.fidelity_metrics]}
