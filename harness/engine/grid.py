"""Grid planning: task x case x condition x model x mode -> work items, each with a stable sample id.

A sample id is a content key of everything that decides a sample's outcome: task identity, case id, the
condition's defacer identity (name, version, params; for precomputed:NAME also the sha256 of that case's files),
model identity and mode. The same item planned again (a
re-run, a resumed run, the same defacer asked for twice) gets the same id, so it is deduplicated and skipped
when finished; a changed defacer version or model revision gets a new id and is run again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from harness.core.hashing import content_key
from harness.core.sample import REFERENCE


@dataclass(frozen=True)
class Condition:
    """A defacing condition: the defacer's name and identity (name, version, params), as its registry reports."""

    name: str
    identity: Mapping = field(default_factory=dict, compare=False, hash=False)
    # case id -> the identity for that case when it differs (precomputed:NAME carries each case's file hash)
    per_case: Mapping[str, Mapping] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class WorkItem:
    sample_id: str
    task: str
    case_id: str
    condition: str
    model: str
    mode: str
    defacer: Mapping = field(compare=False, hash=False)  # the condition's identity, copied into the Sample

    @property
    def is_reference(self) -> bool:
        return self.condition == REFERENCE


def sample_id(task_identity: Mapping, case_id: str, defacer_identity: Mapping, model_identity: Mapping, mode: str) -> str:
    """The stable id of one sample: a content key of what decides its outcome (32 hex characters)."""
    return content_key(kind="sample", task=dict(task_identity), case=str(case_id), defacer=dict(defacer_identity),
                       model=dict(model_identity), mode=str(mode))[:32]


@dataclass
class Grid:
    items: list[WorkItem]
    duplicates: int  # planned items dropped because an identical one was already in the grid


def plan_grid(
    cases: Mapping[str, Iterable[str]],
    conditions: Sequence[Condition],
    models: Sequence[str],
    modes: Sequence[str] = ("agent",),
    *,
    task_identities: Mapping[str, Mapping] | None = None,
    model_identities: Mapping[str, Mapping] | None = None,
) -> Grid:
    """All work items, deduplicated by sample id, in a stable order: task, case, model, mode, then condition with
    the reference ("original") first so each case's pair completes together.

    cases: task name -> its case ids. task_identities / model_identities: what makes a task or model distinct
    beyond its name (version, prompt hash, revision); default {"name": name}.
    """
    if not any(c.name == REFERENCE for c in conditions):
        raise ValueError(f"the grid needs the {REFERENCE!r} reference condition; every defaced sample is paired with it")
    by_name: dict[str, dict] = {}
    for cond in conditions:
        identity = dict(cond.identity) or {"name": cond.name}
        if by_name.setdefault(cond.name, identity) != identity:
            raise ValueError(f"condition {cond.name!r} given twice with different identities")
    ordered = sorted(conditions, key=lambda c: c.name != REFERENCE)  # stable: keeps the caller's order otherwise
    task_ids = task_identities or {}
    model_ids = model_identities or {}
    seen: set[str] = set()
    items: list[WorkItem] = []
    duplicates = 0
    for task, case_ids in cases.items():
        task_identity = task_ids.get(task) or {"name": task}
        for case_id in case_ids:
            for model in models:
                model_identity = model_ids.get(model) or {"name": model}
                for mode in modes:
                    for cond in ordered:
                        defacer = dict(cond.per_case.get(str(case_id)) or cond.identity) or {"name": cond.name}
                        sid = sample_id(task_identity, case_id, defacer, model_identity, mode)
                        if sid in seen:
                            duplicates += 1
                            continue
                        seen.add(sid)
                        items.append(WorkItem(sid, task, str(case_id), cond.name, model, mode, defacer))
    return Grid(items, duplicates)


@dataclass
class ResumePlan:
    todo: list[WorkItem]  # items to run now, in grid order
    done: int  # finished earlier (ok or unparsable): skipped
    retried: int  # failed earlier and run again (retry_failed=True)
    skipped_failed: int  # failed earlier and left as they are (retry_failed=False)

    @property
    def total(self) -> int:
        return len(self.todo) + self.done + self.skipped_failed


def resume_plan(items: Sequence[WorkItem], store, retry_failed: bool = False) -> ResumePlan:
    """What is left to do against a RunStore (or anything with status_of(sample_id) -> "ok"|"unparsable"|"failed"|None)."""
    todo: list[WorkItem] = []
    done = retried = skipped_failed = 0
    for item in items:
        status = store.status_of(item.sample_id)
        if status in ("ok", "unparsable"):
            done += 1
        elif status == "failed":
            if retry_failed:
                retried += 1
                todo.append(item)
            else:
                skipped_failed += 1
        else:
            todo.append(item)
    return ResumePlan(todo, done, retried, skipped_failed)


def stage_totals(items: Iterable[WorkItem]) -> dict[str, int]:
    """How many units each stage has for these items, for progress bars: one deface per (task, case, defaced
    condition), one render per (task, case, condition), one model call and one scoring per item."""
    items = list(items)
    return {
        "deface": len({(i.task, i.case_id, i.condition) for i in items if not i.is_reference}),
        "render": len({(i.task, i.case_id, i.condition) for i in items}),
        "model": len(items),
        "score": len(items),
    }
