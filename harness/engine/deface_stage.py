"""Stage 1 of a run: every (volume, defacer) the remaining samples need, defaced once, in worker processes.

Defacing is CPU bound (registration, resampling), so it runs on the run's executor (a local process pool, or Ray
tasks across a cluster, each asking for what its defacer declares in `resources`); results land in the on-disk defacer
cache (content-addressed), and each (task, case, role, condition) gets one line in the run's QC log. A volume shared
by two tasks (tumor-slice and tumor-dx read the same cases) is defaced once. A refusal or a defacer bug becomes a
failed job with its reason; the samples that need it fail with that reason and the run goes on.
A task with co-registered contrasts names the role whose brain mask measures the QC of all of them
(Task.brain_mask_role, the T1 for the tumour tasks); its file travels with the job and its content hash is part of
the defacer cache key.
"""

from __future__ import annotations

import json
import time
from typing import Iterable

import defacers
from harness.core.errors import HarnessError
from harness.core.failures import FailureKind
from harness.core.hashing import canonical_json
from harness.engine.errors import FailFast
from harness.engine.grid import WorkItem


def deface_job(volume_path: str, modality: str, defacer_name: str, defacer_params: dict, cache_dir: str,
               brain_path: str | None = None) -> dict:
    """Worker: load one case volume (and the case volume whose brain mask measures its QC, if another) and deface it
    through the on-disk cache. Never raises."""
    from harness.imaging.io import load_volume
    from harness.imaging.io.lazy import remembered_volume

    t0 = time.perf_counter()

    def outcome(status: str, kind: str | None = None, message: str = "", result=None) -> dict:
        return {"status": status, "qc": result.qc if result else {}, "timings": result.timings if result else {},
                "computed": bool(result is not None and not result.from_cache), "seconds": time.perf_counter() - t0,
                "error": {"kind": kind, "message": message} if kind else None}

    try:
        # remembered: the next run finds this job done from the file's identity alone (see cached_job)
        volume = remembered_volume(volume_path, lambda: load_volume(volume_path, modality=modality), cache_dir, modality=modality)
        brain_reference = None if not brain_path else remembered_volume(
            brain_path, lambda: load_volume(brain_path, modality="MR"), cache_dir, modality="MR")
    except HarnessError as exc:
        return outcome("failed", FailureKind.BAD_INPUT, str(exc))
    try:
        result = defacers.deface_cached(defacers.get(defacer_name, **defacer_params), volume, cache_dir, brain_reference)
    except defacers.DefacerInputError as exc:  # a precomputed file missing or unreadable: bad input, not a refusal
        return outcome("failed", FailureKind.BAD_INPUT, str(exc))
    except HarnessError as exc:  # refusal: flipped, skull-stripped or non-head input, failed registration, missing tool
        return outcome("refused", FailureKind.DEFACER_REFUSED, str(exc))
    except Exception as exc:  # a defacer bug: recorded, the run goes on
        return outcome("failed", FailureKind.DEFACER_ERROR, f"{type(exc).__name__}: {exc}")
    return outcome("ok", result=result)


def cached_job(volume_path: str, modality: str, defacer_name: str, defacer_params: dict, cache_dir: str,
               brain_path: str | None = None) -> dict | None:
    """A job finished by an earlier run, found without reading the volumes (None: it goes to a worker)."""
    from harness.imaging.io.lazy import HashMemo

    t0 = time.perf_counter()
    memo = HashMemo(cache_dir)
    try:
        volume_hash = memo.content_hash(memo.key(volume_path, modality=modality))
        reference_hash = memo.content_hash(memo.key(brain_path, modality="MR")) if brain_path else None
    except OSError:
        return None
    if not volume_hash or (brain_path and not reference_hash):
        return None
    record = defacers.cached_record(defacers.get(defacer_name, **defacer_params), volume_hash, cache_dir, reference_hash)
    if not record:
        return None
    return {"status": "ok", "qc": record["qc"], "timings": record.get("timings", {}), "computed": False,
            "seconds": time.perf_counter() - t0, "error": None}


QC_FLAGS = (("nothing_changed", "identical to the original (nothing changed)"),
            ("resampled_from", "on another grid than the original (resampled onto it)"),
            ("face_measures", "without face measures (the template could not be placed)"))


def qc_warnings(done: Iterable[tuple[str, dict]]) -> list[str]:
    """One line per (condition, flag) for defaced volumes whose QC needs a look: (condition, qc) pairs in."""
    counts: dict[tuple[str, str], int] = {}
    for condition, qc in done:
        for key, what in QC_FLAGS:
            if qc.get(key):
                counts[(condition, what)] = counts.get((condition, what), 0) + 1
    return [f"{condition}: {n} volume{'s' if n > 1 else ''} {what}; see qc/defacer_qc.jsonl"
            for (condition, what), n in sorted(counts.items())]


class DefaceStage:
    """jobs(todo) plans, run(todo, store, progress) executes; `runs` counts defacings computed (cache misses)."""

    def __init__(self, ctx):
        self.ctx = ctx  # the Runner: its config, tasks, cohorts, defacers and cache folder
        self.runs = 0
        self.seconds = 0.0

    def jobs(self, todo: Iterable[WorkItem]) -> dict[tuple, list[tuple]]:
        """(volume file, condition, its parameters for this volume as JSON, brain reference file or "") -> the (task,
        case, role, condition) keys it serves. The parameters tell two precomputed files for one original apart (two
        manifests, one volume)."""
        jobs: dict[tuple, list[tuple]] = {}
        for item in todo:
            if item.is_reference:
                continue
            case = self.ctx.case(item.task, item.case_id)
            for role in self.ctx.tasks[item.task].roles:
                key = (item.task, item.case_id, role, item.condition)
                _, params = self.ctx.case_defacer_spec(item.condition, case, role)
                reference = self.ctx.brain_reference_file(item.task, case, role) or ""
                users = jobs.setdefault((str(case.volumes[role]), item.condition, canonical_json(params), str(reference)), [])
                if key not in users:
                    users.append(key)
        return jobs

    def run(self, todo: list[WorkItem], store, progress) -> dict[tuple, dict]:
        """(task, case, role, condition) -> job result, for every defaced volume the todo samples need."""
        jobs = self.jobs(todo)
        results: dict[tuple, dict] = {}
        if not jobs:
            return results
        args = {job: (job[0], self._modality(jobs[job][0]), self.ctx.defacer_specs[job[1]][0], json.loads(job[2]),
                      str(self.ctx.cache_dir), job[3] or None) for job in jobs}
        recorded = store.qc_keys()
        t0 = time.perf_counter()
        try:
            # jobs an earlier run finished are answered here: starting worker processes costs seconds
            done = {job: cached_job(*a) for job, a in args.items()}
            self._collect(((job, res) for job, res in done.items() if res is not None), jobs, results, store, recorded, progress)
            todo = {job: a for job, a in args.items() if done[job] is None}
            if todo:
                executor = self.ctx.executor
                executor.on_retry = lambda job, why: progress.log(f"defacing {job[0]} with {job[1]} was lost with its node ({why}); running it again")
                ran = executor.map(deface_job, todo, resources=lambda job: self.ctx.defacers[job[1]].resources)
                self._collect(((job, {**res, "placement": placement.to_dict()}) for job, res, placement in ran),
                              jobs, results, store, recorded, progress)
        finally:
            self.seconds += time.perf_counter() - t0
        for line in qc_warnings((condition, results[users[0]]["qc"]) for (_, condition, _, _), users in jobs.items() if users[0] in results):
            progress.log(line)
        return results

    def _modality(self, key: tuple) -> str:
        task, case_id, role, _ = key
        return self.ctx.case(task, case_id).source(role)[1]

    def _collect(self, done: Iterable[tuple], jobs: dict, results: dict, store, recorded: set, progress) -> None:
        for job, res in done:
            self.runs += int(res["computed"])
            for key in jobs[job]:
                results[key] = res
                task, case_id, role, condition = key
                if key not in recorded:
                    defacer = self.ctx.case_defacer(condition, self.ctx.case(task, case_id), role)
                    measured_with = res["qc"].get("brain_mask_from") == "reference"  # not when on another grid
                    brain_role = self.ctx.tasks[task].brain_mask_role if measured_with else role
                    store.append_qc({"task": task, "case_id": case_id, "role": role, "condition": condition,
                                     "brain_mask_role": brain_role, "defacer": defacer.identity, "status": res["status"],
                                     "error": res["error"], "seconds": round(res["seconds"], 3), "qc": res["qc"],
                                     **({"ran_on": res["placement"]} if "placement" in res else {})})
                    recorded.add(key)
            progress.advance("deface", failed=res["status"] != "ok")
            if res["status"] != "ok" and self.ctx.cfg.fail_fast:
                first = jobs[job][0]
                raise FailFast(f"defacing {first[1]} ({first[2]}) with {job[1]} failed: {res['error']['message']}")

