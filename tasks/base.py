"""The task contract: how a case becomes model input, how an answer is parsed and scored, and which metrics a task
declares (the leaderboard's columns come from these declarations, not from a hand-edited schema).

A task is one module in tasks/ plus one prompt folder prompts/<task>/ (Jinja templates, no prompt text in Python).
Adding a task = write the module (a Task subclass), its templates, register it in tasks/__init__.py.

Flow for one sample (task, case, condition, model, mode), driven by harness's runner:
  volumes = the case's volumes, defaced by the condition's defacer
  inp = task.build_input(case, volumes, mode)          -> messages (+ a Toolbox in agent mode)
  result = run_single_turn / run_agent(model, inp...)   -> raw answer text or submitted answer
  parsed = task.parse(result.answer)                    -> ParseResult (unparsable is recorded, never scored)
  scores = task.score(parsed.value, case.truth)         -> {metric: value} for the declared accuracy metrics
Then per pair (same case, model, mode; original vs a defacer):
  task.compare(original_answer, defaced_answer)         -> {metric: value} for the declared fidelity metrics
  task.agreement(pairs)                                  -> set-level agreement (kappa, ICC, Bland-Altman, ...)
The "direct" mode has no model: task.solve_direct(case, volumes) computes the answer itself (e.g. Evans ratio by
segmentation), so algorithmic routes go through the same scoring and pairing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Mapping, Sequence

MetricKind = Literal["continuous", "binary", "categorical"]


@dataclass(frozen=True)
class Metric:
    """A declared metric. kind decides the paired statistics: continuous -> bootstrap CI + Wilcoxon signed-rank,
    binary -> McNemar, categorical -> Cohen's kappa. group splits reports (e.g. intracranial vs extracranial)."""

    name: str
    description: str
    higher_is_better: bool
    kind: MetricKind = "continuous"
    unit: str = ""
    group: str | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "higher_is_better": self.higher_is_better,
                "kind": self.kind, "unit": self.unit, "group": self.group}


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
    modes: ClassVar[tuple[str, ...]] = ("single", "agent")
    default_mode: ClassVar[str] = "single"
    baseline: ClassVar[str]  # the model spec of the task's CPU baseline, e.g. "scripted:nph-evans"
    answer_schema: ClassVar[dict]  # harness.core.parsing schema of a parsed answer
    accuracy_metrics: ClassVar[tuple[Metric, ...]]  # answer vs ground truth, one value per sample
    fidelity_metrics: ClassVar[tuple[Metric, ...]]  # defaced answer vs original answer, one value per pair

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

    def agreement(self, pairs: Sequence[tuple[dict, dict]]) -> dict[str, Any]:
        """Set-level agreement between original and defaced answers (kappa, ICC, Bland-Altman...). JSON-able."""
        return {}

    def solve_direct(self, case, volumes: Mapping[str, Any]) -> dict:
        """The answer of the task's algorithmic route (mode "direct"); only tasks listing "direct" in modes."""
        raise NotImplementedError(f"task {self.name} has no direct route")

    def metrics(self) -> dict:
        return {"accuracy": [m.to_dict() for m in self.accuracy_metrics], "fidelity": [m.to_dict() for m in self.fidelity_metrics]}
