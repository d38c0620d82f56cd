"""Stage 1 of a run: every (volume, defacer) the remaining samples need, defaced once, in worker processes.

Defacing is CPU bound (registration, resampling), so it runs in a process pool; results land in the on-disk defacer
cache (content-addressed), and each (task, case, role, condition) gets one line in the run's QC log. A volume shared
by two tasks (tumor-slice and tumor-dx read the same cases) is defaced once. A refusal or a defacer bug becomes a
failed job with its reason; the samples that need it fail with that reason and the run goes on.
A task with co-registered contrasts names the role whose brain mask measures the QC of all of them
(Task.brain_mask_role, the T1 for the tumour tasks); its file travels with the job and its content hash is part of
the defacer cache key.
"""

from __future__ import annotations

import time
from typing import Iterable

import defacers
from harness.core.errors import HarnessError
from harness.core.failures import FailureKind
from harness.engine.errors import FailFast
from harness.engine.grid import WorkItem
from harness.engine.workers import worker_pool


def deface_job(volume_path: str, defacer_name: str, defacer_params: dict, cache_dir: str, brain_path: str | None = None) -> dict:
    """Worker: load one case volume (and the case volume whose brain mask measures its QC, if another) and deface it
    through the on-disk cache. Never raises."""
    from harness.imaging.io import load_volume

    t0 = time.perf_counter()

    def outcome(status: str, kind: str | None = None, message: str = "", result=None) -> dict:
        return {"status": status, "qc": result.qc if result else {}, "timings": result.timings if result else {},
                "computed": bool(result is not None and not result.from_cache), "seconds": time.perf_counter() - t0,
                "error": {"kind": kind, "message": message} if kind else None}

    try:
        volume = load_volume(volume_path)
        brain_reference = load_volume(brain_path) if brain_path else None
    except HarnessError as exc:
        return outcome("failed", FailureKind.BAD_INPUT, str(exc))
    try:
        result = defacers.deface_cached(defacers.get(defacer_name, **defacer_params), volume, cache_dir, brain_reference)
    except HarnessError as exc:  # refusal: flipped, skull-stripped or non-head input, failed registration, missing tool
        return outcome("refused", FailureKind.DEFACER_REFUSED, str(exc))
    except Exception as exc:  # a defacer bug: recorded, the run goes on
        return outcome("failed", FailureKind.DEFACER_ERROR, f"{type(exc).__name__}: {exc}")
    return outcome("ok", result=result)


class DefaceStage:
    """jobs(todo) plans, run(todo, store, progress) executes; `runs` counts defacings computed (cache misses)."""

    def __init__(self, ctx):
        self.ctx = ctx  # the Runner: its config, tasks, cohorts, defacers and cache folder
        self.runs = 0
        self.seconds = 0.0

    def jobs(self, todo: Iterable[WorkItem]) -> dict[tuple, list[tuple]]:
        """(volume file, condition, brain reference file or "") -> the (task, case, role, condition) keys it serves."""
        jobs: dict[tuple, list[tuple]] = {}
        for item in todo:
            if item.is_reference:
                continue
            case = self.ctx.case(item.task, item.case_id)
            brain_role = self.ctx.tasks[item.task].brain_mask_role
            for role in self.ctx.tasks[item.task].roles:
                key = (item.task, item.case_id, role, item.condition)
                reference = case.volumes.get(brain_role, "") if brain_role not in (None, role) else ""
                users = jobs.setdefault((str(case.volumes[role]), item.condition, str(reference)), [])
                if key not in users:
                    users.append(key)
        return jobs

    def run(self, todo: list[WorkItem], store, progress) -> dict[tuple, dict]:
        """(task, case, role, condition) -> job result, for every defaced volume the todo samples need."""
        jobs = self.jobs(todo)
        results: dict[tuple, dict] = {}
        if not jobs:
            return results
        args = {job: (job[0], *self.ctx.defacer_specs[job[1]], str(self.ctx.cache_dir), job[2] or None) for job in jobs}
        recorded = store.qc_keys()
        t0 = time.perf_counter()
        workers = min(self.ctx.cfg.workers, len(jobs))
        try:
            if workers <= 0:
                self._collect(((job, deface_job(*a)) for job, a in args.items()), jobs, results, store, recorded, progress)
            else:
                with worker_pool(workers) as pool:
                    futures = {job: pool.submit(deface_job, *a) for job, a in args.items()}
                    self._collect(((job, f.result()) for job, f in futures.items()), jobs, results, store, recorded, progress)
        finally:
            self.seconds += time.perf_counter() - t0
        return results

    def _collect(self, done: Iterable[tuple], jobs: dict, results: dict, store, recorded: set, progress) -> None:
        for job, res in done:
            self.runs += int(res["computed"])
            for key in jobs[job]:
                results[key] = res
                task, case_id, role, condition = key
                if key not in recorded:
                    measured_with = res["qc"].get("brain_mask_from") == "reference"  # not when on another grid
                    brain_role = self.ctx.tasks[task].brain_mask_role if measured_with else role
                    store.append_qc({"task": task, "case_id": case_id, "role": role, "condition": condition,
                                     "brain_mask_role": brain_role,
                                     "defacer": self.ctx.defacers[condition].identity, "status": res["status"],
                                     "error": res["error"], "seconds": round(res["seconds"], 3), "qc": res["qc"]})
                    recorded.add(key)
            progress.advance("deface", failed=res["status"] != "ok")
            if res["status"] != "ok" and self.ctx.cfg.fail_fast:
                first = jobs[job][0]
                raise FailFast(f"defacing {first[1]} ({first[2]}) with {job[1]} failed: {res['error']['message']}")

