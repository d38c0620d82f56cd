"""Whether a stored run may be continued by this harness: a resumed run must evaluate the same thing."""

from __future__ import annotations

import json

from harness.core.redact import redact
from harness.engine.errors import EvalError


def check_resumable(stored: dict, runner) -> None:
    """A resumed run must evaluate the same thing: the same tasks, models and defacers (a run resumed with another
    model would append that model's samples and be marked complete with the first model's missing samples never
    run), the same task versions and cohort content, and the same identity behind each defacer and model name (an
    upgraded defacer under the old name would mix two versions)."""
    asked = {"task": set(runner.tasks), "defacer": set(runner.defacers),
             "model": {s for specs in runner.models_by_task.values() for s in specs}}
    for kind, now in asked.items():
        then = stored.get(kind + "s")
        if isinstance(then, dict) and then and set(then) != now:
            raise EvalError(f"cannot resume: the run evaluated {kind}s {', '.join(sorted(then))}; this command asks for "
                            f"{', '.join(sorted(now))}. Resume with the run's own options (`harness runs show RUN` "
                            "prints the command) or start a new run")
    for kind, current in (("defacer", {n: d.identity for n, d in runner.defacers.items()}),
                          ("model", {s: runner.model_identity(s) for specs in runner.models_by_task.values() for s in specs})):
        old_ids = stored.get(kind + "s") or {}
        for name, identity in current.items():
            now = redact(json.loads(json.dumps(identity, default=str)))  # as the manifest stored it
            if name in old_ids and isinstance(old_ids[name], dict) and old_ids[name] != now:
                raise EvalError(f"cannot resume: {kind} {name} is not what the run used (then {old_ids[name]}, now {identity}); start a new run with --out")
    for name, task in runner.tasks.items():
        old = (stored.get("tasks") or {}).get(name)
        if old is not None and old.get("version") != task.version:
            raise EvalError(f"cannot resume: the run used {name} version {old.get('version')}, this harness has {task.version}; start a new run")
        old_cohort = (stored.get("cohort") or {}).get(name)
        new_hash = runner.cohorts[name].content_hash
        if old_cohort is not None and old_cohort.get("content_hash") != new_hash:
            raise EvalError(f"cannot resume: the cohort for {name} changed since the run started (content hash {old_cohort.get('content_hash', '?')[:12]} -> {new_hash[:12]}); start a new run")
