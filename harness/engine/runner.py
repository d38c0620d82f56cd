"""The evaluation runner behind `harness eval`: plan the grid, deface, ask the models, score, store, summarise.

Stages and where they run:
- deface: every (task, case, role, defacer) the remaining samples need, in a process pool (CPU bound; results go to
  the on-disk defacer cache, QC lines to run_dir/qc/defacer_qc.jsonl);
- render + model + score: one asyncio task per sample, bounded by `concurrency`; loading and rendering run in
  threads, model calls are awaited (each backend also limits its own endpoint's concurrency);
- each finished sample is appended to samples.jsonl at once, so a killed run loses only what was in flight.
A failure (unreadable volume, defacer refusal, model error, task bug) becomes a failed sample with its reason;
the run goes on unless fail_fast is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import sys
import time
import traceback
from collections import OrderedDict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import defacers as defacer_registry
from harness.engine.agent import Budget, run_agent, run_single_turn
from harness.core.config import default_cache_dir
from harness.data import load_cohort
from harness.core.errors import HarnessError
from harness.engine.grid import REFERENCE, Condition, WorkItem, plan_grid, resume_plan, stage_totals
from harness.store.manifest import build_manifest
from harness.core.redact import redact, redact_text
from harness.models import ResponseCache, Sampling, create_model, resolve_model_spec, serve_model
from harness.models.scripted import scripted_revision
from harness.engine.progress import StageProgress
from harness.core.sample import Sample
from harness.store.run_store import RunStore, new_run_dir
from tasks import get_task

QC_FILE = "defacer_qc.jsonl"
DIRECT_PREFIX = "algorithm:"  # the model column of direct-mode samples, e.g. "algorithm:nph-evans"


class EvalError(HarnessError):
    pass


class FailFast(HarnessError):
    pass


@dataclass
class EvalConfig:
    tasks: list[str]
    defacers: list[str]
    models: list[str] = field(default_factory=list)  # empty: each task's scripted baseline
    cohort: str | None = None  # None: the built-in sample cohort
    mode: str | None = None  # None: each task's default mode
    limit: int | None = None
    out: Path = Path("runs")
    resume: Path | None = None
    concurrency: int = 8
    workers: int = 2  # processes for defacing; 0 = in this process
    cache_dir: Path | None = None
    fail_fast: bool = False
    retry_failed: bool = False
    quiet: bool | None = None
    config_file: Path | None = None
    base_url: str | None = None
    budget: Budget = field(default_factory=Budget)
    sampling: Sampling = field(default_factory=Sampling)
    seed: int = 0
    serve: bool = False  # start local model servers for the run (see Runner._start_servers)

    def to_manifest(self) -> dict:
        return {
            "tasks": self.tasks, "defacers": self.defacers, "models": self.models, "cohort": self.cohort,
            "mode": self.mode, "limit": self.limit, "concurrency": self.concurrency, "workers": self.workers,
            "retry_failed": self.retry_failed, "base_url": self.base_url,
            "budget": self.budget.__dict__, "sampling": self.sampling.to_dict(), "seed": self.seed,
        }


@dataclass
class EvalOutcome:
    run_dir: Path
    counts: dict
    failed: int
    summary: Any
    planned: int
    skipped_done: int
    model_calls: int = 0
    defacer_runs: int = 0
    stage_seconds: dict = field(default_factory=dict)
    wall_seconds: float = 0.0


def _param_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def parse_defacer_arg(text: str) -> tuple[str, dict]:
    """`reface`, `quickshear(buffer_mm=5)` or `external:cmd(command=tool {input} {output})` -> (name, params).
    The whole text is the condition's name in results, so two settings of one defacer stay apart."""
    text = text.strip()
    if not text.endswith(")") or "(" not in text:
        return text, {}
    name, _, inner = text[:-1].partition("(")
    params = {}
    for part in filter(None, (p.strip() for p in inner.split(","))):
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            raise EvalError(f"cannot read defacer parameter {part!r} in {text!r}; use NAME(key=value, ...)")
        params[key.strip()] = _param_value(value.strip())
    return name.strip(), params


# --- defacing in worker processes -------------------------------------------------------------------------------

def _deface_job(volume_path: str, defacer_name: str, defacer_params: dict, cache_dir: str) -> dict:
    """Worker: load one case volume and deface it through the on-disk cache. Never raises."""
    from harness.imaging.io import load_volume

    t0 = time.perf_counter()

    def outcome(status: str, kind: str | None = None, message: str = "", result=None) -> dict:
        return {"status": status, "qc": result.qc if result else {}, "timings": result.timings if result else {},
                "computed": bool(result is not None and not result.from_cache), "seconds": time.perf_counter() - t0,
                "error": {"kind": kind, "message": message} if kind else None}

    try:
        volume = load_volume(volume_path)
    except HarnessError as exc:
        return outcome("failed", "bad_input", str(exc))
    try:
        result = defacer_registry.deface_cached(defacer_registry.get(defacer_name, **defacer_params), volume, cache_dir)
    except HarnessError as exc:  # refusal: flipped, skull-stripped or non-head input, failed registration, missing tool
        return outcome("refused", "defacer_refused", str(exc))
    except Exception as exc:  # a defacer bug: recorded, the run goes on
        return outcome("failed", "defacer_error", f"{type(exc).__name__}: {exc}")
    return outcome("ok", result=result)


# --- the runner -------------------------------------------------------------------------------------------------

class Runner:
    def __init__(self, cfg: EvalConfig, argv: list[str] | None = None, console=None):
        self.cfg = cfg
        self.argv = argv
        self.console = console
        self.cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
        self.tasks = {name: get_task(name) for name in dict.fromkeys(cfg.tasks)}
        self.defacers = {REFERENCE: defacer_registry.get(REFERENCE)}
        for text in dict.fromkeys(cfg.defacers):
            if text != REFERENCE:
                name, params = parse_defacer_arg(text)
                self.defacers[text] = defacer_registry.get(name, **params)
        self.modes_by_task = {}
        for task_name, task in self.tasks.items():
            mode = cfg.mode or task.default_mode
            if mode not in task.modes:
                raise EvalError(f"task {task_name} has no {mode!r} mode; its modes: {', '.join(task.modes)}")
            self.modes_by_task[task_name] = mode
        self.model_specs: dict[str, Any] = {}
        self.models_by_task: dict[str, list[str]] = {}
        for task_name, task in self.tasks.items():
            if self.modes_by_task[task_name] == "direct":
                # no model answers in the direct route: the task's own algorithm is the "model" column
                self.models_by_task[task_name] = [f"{DIRECT_PREFIX}{task_name}"]
                continue
            specs = cfg.models or [task.baseline]
            self.models_by_task[task_name] = specs
            for spec in specs:
                if spec not in self.model_specs:
                    overrides = {} if spec.startswith("scripted:") else {"base_url": cfg.base_url}
                    self.model_specs[spec] = resolve_model_spec(spec, cfg.config_file, **overrides)
        self.cohorts = {}
        self._volumes: OrderedDict = OrderedDict()
        self.model_calls = 0
        self.defacer_runs = 0
        self.stage_seconds: dict[str, float] = {"deface": 0.0, "render": 0.0, "model": 0.0, "score": 0.0}

    # identities that decide sample ids and cache keys
    def model_identity(self, spec_text: str) -> dict:
        if spec_text.startswith(DIRECT_PREFIX):
            task = self.tasks[spec_text[len(DIRECT_PREFIX):]]
            return {"algorithm": task.name, "version": task.version}
        spec = self.model_specs[spec_text]
        revision = spec.revision
        if revision is None and spec.backend == "scripted":
            revision = scripted_revision(spec.model)  # a changed baseline gets new sample ids, not old answers
        return {"backend": spec.backend, "model": spec.model, "revision": revision, "base_url": spec.base_url}

    def plan(self) -> list[WorkItem]:
        items: list[WorkItem] = []
        conditions = [Condition(name, d.identity) for name, d in self.defacers.items()]
        for task_name, task in self.tasks.items():
            cohort = load_cohort(self.cfg.cohort, task_name, limit=self.cfg.limit, cache_dir=self.cache_dir,
                                 progress=self._cohort_progress(task_name))
            self.cohorts[task_name] = cohort
            if not cohort.cases:
                raise EvalError(f"cohort {cohort.name} has no usable cases for task {task_name}" + (f" ({len(cohort.problems)} problems, first: {cohort.problems[0][1]})" if cohort.problems else ""))
            specs = self.models_by_task[task_name]
            grid = plan_grid({task_name: [c.id for c in cohort.cases]}, conditions, specs, (self.modes_by_task[task_name],),
                             task_identities={task_name: task.identity()},
                             model_identities={s: self.model_identity(s) for s in specs})
            items.extend(grid.items)
        return items

    def _cohort_progress(self, task_name: str):
        def report(i: int, n: int, row) -> None:
            message = f"generating the built-in {task_name} sample cohort (first use only): case {i}/{n}"
            if self.console is not None:
                self.console.print(message, highlight=False)
            else:
                print(message, file=sys.stderr, flush=True)

        return report

    def manifest(self) -> dict:
        return build_manifest(
            self.cfg.to_manifest(),
            tasks={n: {**t.identity(), "metrics": t.metrics(), "mode": self.modes_by_task[n]} for n, t in self.tasks.items()},
            defacers={n: d.identity for n, d in self.defacers.items()},
            models={s: self.model_identity(s) for specs in self.models_by_task.values() for s in specs},
            cohort={t: {"name": c.name, "content_hash": c.content_hash, "size": len(c.cases), "problems": len(c.problems),
                        "description": getattr(c, "description", "")} for t, c in self.cohorts.items()},
            seeds={"eval": self.cfg.seed},
            argv=self.argv,
        )

    def case(self, task: str, case_id: str):
        return self.cohorts[task].case(case_id)

    # --- stage 1: deface ---------------------------------------------------------------------------------------
    def deface_jobs(self, todo: list[WorkItem]) -> dict[tuple, list[tuple]]:
        """(volume file, condition) -> the (task, case, role, condition) keys it serves: a volume shared by two
        tasks (tumor-slice and tumor-dx read the same cases) is defaced once."""
        jobs: dict[tuple, list[tuple]] = {}
        for item in todo:
            if item.is_reference:
                continue
            case = self.case(item.task, item.case_id)
            for role in self.tasks[item.task].roles:
                key = (item.task, item.case_id, role, item.condition)
                users = jobs.setdefault((str(case.volumes[role]), item.condition), [])
                if key not in users:
                    users.append(key)
        return jobs

    def deface_all(self, todo: list[WorkItem], store: RunStore, progress: StageProgress) -> dict[tuple, dict]:
        """(task, case, role, condition) -> job result. Every defaced volume the todo samples need, computed once."""
        jobs = self.deface_jobs(todo)
        results: dict[tuple, dict] = {}
        if not jobs:
            return results
        args = {job: (job[0], *parse_defacer_arg(job[1]), str(self.cache_dir)) for job in jobs}
        qc_path = store.qc_dir / QC_FILE
        recorded = _recorded_qc(qc_path)
        t0 = time.perf_counter()
        workers = min(self.cfg.workers, len(jobs))
        if workers <= 0:
            self._collect(((job, _deface_job(*a)) for job, a in args.items()), jobs, results, qc_path, recorded, progress)
        else:
            ctx = multiprocessing.get_context("forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                futures = {job: pool.submit(_deface_job, *a) for job, a in args.items()}
                self._collect(((job, f.result()) for job, f in futures.items()), jobs, results, qc_path, recorded, progress)
        self.stage_seconds["deface"] += time.perf_counter() - t0
        return results

    def _collect(self, done_iter, jobs: dict, results: dict, qc_path: Path, recorded: set, progress: StageProgress) -> None:
        for job, res in done_iter:
            self.defacer_runs += int(res["computed"])
            for key in jobs[job]:
                results[key] = res
                task, case_id, role, condition = key
                if key not in recorded:
                    line = {"task": task, "case_id": case_id, "role": role, "condition": condition,
                            "defacer": self.defacers[condition].identity, "status": res["status"], "error": res["error"],
                            "seconds": round(res["seconds"], 3), "qc": res["qc"]}
                    _append_line(qc_path, line)
                    recorded.add(key)
            progress.advance("deface", failed=res["status"] != "ok")
            if res["status"] != "ok" and self.cfg.fail_fast:
                raise FailFast(f"defacing {jobs[job][0][1]} ({jobs[job][0][2]}) with {job[1]} failed: {res['error']['message']}")

    # --- stage 2: samples --------------------------------------------------------------------------------------
    def volumes_for(self, item: WorkItem) -> dict:
        task = self.tasks[item.task]
        case = self.case(item.task, item.case_id)
        out = {}
        for role in task.roles:
            key = (item.task, item.case_id, role, item.condition)
            if key in self._volumes:
                self._volumes.move_to_end(key)
                out[role] = self._volumes[key]
                continue
            volume = case.load(role)
            if not item.is_reference:
                volume = defacer_registry.deface_cached(self.defacers[item.condition], volume, self.cache_dir).volume
            self._volumes[key] = volume
            while len(self._volumes) > 16:
                self._volumes.popitem(last=False)
            out[role] = volume
        return out

    async def run_item(self, item: WorkItem, models: dict, deface_results: dict) -> Sample:
        task = self.tasks[item.task]
        case = self.case(item.task, item.case_id)
        timings: dict[str, float] = {}
        base = dict(sample_id=item.sample_id, task=item.task, case_id=item.case_id, condition=item.condition,
                    model=item.model, mode=item.mode, defacer=dict(item.defacer))

        def failed(kind: str, message: str, **extra) -> Sample:
            return Sample(**base, status="failed", error={"kind": kind, "message": redact_text(message)[:2000]}, timings=timings, **extra)

        if not item.is_reference:
            for role in task.roles:
                res = deface_results.get((item.task, item.case_id, role, item.condition))
                if res is not None and res["status"] != "ok":
                    return failed(res["error"]["kind"], f"{role}: {res['error']['message']}")
        t0 = time.perf_counter()
        try:
            volumes = await asyncio.to_thread(self.volumes_for, item)
            inp = await asyncio.to_thread(task.build_input, case, volumes, item.mode) if item.mode != "direct" else None
        except HarnessError as exc:
            return failed("bad_input", str(exc))
        except Exception as exc:
            if self.cfg.fail_fast:
                raise
            return failed("task_error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}")
        timings["render"] = time.perf_counter() - t0
        self.stage_seconds["render"] += timings["render"]
        t1 = time.perf_counter()
        transcript: list = []
        tokens: dict = {}
        if item.mode == "direct":
            try:
                raw = await asyncio.to_thread(task.solve_direct, case, volumes)
            except Exception as exc:
                if self.cfg.fail_fast:
                    raise
                return failed("task_error", f"{type(exc).__name__}: {exc}")
        else:
            model = models[item.model]
            if inp.toolbox is not None:
                result = await run_agent(model, inp.messages, inp.toolbox, budget=self.cfg.budget, sampling=self.cfg.sampling)
            else:
                result = await run_single_turn(model, inp.messages, sampling=self.cfg.sampling, timeout_s=self.cfg.budget.max_wall_s)
            transcript = result.transcript
            tokens = {"prompt": result.usage.prompt_tokens, "completion": result.usage.completion_tokens}
            if not result.ok:
                timings["model"] = time.perf_counter() - t1
                self.stage_seconds["model"] += timings["model"]
                return failed(result.failure, result.failure_detail or result.failure, transcript=transcript, tokens=tokens)
            raw = result.answer
        timings["model"] = time.perf_counter() - t1
        self.stage_seconds["model"] += timings["model"]
        t2 = time.perf_counter()
        cache_keys = {"render": list(inp.render_keys) if inp else [], "volumes": {r: v.content_hash[:16] for r, v in volumes.items()}}
        parsed = task.parse(raw)
        if not parsed.ok:
            timings["score"] = time.perf_counter() - t2
            return Sample(**base, status="unparsable", error={"kind": "unparsable", "message": redact_text(str(parsed.error))[:2000]},
                          timings=timings, tokens=tokens, transcript=transcript, cache_keys=cache_keys)
        try:
            answer = task.locate(parsed.value, volumes)
            scores = task.score(answer, case.truth)
        except Exception as exc:
            if self.cfg.fail_fast:
                raise
            return failed("score_error", f"{type(exc).__name__}: {exc}", transcript=transcript, tokens=tokens)
        timings["score"] = time.perf_counter() - t2
        self.stage_seconds["score"] += timings["score"]
        return Sample(**base, status="ok", answer=answer, scores=scores, timings=timings, tokens=tokens,
                      transcript=transcript, cache_keys=cache_keys)

    async def run_samples(self, todo: list[WorkItem], store: RunStore, progress: StageProgress, deface_results: dict) -> None:
        cache = ResponseCache(self.cache_dir / "responses.sqlite")
        needed = {i.model for i in todo if i.mode != "direct"}
        models = {s: create_model(self.model_specs[s], cache=cache) for s in needed}
        sem = asyncio.Semaphore(max(1, self.cfg.concurrency))
        try:
            async def one(item: WorkItem):
                async with sem:
                    sample = await self.run_item(item, models, deface_results)
                store.append(sample)
                failed = sample.status == "failed"
                for stage in ("render", "model", "score"):
                    progress.advance(stage, failed=failed and stage == "model")
                if failed and self.cfg.fail_fast:
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

    # --- everything --------------------------------------------------------------------------------------------
    def run(self, summarize: Callable | None = None) -> EvalOutcome:
        t_start = time.perf_counter()
        items = self.plan()
        run_dir = Path(self.cfg.resume) if self.cfg.resume else None
        if run_dir is None:
            label = "-".join(self.tasks)
            run_dir = new_run_dir(self.cfg.out, label)
        elif not (run_dir / "manifest.json").exists():
            raise EvalError(f"{run_dir}: not a run directory (no manifest.json); start a new run with --out")
        with RunStore.open(run_dir, self.manifest()) as store:
            if store.resumed:
                self._check_resumable(store.manifest)
            plan = resume_plan(items, store, retry_failed=self.cfg.retry_failed)
            totals = {**stage_totals(plan.todo), "deface": len(self.deface_jobs(plan.todo))}
            with StageProgress(totals, quiet=self.cfg.quiet, console=self.console) as progress:
                if plan.done or plan.skipped_failed:
                    progress.log(f"resuming {run_dir}: {plan.done} samples done, {plan.skipped_failed} failed kept"
                                 + (" (use --retry-failed to run them again)" if plan.skipped_failed else "") + f", {len(plan.todo)} to run")
                deface_results = self.deface_all(plan.todo, store, progress)
                with contextlib.ExitStack() as servers:
                    if self.cfg.serve and plan.todo:
                        self._start_servers(servers, {i.model for i in plan.todo}, progress)
                    asyncio.run(self.run_samples(plan.todo, store, progress, deface_results))
            summary = summarize(store, self) if summarize else None
            counts = store.counts()
            store.update_manifest(stage_seconds={k: round(v, 3) for k, v in self.stage_seconds.items()},
                                  model_calls=self.model_calls, defacer_runs=self.defacer_runs)
            store.finish("complete")
        return EvalOutcome(run_dir=run_dir, counts=counts, failed=counts.get("failed", 0), summary=summary,
                           planned=len(items), skipped_done=plan.done, model_calls=self.model_calls,
                           defacer_runs=self.defacer_runs, stage_seconds=dict(self.stage_seconds),
                           wall_seconds=time.perf_counter() - t_start)

    def _start_servers(self, stack: contextlib.ExitStack, needed: set, progress: StageProgress) -> None:
        """--serve: start each local model's server (its profile's serve_command, default `vllm serve`), wait until
        it is healthy, and stop it when the samples are done. Sample ids were fixed before, from the configured spec."""
        for name in sorted(needed):
            spec = self.model_specs.get(name)
            if spec is None or spec.backend in ("scripted", "hf", "vllm-local", "openai"):
                continue
            progress.log(f"starting the server for {name} ...")
            self.model_specs[name] = stack.enter_context(serve_model(spec))

    def _check_resumable(self, stored: dict) -> None:
        """A resumed run must evaluate the same thing: same task versions, cohort content, and the same identity
        behind each defacer and model name (an upgraded defacer under the old name would mix two versions)."""
        for kind, current in (("defacer", {n: d.identity for n, d in self.defacers.items()}),
                              ("model", {s: self.model_identity(s) for specs in self.models_by_task.values() for s in specs})):
            old_ids = stored.get(kind + "s") or {}
            for name, identity in current.items():
                now = redact(json.loads(json.dumps(identity, default=str)))  # as the manifest stored it
                if name in old_ids and isinstance(old_ids[name], dict) and old_ids[name] != now:
                    raise EvalError(f"cannot resume: {kind} {name} is not what the run used (then {old_ids[name]}, now {identity}); start a new run with --out")
        for name, task in self.tasks.items():
            old = (stored.get("tasks") or {}).get(name)
            if old is not None and old.get("version") != task.version:
                raise EvalError(f"cannot resume: the run used {name} version {old.get('version')}, this harness has {task.version}; start a new run")
            old_cohort = (stored.get("cohort") or {}).get(name)
            new_hash = self.cohorts[name].content_hash
            if old_cohort is not None and old_cohort.get("content_hash") != new_hash:
                raise EvalError(f"cannot resume: the cohort for {name} changed since the run started (content hash {old_cohort.get('content_hash', '?')[:12]} -> {new_hash[:12]}); start a new run")


def _recorded_qc(path: Path) -> set:
    keys = set()
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                d = json.loads(line)
                keys.add((d["task"], d["case_id"], d["role"], d["condition"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a torn last line from a killed run: that job is simply recorded again
    return keys


def _append_line(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_qc(run_dir) -> list[dict]:
    path = Path(run_dir) / "qc" / QC_FILE
    out = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def summarize_run(store: RunStore, runner: "Runner"):
    """Aggregate the run's samples (all of them, earlier sessions included) into summary.json and return it."""
    from collections import Counter

    import harness
    from harness.results.aggregate import aggregate
    from harness.core.sample import utc_now
    from harness.results.summary import Coverage, Summary

    samples = store.load_samples()
    failures = Counter(s.error.get("kind", "?") for s in samples if s.status == "failed" and s.error)
    counts = Counter(s.status for s in samples)
    summary = Summary(
        run=store.directory.name, created_at=utc_now(), harness_version=harness.__version__,
        counts=Coverage(planned=len(samples), ok=counts["ok"], unparsable=counts["unparsable"], failed=counts["failed"]),
        failures=dict(failures), stage_seconds={k: round(v, 3) for k, v in runner.stage_seconds.items()},
        tasks=aggregate(samples, runner.tasks, read_qc(store.directory)),
    )
    store.write_summary(summary)
    return summary
