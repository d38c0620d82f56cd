"""`harness data sample` and `harness data show`: make the built-in phantom cohorts and inspect any cohort."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

data_app = typer.Typer(help="Sample cohorts (head phantoms with exact ground truth) and cohort inspection.", no_args_is_help=True)

TASK_HELP = "A task name (`harness tasks` lists them)."


@data_app.command("sample")
def sample(
    task: str = typer.Option(..., "--task", help=TASK_HELP),
    n: int = typer.Option(8, "--n", min=1, help="Number of cases."),
    seed: int = typer.Option(0, "--seed", help="Seed; case i is the same for any --n."),
    out: Path = typer.Option(..., "--out", "-o", help="New (or empty) folder for manifest.jsonl and the case files."),
    scale: float = typer.Option(1.0, "--scale", min=1.0, max=4.0, help="Coarsen the voxel grid by this factor (fast tests)."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Where the derived anatomy is cached."),
):
    """Write N phantom cases of a task (PHANTOMS built from a real average head, not patients) with a manifest."""
    from harness.data.sample_cohort import write_sample_cohort
    from tasks import get_task

    get_task(task)  # an unknown name fails before any work
    started = time.perf_counter()

    def progress(i, total, row):
        typer.echo(f"[{i}/{total}] {row['id']}  {row['meta']['seconds']:.1f} s", err=True)

    manifest = write_sample_cohort(task, n, seed, out, resolution_scale=scale, cache_dir=cache_dir, progress=progress)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    typer.echo(f"{manifest}  ({n} cases, {size / 1e6:.1f} MB, {time.perf_counter() - started:.1f} s)")


def _defaced(case) -> str:
    """The case's volumes defaced elsewhere (--defacer precomputed:NAME), with any file that is not there."""
    if not case.defaced:
        return ""
    parts = []
    for name, roles in case.defaced.items():
        missing = [role for role, path in roles.items() if not path.exists()]
        parts.append(f"{name}({','.join(roles)})" + (f" MISSING {','.join(missing)}" if missing else ""))
    return "  precomputed: " + " ".join(parts)


@data_app.command("show")
def show(
    source: Optional[str] = typer.Argument(None, help="Manifest, BIDS/UPENN/DICOM/HF folder, or hf:ID; omit for the built-in sample cohort."),
    task: str = typer.Option(..., "--task", help=TASK_HELP),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N usable cases."),
    png: Optional[Path] = typer.Option(None, "--png", help="Also write one montage PNG per case (best slice, with masks) here."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Cache folder (sample cohort, downloaded bytes)."),
):
    """List a cohort's cases and key ground truth, its problems (bad rows), and its content hash."""
    from harness.data.cohort import load_cohort

    cohort = load_cohort(source, task, limit=limit, cache_dir=cache_dir)
    typer.echo(f"cohort {cohort.name}  task {cohort.task}  {len(cohort.cases)} cases  {len(cohort.problems)} problems  hash {cohort.content_hash[:16]}")
    for case in cohort.cases:
        typer.echo(f"  {case.id:<28} {','.join(case.roles):<24} {_headline(case)}{_defaced(case)}")
    for row, message in cohort.problems:
        typer.echo(f"  SKIPPED {row}: {message}")
    if png is not None:
        from harness.data.look import write_case_montages

        for path in write_case_montages(cohort, png):
            typer.echo(str(path))


def _headline(case) -> str:
    from tasks import get_task

    return get_task(case.task).headline(case.truth)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
