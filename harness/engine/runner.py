"""The evaluation runner behind `harness eval`: resolve what to run, plan the grid, run the stages, summarise.

    plan      tasks x cohort cases x conditions (original + each defacer) x models x mode -> work items with stable
              sample ids (harness.engine.grid); on --resume (or a matching earlier run) finished samples are skipped
    deface    harness.engine.deface_stage: every defaced volume the remaining samples need, once, on the run's executor
              (harness.engine.executors: a local process pool, or Ray tasks across a cluster)
    samples   harness.engine.sample_stage: render, ask the model or agent, parse, score; each sample appended to the
              run store at once, so a killed run loses only what was in flight
    privacy   harness.engine.privacy_stage: the re-identification attack on every volume of the run's cases, under
              original and each defacer (cached by content; off with EvalConfig.privacy = False, `--no-privacy`)
    summary   harness.results.run_summary: summary.json from every sample of the run

The run folder (samples, manifest, QC log, summary) is written only through harness.store.run_store.RunStore.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import defacers
from harness.core.config import default_cache_dir, load_config
from harness.agent.loop import Budget
from harness.engine.deface_stage import DefaceStage
from harness.engine.privacy_stage import PrivacyStage
from harness.engine.errors import EvalError, FailFast
from harness.engine.executors import EXECUTORS, make_executor
from harness.engine.grid import REFERENCE, Condition, WorkItem, plan_grid, resume_plan, stage_totals
from harness.engine.progress import StageProgress
from harness.engine.rejected import rejected_summary
from harness.engine.resume import check_resumable
from harness.engine.sample_stage import SampleStage
from harness.models import Sampling, backend_of, resolve_model_spec, serve_model
from harness.store.manifest import build_manifest
from harness.core.hashing import content_key
from harness.scoring.cache import use_cache_dir as use_score_cache_dir
from harness.imaging.render_cache import use_render_cache
from harness.core.hashing import use_digest_cache
from harness.store.run_store import RunStore, find_run, new_run_dir
from harness.data import load_cohort
from tasks import get_task

DIRECT_PREFIX = "algorithm:"  # the model column of direct-mode samples, e.g. "algorithm:nph-evans"
__all__ = ["DIRECT_PREFIX", "EvalConfig", "EvalError", "EvalOutcome", "FailFast", "Runner"]


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
    timeout_s: float | None = None  # per model request; None: the profile's
    max_retries: int | None = None  # None: the profile's
    budget: Budget = field(default_factory=Budget)
    sampling: Sampling = field(default_factory=Sampling)
    seed: int = 0
    serve: bool = False  # start local model servers for the run (see Runner._start_servers)
    new_run: bool = False  # do not continue a matching run under `out`: start a fresh one
    privacy: bool = True  # the re-identification attack stage (harness.engine.privacy_stage)
    base_urls: list[str] = field(default_factory=list)  # several: replicas of each server model (base_url: the first)
    executor: str = "local"  # "local" (workers processes here) or "ray" (Ray tasks on a cluster)
    ray_address: str | None = None  # the Ray head's HOST:PORT; None: RAY_ADDRESS or a local `ray start`

    def to_manifest(self) -> dict:
        return {
            "tasks": self.tasks, "defacers": self.defacers, "models": self.models, "cohort": self.cohort,
            "mode": self.mode, "limit": self.limit, "concurrency": self.concurrency, "workers": self.workers,
            "retry_failed": self.retry_failed, "base_url": self.base_url, "base_urls": self.base_urls,
            "executor": self.executor, "ray_address": self.ray_address,
            "timeout_s": self.timeout_s, "max_retries": self.max_retries,
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
    rejected: list = field(default_factory=list)  # cohort rows not used: {task, case_id, reason}
    model_calls: int = 0
    defacer_runs: int = 0
    stage_seconds: dict = field(default_factory=dict)
    wall_seconds: float = 0.0


class Runner:
    """One `harness eval`: what to run (tasks, conditions, models, modes) resolved up front, then the stages."""

    def __init__(self, cfg: EvalConfig, argv: list[str] | None = None, console=None):
        self.cfg = cfg
        self.argv = argv
        self.console = console
        if cfg.executor not in EXECUTORS:  # before any run folder is made
            raise EvalError(f"unknown executor {cfg.executor!r}; use one of {', '.join(EXECUTORS)}")
        self.cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
        use_score_cache_dir(self.cache_dir)  # text-metric values (BERTScore) live with the other caches
        use_render_cache(self.cache_dir)  # shared by every model, condition and run that shows the same volume
        use_digest_cache(self.cache_dir)  # the cohort's content hash without reading every file again
        self.tasks = {name: get_task(name) for name in dict.fromkeys(cfg.tasks)}
        self.defacer_specs = {REFERENCE: (REFERENCE, {})}
        for text in dict.fromkeys(cfg.defacers):
            if text != REFERENCE:
                self.defacer_specs[text] = defacers.parse_defacer_spec(text)
        self.defacers = {text: defacers.get(name, **params) for text, (name, params) in self.defacer_specs.items()}
        self.modes_by_task = {}
        for task_name, task in self.tasks.items():
            mode = cfg.mode or task.default_mode
            if mode not in task.modes:
                raise EvalError(f"task {task_name} has no {mode!r} mode; its modes: {', '.join(task.modes)}")
            self.modes_by_task[task_name] = mode
        self.model_specs: dict[str, Any] = {}
        self.models_by_task: dict[str, list[str]] = {}
        config = None
        for task_name, task in self.tasks.items():
            if self.modes_by_task[task_name] in task.direct_modes:
                # no model answers in the direct route: the task's own algorithm is the "model" column
                self.models_by_task[task_name] = [f"{DIRECT_PREFIX}{task_name}"]
                continue
            specs = cfg.models or [task.baseline]
            self.models_by_task[task_name] = specs
            for spec in specs:
                if spec not in self.model_specs:
                    config = config or load_config(cfg.config_file)  # read once, whatever the number of models
                    limits = {"timeout_s": cfg.timeout_s, "max_retries": cfg.max_retries}
                    urls = {"base_urls": cfg.base_urls} if cfg.base_urls else {"base_url": cfg.base_url}
                    resolved = resolve_model_spec(spec, config, **urls, **limits)
                    if (cfg.base_url or cfg.base_urls) and not backend_of(resolved).takes_base_url:
                        resolved = resolve_model_spec(spec, config, **limits)  # --base-url is for server backends
                    self.model_specs[spec] = resolved
        self.cohorts = {}
        self.executor = None  # made when the run starts (connecting to a cluster is not for planning)
        self.deface_stage = DefaceStage(self)
        self.sample_stage = SampleStage(self)
        self.privacy_stage = PrivacyStage(self)

    @property
    def stage_seconds(self) -> dict[str, float]:
        return {"deface": self.deface_stage.seconds, **self.sample_stage.seconds, "privacy": self.privacy_stage.seconds}

    @property
    def model_calls(self) -> int:
        return self.sample_stage.model_calls

    @property
    def defacer_runs(self) -> int:
        return self.deface_stage.runs

    # identities that decide sample ids and cache keys
    def model_identity(self, spec_text: str) -> dict:
        if spec_text.startswith(DIRECT_PREFIX):
            task = self.tasks[spec_text[len(DIRECT_PREFIX):]]
            return {"algorithm": task.name, "version": task.version}
        spec = self.model_specs[spec_text]
        return {"backend": spec.backend, "model": spec.model, "revision": spec.revision, "base_url": spec.base_url}

    def model_identities(self) -> dict[str, dict]:
        return {s: self.model_identity(s) for specs in self.models_by_task.values() for s in specs}

    # a condition as one case volume sees it (precomputed:NAME: that case's file)
    def case_defacer_spec(self, condition: str, case, role: str) -> tuple[str, dict]:
        name, params = self.defacer_specs[condition]
        return name, {**params, **self.defacers[condition].case_params(case.defaced, role)}

    def case_defacer(self, condition: str, case, role: str) -> defacers.Defacer:
        return self.defacers[condition].for_case(case.defaced, role)

    def brain_reference_file(self, task: str, case, role: str):
        """The case file whose brain mask measures the QC of `role` (Task.brain_mask_role), when it is another role."""
        other = self.tasks[task].brain_reference_role(case, role)
        return None if other is None else case.volumes[other]

    def case_identity(self, condition: str, case, roles) -> dict:
        """The condition's identity for one case: the shared one, plus the identity of each role whose defacer is
        specific to the case (a precomputed file's content hash), so a changed file gets new sample ids."""
        shared = self.defacers[condition].identity
        own = {role: identity for role in roles if (identity := self.case_defacer(condition, case, role).identity) != shared}
        return {**shared, "case_volumes": own} if own else shared

    def _check_precomputed(self, task, cohort) -> None:
        """A precomputed condition the cohort gives no file for (a typo in NAME) is an error before anything runs;
        a file missing for some cases only fails those cases' samples."""
        for name, d in self.defacers.items():
            if d.runs == "precomputed" and not any(d.case_params(c.defaced, r) for c in cohort.cases for r in task.roles):
                given = sorted({f"precomputed:{n}" for c in cohort.cases for n in c.defaced})
                raise EvalError(f"cohort {cohort.name} gives no volumes for {name} (task {task.name}); it gives: "
                                f"{', '.join(given) or 'none'} (a manifest's \"defaced\" field, ROLE@NAME columns, or BIDS derivatives/NAME/)")

    def plan(self) -> list[WorkItem]:
        items: list[WorkItem] = []
        for task_name, task in self.tasks.items():
            cohort = load_cohort(self.cfg.cohort, task, limit=self.cfg.limit, cache_dir=self.cache_dir,
                                 progress=self._cohort_progress(task_name))
            self.cohorts[task_name] = cohort
            if not cohort.cases:
                raise EvalError(f"cohort {cohort.name} has no usable cases for task {task_name}" + (f" ({len(cohort.problems)} problems, first: {cohort.problems[0][1]})" if cohort.problems else ""))
            self._check_precomputed(task, cohort)
            conditions = [Condition(name, d.identity, per_case={c.id: self.case_identity(name, c, task.roles) for c in cohort.cases})
                          for name, d in self.defacers.items()]
            specs = self.models_by_task[task_name]
            grid = plan_grid({task_name: [c.id for c in cohort.cases]}, conditions, specs, (self.modes_by_task[task_name],),
                             task_identities={task_name: task.identity()},
                             model_identities={s: self.model_identity(s) for s in specs})
            items.extend(grid.items)
        return items

    def run_key(self) -> str:
        """What makes two `harness eval` commands the same evaluation (after plan(): the cohorts are read): tasks with
        their modes, conditions, models, cohort contents and the settings that change answers. A re-run with the same
        key continues that run instead of redoing it."""
        return content_key(
            kind="run",
            tasks={n: {**t.identity(), "mode": self.modes_by_task[n]} for n, t in self.tasks.items()},
            defacers={n: d.identity for n, d in self.defacers.items()}, models=self.model_identities(),
            cohorts={t: c.content_hash for t, c in self.cohorts.items()}, limit=self.cfg.limit,
            budget=dict(self.cfg.budget.__dict__), sampling=self.cfg.sampling.to_dict(), seed=self.cfg.seed)

    def _say(self, message: str) -> None:
        if self.console is not None:
            self.console.print(message, highlight=False, markup=False)
        else:
            print(message, file=sys.stderr, flush=True)

    def rejected_rows(self) -> list[dict]:
        """Every cohort row that did not become a case, with its reason (the run folder keeps them; coverage
        counts them)."""
        return [{"task": task, "case_id": row, "reason": reason}
                for task, cohort in self.cohorts.items() for row, reason in cohort.problems]

    def _log_rejected(self, rejected: list[dict], run_dir: Path) -> None:
        if not rejected:
            return
        self._say(rejected_summary(rejected, run_dir))

    def _cohort_progress(self, task_name: str):
        def report(i: int, n: int, row) -> None:
            self._say(f"generating the built-in {task_name} sample cohort (first use only): case {i}/{n}")

        return report

    def manifest(self) -> dict:
        return build_manifest(
            self.cfg.to_manifest(),
            tasks={n: {**t.identity(), "metrics": t.metrics(), "mode": self.modes_by_task[n]} for n, t in self.tasks.items()},
            defacers={n: d.identity for n, d in self.defacers.items()},
            models=self.model_identities(),
            cohort={t: {"name": c.name, "content_hash": c.content_hash, "size": len(c.cases), "problems": len(c.problems),
                        "description": getattr(c, "description", "")} for t, c in self.cohorts.items()},
            seeds={"eval": self.cfg.seed},
            argv=self.argv,
        ) | {"run_key": self.run_key()}

    def case(self, task: str, case_id: str):
        return self.cohorts[task].case(case_id)

    # --- everything --------------------------------------------------------------------------------------------
    def run(self, summarize: Callable | None = None) -> EvalOutcome:
        t_start = time.perf_counter()
        items = self.plan()
        run_dir = Path(self.cfg.resume) if self.cfg.resume else None
        if run_dir is None and not self.cfg.new_run:
            run_dir = find_run(self.cfg.out, self.run_key())
            if run_dir is not None:
                self._say(f"continuing {run_dir}: the same evaluation as this command (--new-run starts a fresh run)")
        if run_dir is None:
            run_dir = new_run_dir(self.cfg.out, "-".join(self.tasks))
        elif not (run_dir / "manifest.json").exists():
            raise EvalError(f"{run_dir}: not a run directory (no manifest.json); start a new run with --out")
        with RunStore.open(run_dir, self.manifest()) as store:
            if store.resumed:
                check_resumable(store.manifest, self)
            rejected = self.rejected_rows()
            store.record_rejected(rejected)
            self._log_rejected(rejected, run_dir)
            plan = resume_plan(items, store, retry_failed=self.cfg.retry_failed)
            totals = {**stage_totals(plan.todo), "deface": len(self.deface_stage.jobs(plan.todo))}
            with StageProgress(totals, quiet=self.cfg.quiet, console=self.console) as progress, self._executor(progress):
                if plan.done or plan.skipped_failed:
                    progress.log(f"resuming {run_dir}: {plan.done} samples done, {plan.skipped_failed} failed kept"
                                 + (" (use --retry-failed to run them again)" if plan.skipped_failed else "") + f", {len(plan.todo)} to run")
                deface_results = self.deface_stage.run(plan.todo, store, progress)
                with contextlib.ExitStack() as servers:
                    if self.cfg.serve and plan.todo:
                        self._start_servers(servers, {i.model for i in plan.todo}, progress)
                    asyncio.run(self.sample_stage.run(plan.todo, store, progress, deface_results))
                if self.cfg.privacy:
                    self.privacy_stage.run(items, store, progress)
            summary = summarize(store, self) if summarize else None
            counts = store.counts()
            store.update_manifest(stage_seconds={k: round(v, 3) for k, v in self.stage_seconds.items()},
                                  model_calls=self.model_calls, defacer_runs=self.defacer_runs,
                                  jobs_lost_and_rerun=self.executor.retried if self.executor else 0)
            store.finish("complete")
        return EvalOutcome(run_dir=run_dir, counts=counts, failed=counts.get("failed", 0), summary=summary,
                           planned=len(items), skipped_done=plan.done, rejected=rejected, model_calls=self.model_calls,
                           defacer_runs=self.defacer_runs, stage_seconds=dict(self.stage_seconds),
                           wall_seconds=time.perf_counter() - t_start)

    @contextlib.contextmanager
    def _executor(self, progress: StageProgress):
        """The run's executor, connected for the stages and closed after them."""
        self.executor = make_executor(self.cfg.executor, workers=self.cfg.workers, address=self.cfg.ray_address)
        try:
            if self.cfg.executor == "ray":
                nodes = self.executor.nodes()
                cpus = sum(n["resources"].get("CPU", 0) for n in nodes)
                progress.log(f"Ray cluster at {self.executor.address}: {len(nodes)} node(s), {cpus:g} CPU(s)")
            yield self.executor
        finally:
            self.executor.close()

    def _start_servers(self, stack: contextlib.ExitStack, needed: set, progress: StageProgress) -> None:
        """--serve: start each local model's server (its profile's serve_command, default `vllm serve`), wait until
        it is healthy, and stop it when the samples are done. Sample ids were fixed before, from the configured spec."""
        for name in sorted(needed):
            spec = self.model_specs.get(name)
            if spec is None or not backend_of(spec).servable:
                continue
            progress.log(f"starting the server for {name} ...")
            self.model_specs[name] = stack.enter_context(serve_model(spec))
