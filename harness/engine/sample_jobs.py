"""The parts of a sample around the model call: render a condition's model input (or run a task's direct algorithm),
and place and score a parsed answer. In this process they read volumes the sample stage keeps in memory; under
`--executor ray` the `*_job` forms run on any node of the cluster: plain functions of picklable arguments (the task,
the case, each role's defacer or None for the original) that read the volumes through the same content-addressed
caches under `cache_dir` as the driver, so only small results travel back. The model call, and the agent loop (its
tools need the volumes between model turns), stay on the driver.

Each returns a dict, or {"failed": (kind, message)} on failure, classified the same wherever it ran; with `reraise`
(--fail-fast) a task bug is raised instead, with its traceback.
"""

from __future__ import annotations

import traceback
from typing import Callable

import defacers
from harness.core.errors import HarnessError
from harness.core.failures import FailureKind
from harness.imaging.render_cache import use_render_cache
from harness.scoring.cache import use_cache_dir as use_score_cache_dir


def condition_volumes(task, case, role_defacers: dict | None, cache_dir) -> dict:
    """role -> Volume as the condition shows it: the case's own (None) or defaced through the defacer cache."""
    out = {}
    for role in task.roles:
        original = case.load_remembered(role, cache_dir)
        if role_defacers is None:
            out[role] = original
            continue
        reference = task.brain_reference(case, role, cache_dir)  # part of the defacer cache key, as in the deface stage
        out[role] = defacers.defaced_volume(role_defacers[role], original, cache_dir, reference)
    return out


def render(task, case, load_volumes: Callable[[], dict], mode: str, reraise: bool = False) -> dict:
    """{"input": ModelInput or None (direct mode), "volume_keys": role -> content key}; in this process also the
    volumes themselves."""
    try:
        volumes = load_volumes()
        inp = None if mode in task.direct_modes else task.build_input(case, volumes, mode)
    except HarnessError as exc:
        return {"failed": (FailureKind.BAD_INPUT, str(exc))}
    except Exception as exc:
        if reraise:
            raise
        return {"failed": (FailureKind.TASK_ERROR, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}")}
    return {"input": inp, "volumes": volumes, "volume_keys": {r: v.content_hash[:16] for r, v in volumes.items()}}


def solve(task, case, load_volumes: Callable[[], dict], condition: str, mode: str, reraise: bool = False) -> dict:
    """{"raw": answer} from the task's own algorithm (one of its direct modes) under `condition`."""
    try:
        return {"raw": task.solve_direct(case, load_volumes(), condition, mode)}
    except HarnessError as exc:
        return {"failed": (FailureKind.BAD_INPUT, str(exc))}
    except Exception as exc:
        if reraise:
            raise
        return {"failed": (FailureKind.TASK_ERROR, f"{type(exc).__name__}: {exc}")}


def score(task, case, load_volumes: Callable[[], dict], value, reraise: bool = False) -> dict:
    """{"answer", "scores"}: the parsed answer placed in the volumes (task.locate), scored against the case's truth."""
    try:
        answer = task.locate(value, load_volumes())
        return {"answer": answer, "scores": task.score(answer, case.truth)}
    except Exception as exc:
        if reraise:
            raise
        return {"failed": (FailureKind.SCORE_ERROR, f"{type(exc).__name__}: {exc}")}


def render_job(task, case, role_defacers: dict | None, mode: str, cache_dir: str, reraise: bool = False) -> dict:
    use_render_cache(cache_dir)  # a node's worker process: the driver's render cache
    out = render(task, case, lambda: condition_volumes(task, case, role_defacers, cache_dir), mode, reraise)
    out.pop("volumes", None)  # voxels stay on the node
    return out


def solve_job(task, case, role_defacers: dict | None, condition: str, mode: str, cache_dir: str,
              reraise: bool = False) -> dict:
    return solve(task, case, lambda: condition_volumes(task, case, role_defacers, cache_dir), condition, mode, reraise)


def score_job(task, case, role_defacers: dict | None, value, cache_dir: str, reraise: bool = False) -> dict:
    use_score_cache_dir(cache_dir)
    return score(task, case, lambda: condition_volumes(task, case, role_defacers, cache_dir), value, reraise)
