"""`harness eval` (the main command), `harness tasks` and `harness compare`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from harness.core.config import load_config

EVAL_HELP = """Evaluate models on original and defaced volumes of a cohort, and print a fidelity summary.

Every case is run under the `original` condition (always added) and under each --defacer; each defaced answer is
paired with the original answer of the same case and model. Without --cohort the built-in sample cohort (synthetic
phantoms with exact ground truth) is generated on first use; without --model each task's scripted CPU baseline is
used. Running the same command again (same tasks, defacers, models, cohort, mode and --out) continues its run:
finished samples are skipped, so a re-run costs seconds; --new-run starts a fresh run, --resume RUN continues a
given one.

Exit codes: 0 the run finished and every sample has an answer (an unparsable answer is a result, counted in the
summary, not a failure); 1 error before or during the run; 3 the run finished but some samples failed.
"""


def _config_models(config: Path | None) -> list[str]:
    """[eval] models = [...] from the config file (default ./harness.toml), if any."""
    return load_config(config).eval_models


def eval_cmd(
    task: List[str] = typer.Option(..., "--task", "-t", help="Task to run (repeatable), e.g. ct-report; `harness tasks` lists them."),
    defacer: List[str] = typer.Option(..., "--defacer", "-d", help="Defacer to compare against the original (repeatable), e.g. reface; parameters as NAME(key=value,...), e.g. quickshear(buffer_mm=5); `harness defacers` lists them."),
    model: List[str] = typer.Option([], "--model", "-m", help="Model profile or BACKEND:MODEL (repeatable). Default: \\[eval] models in the config file, else each task's scripted baseline."),
    cohort: Optional[str] = typer.Option(None, "--cohort", help="Cohort source: a manifest (.jsonl/.csv/.parquet), BIDS folder, DICOM folder, UPENN-GBM folder or Hugging Face dataset. Default: the built-in sample cohort."),
    mode: Optional[str] = typer.Option(None, "--mode", help="single (fixed images + prompt), agent (tools), direct (a task's algorithmic route) or labels (nph-evans: the Evans ratio of the cohort's label maps). Default: each task's default."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Use at most N cases per task."),
    out: Path = typer.Option(Path("runs"), "--out", "-o", help="Folder for run directories."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue this run directory: finished samples are skipped."),
    new_run: bool = typer.Option(False, "--new-run", help="Start a fresh run even when --out holds a run of the same evaluation (default: continue it)."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="With --resume: run failed samples again."),
    concurrency: int = typer.Option(8, "--concurrency", "-c", min=1, help="Samples in flight at once (each endpoint also limits itself)."),
    workers: int = typer.Option(2, "--workers", min=0, help="Processes for defacing (0 = in the main process)."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML config with \\[models.NAME] profiles and \\[eval] defaults (default ./harness.toml)."),
    base_url: List[str] = typer.Option([], "--base-url", help="Server URL for vllm:/openai-compatible: models, e.g. http://localhost:8000/v1; repeat it for replicas of one model (each request goes to the least busy live one)."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Cache for cohorts, defaced volumes and model replies (default ~/.cache/harness)."),
    timeout: Optional[float] = typer.Option(None, "--timeout", min=0.001, help="Seconds to wait for one model reply before retrying (default: the profile's, else 300)."),
    max_retries: Optional[int] = typer.Option(None, "--max-retries", min=0, help="Retries of a failed model request (default: the profile's, else 5)."),
    max_steps: int = typer.Option(16, "--max-steps", min=1, help="Agent mode: model calls per sample."),
    max_images: int = typer.Option(32, "--max-images", min=1, help="Agent mode: images per sample."),
    serve: bool = typer.Option(False, "--serve", help="Start each vllm:/openai-compatible: model's server (profile serve_command, default `vllm serve MODEL`), wait for health, stop it afterwards."),
    no_privacy: bool = typer.Option(False, "--no-privacy", help="Skip the privacy stage (the face-recognition re-identification attack on every original and defaced volume)."),
    executor: Optional[str] = typer.Option(None, "--executor", help="Where defacing, rendering and scoring run: local (--workers processes here for defacing) or ray (tasks on a Ray cluster; model calls stay here). Default: \\[eval] executor in the config file, else local."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="With --executor ray: the head's HOST:PORT (default: \\[eval] ray_address, else RAY_ADDRESS or a `ray start` on this machine)."),
    fail_fast: bool = typer.Option(False, "--fail-fast", help="Stop at the first failed sample or defacer."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Plain progress lines instead of bars (for CI logs)."),
):
    from rich.console import Console

    from harness.agent.loop import Budget
    from harness.cli.summary_view import print_outcome
    from harness.engine.runner import EvalConfig, Runner
    from harness.results.run_summary import summarize_run

    console = Console(stderr=True)
    settings = load_config(config)
    models = list(model) or _config_models(config)
    if not models:
        console.print("[dim]no --model given: using each task's scripted CPU baseline[/dim]")
    cfg = EvalConfig(
        tasks=list(task), defacers=list(defacer), models=models, cohort=cohort, mode=mode, limit=limit, out=out,
        resume=resume, concurrency=concurrency, workers=workers, cache_dir=cache_dir, fail_fast=fail_fast,
        retry_failed=retry_failed, quiet=quiet or None, config_file=config, base_url=base_url[0] if base_url else None,
        base_urls=list(base_url) if len(base_url) > 1 else [],
        executor=executor or settings.eval_text("executor") or "local",
        ray_address=ray_address or settings.eval_text("ray_address"),
        budget=Budget(max_steps=max_steps, max_images=max_images), serve=serve, timeout_s=timeout,
        max_retries=max_retries, new_run=new_run, privacy=not no_privacy,
    )
    runner = Runner(cfg, argv=["harness", *sys.argv[1:]], console=console)
    outcome = runner.run(summarize=summarize_run)
    print_outcome(outcome)
    if outcome.failed:
        raise typer.Exit(3)


eval_cmd.__doc__ = EVAL_HELP


def tasks_cmd():
    """List the tasks: the volumes they read, their modes, baselines, ground-truth fields and declared metrics."""
    from tasks import get_task, task_registry

    for entry in task_registry.entries():
        t = get_task(entry.name)
        origin = "" if entry.built_in else f"   [{entry.origin}]"
        typer.echo(f"{t.name} (v{t.version}): {t.title}{origin}")
        typer.echo(f"  volumes: {', '.join(t.roles)}   modes: {', '.join(t.modes)} (default {t.default_mode})   baseline: {t.baseline}"
                   + ("" if t.phantoms is None else f"   sample cohort: {t.phantoms.default_n} phantoms"))
        for f in t.truth_fields:
            typer.echo(f"  truth    {f.name} ({f.kind}{', required' if f.required else ''}): {f.description}")
        for group, metrics in (("accuracy", t.accuracy_metrics), ("fidelity", t.fidelity_metrics)):
            for m in metrics:
                arrow = "higher is better" if m.higher_is_better else "lower is better"
                unit = f" [{m.unit}]" if m.unit else ""
                typer.echo(f"  {group:8s} {m.name}{unit}: {m.description} ({m.kind}, {arrow})")


def compare_cmd(
    run_a: Path = typer.Argument(..., help="First run directory (A)."),
    run_b: Path = typer.Argument(..., help="Second run directory (B)."),
):
    """Compare two runs, paired by task, case, condition and mode: mean of each score in A and B, the difference
    B - A with a 95% bootstrap CI, Wilcoxon p and Benjamini-Hochberg adjusted p."""
    from rich.console import Console
    from rich.table import Table

    from harness.results.compare import compare_runs

    rows = compare_runs(run_a, run_b)
    table = Table(title=f"B = {run_b.name}  vs  A = {run_a.name}  (paired; difference B - A, 95% CI)", title_justify="left")
    for col in ("task", "condition", "mode", "metric", "pairs", "A", "B", "B - A [95% CI]", "p", "p adj"):
        table.add_column(col)

    def f(x):
        return "-" if x is None or x != x else f"{x:.3g}"

    for r in rows:
        table.add_row(r.task, r.condition, r.mode, r.metric, str(r.n), f(r.mean_a), f(r.mean_b),
                      f"{f(r.diff)} [{f(r.ci_low)}, {f(r.ci_high)}]", f(r.p), f(r.p_adj))
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("eval", help=EVAL_HELP)(eval_cmd)
    app.command("tasks")(tasks_cmd)
    app.command("compare")(compare_cmd)
