"""Stage 2 of a run: each work item -> one Sample (render, ask the model or the agent, parse, score), appended to the
run store as soon as it is finished, so a killed run loses only what was in flight.

One asyncio task per sample, bounded by the run's concurrency; loading and rendering run in threads, model calls
are awaited (each backend also limits its own endpoint). A failure (unreadable volume, defacer refusal, model
error, task bug) becomes a failed sample with its reason; an unparsable answer is recorded as such, never scored.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict

import defacers
from harness.core.failures import FailureKind
from harness.core.redact import redact_text
from harness.core.sample import Sample
from harness.agent.loop import run_agent, run_single_turn
from harness.engine.errors import FailFast
from harness.engine import sample_jobs
from harness.engine.grid import WorkItem
from harness.models import ResponseCache, create_model

VOLUME_CACHE_SIZE = 16  # loaded (and defaced) volumes kept: a case's volumes are read once per condition


class SampleStage:
    def __init__(self, ctx):
        self.ctx = ctx  # the Runner: its config, tasks, cohorts, defacers, models and cache folder
        self.model_calls = 0
        self.seconds = {"render": 0.0, "model": 0.0, "score": 0.0}
        self._volumes: OrderedDict = OrderedDict()
        self._volumes_lock = threading.Lock()

    def volumes_for(self, item: WorkItem) -> dict:
        """role -> Volume as the condition shows it (defaced volumes come from the defacer cache). Volumes whose
        content hash is remembered are lazy: a sample whose images are all in the render cache reads no voxels."""
        task = self.ctx.tasks[item.task]
        case = self.ctx.case(item.task, item.case_id)
        out = {}
        for role in task.roles:
            # the case's own volume is shared by every condition of the case (the defacer cache is keyed by its hash)
            original = self._kept((item.task, item.case_id, role, None), lambda: case.load_remembered(role, self.ctx.cache_dir))
            if item.is_reference:
                out[role] = original
            else:
                defacer = self.ctx.case_defacer(item.condition, case, role)
                # the brain reference is part of the defacer cache key: pass what the deface stage passed
                brain_role = self.ctx.tasks[item.task].brain_reference_role(case, role)
                reference = None if brain_role is None else self._kept(
                    (item.task, item.case_id, brain_role, None), lambda: case.load_remembered(brain_role, self.ctx.cache_dir))
                out[role] = self._kept((item.task, item.case_id, role, item.condition),
                                       lambda: defacers.defaced_volume(defacer, original, self.ctx.cache_dir, reference))
        return out

    def _kept(self, key: tuple, make):
        """make(), remembered under key among the last VOLUME_CACHE_SIZE volumes."""
        with self._volumes_lock:
            if key in self._volumes:
                self._volumes.move_to_end(key)
                return self._volumes[key]
        volume = make()
        with self._volumes_lock:
            self._volumes[key] = volume
            while len(self._volumes) > VOLUME_CACHE_SIZE:
                self._volumes.popitem(last=False)
        return volume

    def _timed(self, timings: dict, stage: str, since: float) -> None:
        timings[stage] = time.perf_counter() - since
        self.seconds[stage] += timings[stage]

    async def run_item(self, item: WorkItem, models: dict, deface_results: dict) -> Sample:
        cfg = self.ctx.cfg
        task = self.ctx.tasks[item.task]
        case = self.ctx.case(item.task, item.case_id)
        timings: dict[str, float] = {}
        base = dict(sample_id=item.sample_id, task=item.task, case_id=item.case_id, condition=item.condition,
                    model=item.model, mode=item.mode, defacer=dict(item.defacer))

        placements: dict = {}  # part -> where it ran, for parts that ran as cluster jobs

        def failed(kind: str, message: str, **extra) -> Sample:
            return Sample(**base, status="failed", error={"kind": kind, "message": redact_text(message)[:2000]}, timings=timings,
                          ran_on=placements, **extra)

        if not item.is_reference:
            for role in task.roles:
                res = deface_results.get((item.task, item.case_id, role, item.condition))
                if res is not None and res["status"] != "ok":
                    return failed(res["error"]["kind"], f"{role}: {res['error']['message']}")
        t0 = time.perf_counter()
        prepared = await self._part(item, case, sample_jobs.render, sample_jobs.render_job, placements, "render", item.mode)
        if "failed" in prepared:
            return failed(*prepared["failed"])
        inp = prepared["input"]
        self._timed(timings, "render", t0)
        t1 = time.perf_counter()
        transcript: list = []
        tokens: dict = {}
        if item.mode in self.ctx.tasks[item.task].direct_modes:
            solved = await self._part(item, case, sample_jobs.solve, sample_jobs.solve_job, placements, "solve",
                                      item.condition, item.mode)
            if "failed" in solved:
                return failed(*solved["failed"])
            raw = solved["raw"]
        else:
            model = models[item.model]
            if inp.toolbox is not None:
                result = await run_agent(model, inp.messages, inp.toolbox, budget=cfg.budget, sampling=cfg.sampling)
            else:
                result = await run_single_turn(model, inp.messages, sampling=cfg.sampling, timeout_s=cfg.budget.max_wall_s)
            transcript = result.transcript
            tokens = {"prompt": result.usage.prompt_tokens, "completion": result.usage.completion_tokens}
            if not result.ok:
                self._timed(timings, "model", t1)
                return failed(result.failure, result.failure_detail or result.failure, transcript=transcript, tokens=tokens)
            raw = result.answer
        self._timed(timings, "model", t1)
        t2 = time.perf_counter()
        cache_keys = {"render": list(inp.render_keys) if inp else [], "volumes": prepared["volume_keys"]}
        parsed = task.parse(raw)
        if not parsed.ok:
            timings["score"] = time.perf_counter() - t2
            return Sample(**base, status="unparsable", error={"kind": FailureKind.UNPARSABLE, "message": redact_text(str(parsed.error))[:2000]},
                          timings=timings, tokens=tokens, transcript=transcript, cache_keys=cache_keys, ran_on=placements)
        scored = await self._part(item, case, sample_jobs.score, sample_jobs.score_job, placements, "score", parsed.value)
        if "failed" in scored:
            return failed(*scored["failed"], transcript=transcript, tokens=tokens)
        answer, scores = scored["answer"], scored["scores"]
        self._timed(timings, "score", t2)
        return Sample(**base, status="ok", answer=answer, scores=scores, timings=timings, tokens=tokens,
                      transcript=transcript, cache_keys=cache_keys, ran_on=placements)

    async def _part(self, item: WorkItem, case, here, job, placements: dict, name: str, *args) -> dict:
        """One part of a sample (harness.engine.sample_jobs): in a thread here, with the volumes kept in memory, or
        as a job on the cluster (--executor ray; not for agent mode, whose tools need the volumes between turns),
        its node recorded in `placements`."""
        task = self.ctx.tasks[item.task]
        reraise = self.ctx.cfg.fail_fast
        executor = self.ctx.executor
        if executor is None or not executor.remote or item.mode == "agent":
            if name == "score":  # in the event loop, one at a time, as before: a metric model need not be thread-safe
                return here(task, case, lambda: self.volumes_for(item), *args, reraise)
            return await asyncio.to_thread(here, task, case, lambda: self.volumes_for(item), *args, reraise)
        role_defacers = None if item.is_reference else {r: self.ctx.case_defacer(item.condition, case, r) for r in task.roles}
        out, placement = await executor.call(job, (task, case, role_defacers, *args, str(self.ctx.cache_dir), reraise),
                                             key=f"{name} {item.case_id} / {item.condition}")
        placements[name] = placement.to_dict()
        return out

    async def run(self, todo: list[WorkItem], store, progress, deface_results: dict) -> None:
        cfg = self.ctx.cfg
        cache = ResponseCache(self.ctx.cache_dir / "responses.sqlite")
        needed = {i.model for i in todo if i.mode not in self.ctx.tasks[i.task].direct_modes}
        models = {s: create_model(self.ctx.model_specs[s], cache=cache) for s in needed}
        sem = asyncio.Semaphore(max(1, cfg.concurrency))
        try:
            async def one(item: WorkItem):
                async with sem:
                    sample = await self.run_item(item, models, deface_results)
                store.append(sample)
                failed = sample.status == "failed"
                for stage in ("render", "model", "score"):
                    progress.advance(stage, failed=failed and stage == "model")
                if failed and cfg.fail_fast:
                    raise FailFast(f"sample {item.case_id} / {item.condition} / {item.model} failed: {sample.error['message']}")

            tasks = [asyncio.create_task(one(item)) for item in todo]
            try:
                for fut in asyncio.as_completed(tasks):
                    await fut
            except BaseException:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
        finally:
            # counted per model, not per sample: concurrent samples share a model, so per-sample deltas overlap
            self.model_calls += sum(getattr(m, "backend_calls", 0) for m in models.values())
            for m in models.values():
                await m.aclose()
            close = getattr(cache, "close", None)
            if close:
                close()
