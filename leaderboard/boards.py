"""Runs -> boards: which runs may be merged into one task's leaderboard, and the manifest facts a board shows.

Two runs are comparable for a task when their manifests agree on the fingerprint: harness version, the task's
identity (name, version, render specs and whatever else the task registry reports), the cohort's content hash
and the render config. Runs that differ are refused (ComparabilityError names the runs and the differing fields)
or, when asked, put on separate boards named task--<fingerprint>.

Manifest keys read (harness.store.manifest.build_manifest): harness.version, harness.git_sha, tasks (name -> identity,
or a list of names), cohort ({name, description, size, hash|content_hash|sha256}, or task -> such a dict),
models (name -> {id, revision}), defacers (name -> {name, version, params}), config.render, argv, started_at,
ended_at.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from harness.store.run_store import RunData
from harness.core.hashing import content_key
from harness.core.errors import HarnessError
from leaderboard.anonymize import clean

_COHORT_HASH_KEYS = ("hash", "content_hash", "sha256", "cohort_hash", "content_key")
_PATHLIKE = {"path", "root", "dir", "directory", "source", "manifest", "location", "url"}


class ComparabilityError(HarnessError):
    """Runs that cannot share a board; says which runs differ in what and how to proceed."""


@dataclass
class Board:
    name: str  # file-name-safe, the task's name unless runs had to be separated
    task: str
    fingerprint: dict
    runs: list[RunData] = field(default_factory=list)

    @property
    def cohort_hash(self) -> str:
        return str(self.fingerprint.get("cohort") or "")


def _task_identity(manifest: dict, task: str) -> dict:
    """The task's identity in a run's manifest, without the run's mode: a board has a row per model x mode x defacer
    and pairs samples within a mode, so runs of one task in different modes (an agent run, a direct run, a labels
    run) share a board."""
    tasks = manifest.get("tasks")
    if isinstance(tasks, dict) and isinstance(tasks.get(task), dict):
        return {k: v for k, v in tasks[task].items() if k != "mode"}
    return {}


def cohort_of(manifest: dict, task: str) -> dict:
    cohort = manifest.get("cohort")
    if isinstance(cohort, dict) and isinstance(cohort.get(task), dict):
        return cohort[task]
    return cohort if isinstance(cohort, dict) else {}


def _cohort_hash(cohort: dict) -> str:
    for key in _COHORT_HASH_KEYS:
        if isinstance(cohort.get(key), str) and cohort[key]:
            return cohort[key]
    # No declared hash: the cohort's description without where it lives on this machine.
    rest = {k: v for k, v in cohort.items() if k.lower() not in _PATHLIKE}
    return content_key(cohort=rest)[:16] if rest else ""


def fingerprint(manifest: dict, task: str) -> dict:
    harness = manifest.get("harness") if isinstance(manifest.get("harness"), dict) else {}
    config = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
    return {"harness_version": str(harness.get("version", "")), "task": _task_identity(manifest, task),
            "cohort": _cohort_hash(cohort_of(manifest, task)), "render": config.get("render")}


def split_boards(runs: list[RunData], separate: bool = False) -> list[Board]:
    """One board per task (per task and fingerprint when `separate`); ComparabilityError when runs of one task
    differ and `separate` is False."""
    by_task: dict[str, dict[str, Board]] = defaultdict(dict)
    for run in runs:
        for task in sorted({s.task for s in run.samples}):
            fp = fingerprint(run.manifest, task)
            key = content_key(fp=fp)[:8]
            board = by_task[task].setdefault(key, Board(task, task, fp))
            board.runs.append(run)
    boards = []
    for task, variants in sorted(by_task.items()):
        if len(variants) > 1 and not separate:
            raise ComparabilityError(_explain(task, list(variants.values())))
        for key, board in variants.items():
            if len(variants) > 1:
                board.name = f"{task}--{key}"
            boards.append(board)
    return boards


def _explain(task: str, boards: list[Board]) -> str:
    first = boards[0].fingerprint
    fields = sorted({k for b in boards[1:] for k in first if b.fingerprint.get(k) != first.get(k)})
    lines = [f"runs of task {task} are not comparable: they differ in {', '.join(fields)}"]
    for b in boards:
        shown = {k: b.fingerprint.get(k) for k in fields}
        lines.append(f"  {', '.join(r.directory.name for r in b.runs)}: {clean(shown)}")
    lines.append("build them separately, or pass --separate to put each variant on its own board")
    return "\n".join(lines)


def _identities(manifests: list[dict], key: str) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for m in manifests:
        entry = m.get(key)
        if isinstance(entry, dict):
            for name, ident in entry.items():
                out.setdefault(str(name), ident if isinstance(ident, dict) else {"id": ident})
        elif isinstance(entry, list):
            for name in entry:
                out.setdefault(str(name.get("name", name)) if isinstance(name, dict) else str(name),
                               name if isinstance(name, dict) else {})
    return out


def _model_fact(ident: dict) -> dict:
    model_id = ident.get("id") or ident.get("model") or ident.get("name") or ""
    model_id = str(model_id)
    if model_id.startswith(("/", "~", ".")) or "\\" in model_id:
        model_id = "local:" + Path(model_id).name  # a local folder: its name only
    return {"id": model_id, "revision": ident.get("revision"), "backend": ident.get("backend")}


def board_facts(board: Board, models: set[str], defacers: set[str], n_cases: int) -> dict:
    """The manifest facts shown on a board's page, cleaned of secrets and local paths."""
    manifests = [r.manifest for r in board.runs]
    harness = [m.get("harness") for m in manifests if isinstance(m.get("harness"), dict)]
    model_ids = _identities(manifests, "models")
    defacer_ids = _identities(manifests, "defacers")
    cohort = cohort_of(manifests[0], board.task)
    commands = []
    for m in manifests:
        argv = m.get("argv")
        if isinstance(argv, list) and argv:
            argv = [Path(str(argv[0])).name] + [str(a) for a in argv[1:]]
            cmd = " ".join(_quote(a) for a in argv)
            if cmd not in commands:
                commands.append(cmd)
    starts = sorted(_minute(m["started_at"]) for m in manifests if m.get("started_at"))
    ends = sorted(_minute(m["ended_at"]) for m in manifests if m.get("ended_at"))
    return clean({
        "harness_versions": sorted({str(h.get("version")) for h in harness if h.get("version")}),
        "git_commits": sorted({str(h.get("git_sha"))[:12] for h in harness if h.get("git_sha")}),
        "task": {"name": board.task, **{k: v for k, v in board.fingerprint["task"].items() if k != "task"}},
        "models": {name: _model_fact(model_ids.get(name, {})) for name in sorted(models)},
        "defacers": {name: {"version": defacer_ids.get(name, {}).get("version"),
                            "params": defacer_ids.get(name, {}).get("params")} for name in sorted(defacers)},
        "cohort": {"name": cohort.get("name"), "description": cohort.get("description"),
                   "size": cohort.get("size"), "cases_seen": n_cases, "hash": board.cohort_hash[:16]},
        "runs": len(board.runs),
        "started": starts[0] if starts else None,
        "ended": ends[-1] if ends else None,
        "commands": commands,
    })


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def _minute(stamp) -> str:
    """2026-11-23T03:36:14.141918Z -> 2026-11-23 03:36 UTC (unparsable stamps are shown as they are)."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return str(stamp)
