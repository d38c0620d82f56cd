"""`harness runs list` and `harness runs show RUN`: look at finished, interrupted and running evaluation runs."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from harness.store.manifest import names_of
from harness.store.run_store import (MANIFEST, SUMMARY, RunStoreError, lock_holder, read_json, read_qc, read_rejected,
                                      read_reidentification, read_samples, scan_samples)
from harness.store.summary import Summary
from harness.engine.rejected import rejected_summary
from harness.results.failures import failure_groups
from harness.results.tables import summary_tables

runs_app = typer.Typer(help="List and inspect evaluation runs.", no_args_is_help=True)

OUT_HELP = "Folder holding the run directories."


def _run_state(run_dir: Path, manifest: dict) -> str:
    pid = lock_holder(run_dir)
    if pid:
        return f"running (pid {pid})"
    status = manifest.get("status")
    if status == "running":
        return "stopped"  # no live writer but never finished: killed (kill -9, power loss) -> resumable
    return str(status or "?")


def _duration(manifest: dict) -> str:
    try:
        start = datetime.fromisoformat(str(manifest["started_at"]).replace("Z", "+00:00"))
        end = datetime.fromisoformat(str(manifest["ended_at"]).replace("Z", "+00:00"))
    except (KeyError, TypeError, ValueError):
        return "-"
    seconds = int((end - start).total_seconds())
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _counts(run_dir: Path) -> Counter:
    summary = read_json(run_dir / SUMMARY)
    if summary and isinstance(summary.get("counts"), dict):
        c = summary["counts"]
        return Counter({k: c.get(k, 0) for k in ("ok", "unparsable", "failed") if isinstance(c.get(k, 0), int)})
    return Counter(scan_samples(run_dir / "samples.jsonl").status.values())


def _fmt_counts(c: Counter) -> str:
    text = f"{c['ok']} ok"
    if c["unparsable"]:
        text += f", {c['unparsable']} unparsable"
    if c["failed"]:
        text += f", {c['failed']} failed"
    return text


def _console() -> Console:
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # pipes and CI logs: do not squeeze tables into 80 columns
    return console


def _resolve(run: str, out: Path) -> Path:
    for candidate in (Path(run), out / run):
        if (candidate / MANIFEST).is_file():
            return candidate
    raise RunStoreError(run, f"no run directory here or under {out}/ (a run directory holds {MANIFEST}); "
                             f"`harness runs list --out {out}` shows the runs")


def list_cmd(folder: Optional[Path] = typer.Argument(None, help="A folder of runs, or one run directory (default: --out)."),
             out: Path = typer.Option(Path("runs"), "--out", "-o", help=OUT_HELP)):
    """One line per run: state, start time, duration, tasks, defacers, models, sample counts."""
    out = folder or out
    if not out.is_dir():
        raise RunStoreError(out, "no such folder (runs are written under --out, default runs/)")
    rows = []
    candidates = [out] if (out / MANIFEST).is_file() else sorted(p for p in out.iterdir() if p.is_dir())
    for run_dir in candidates:
        try:
            manifest = read_json(run_dir / MANIFEST)
        except RunStoreError:
            rows.append((run_dir.name, f"unreadable {MANIFEST}", "", "", "", "", "", ""))
            continue
        if manifest is None:
            continue
        rows.append((run_dir.name, _run_state(run_dir, manifest), str(manifest.get("started_at", "-"))[:19].replace("T", " "),
                     _duration(manifest), ", ".join(names_of(manifest.get("tasks"))),
                     ", ".join(names_of(manifest.get("defacers"))), ", ".join(names_of(manifest.get("models"))),
                     _fmt_counts(_counts(run_dir))))
    if not rows:
        typer.echo(f"no runs under {out}/")
        return
    table = Table(title=f"runs under {out}/", title_justify="left")
    for column in ("run", "state", "started (UTC)", "duration", "tasks", "defacers", "models", "samples"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    _console().print(table)


def show_cmd(
    run: str = typer.Argument(..., help="A run directory, or its name under --out."),
    out: Path = typer.Option(Path("runs"), "--out", "-o", help=OUT_HELP),
    failures: int = typer.Option(5, help="How many failure reasons to list."),
):
    """A run's manifest facts, sample counts, failures and summary tables."""
    run_dir = _resolve(run, out)
    manifest = read_json(run_dir / MANIFEST) or {}
    samples = read_samples(run_dir)
    counts = Counter(s.status for s in samples)
    harness_facts = manifest.get("harness") or {}
    version = str(harness_facts.get("version", "?"))
    if harness_facts.get("git_sha"):
        version += f" (git {str(harness_facts['git_sha'])[:10]}{', uncommitted changes' if harness_facts.get('git_dirty') else ''})"
    facts = [
        ("run", str(run_dir)),
        ("state", _run_state(run_dir, manifest)),
        ("started (UTC)", str(manifest.get("started_at", "-"))),
        ("ended (UTC)", str(manifest.get("ended_at") or "-")),
        ("duration", _duration(manifest)),
        ("harness", version),
        ("tasks", ", ".join(names_of(manifest.get("tasks"))) or "-"),
        ("defacers", ", ".join(names_of(manifest.get("defacers"))) or "-"),
        ("models", ", ".join(names_of(manifest.get("models"))) or "-"),
        ("samples", f"{_fmt_counts(counts)} ({len(samples)} sample ids)"),
    ]
    width = max(len(k) for k, _ in facts)
    for key, value in facts:
        typer.echo(f"{key:<{width}}  {value}")

    console = _console()
    summary_data = read_json(run_dir / SUMMARY)
    if summary_data is not None:
        for table in summary_tables(Summary.from_dict(summary_data, source=run_dir / SUMMARY)):
            console.print(table)
    elif samples:
        typer.echo(f"no {SUMMARY} yet (the run did not finish); sample counts so far:")
        cells = Counter((s.task, s.model, s.condition, s.status) for s in samples)
        keys = sorted({(t, m, c) for t, m, c, _ in cells})
        table = Table()
        for column in ("task", "model", "condition", "ok", "unparsable", "failed"):
            table.add_column(column)
        for t, m, c in keys:
            table.add_row(t, m, c, *(str(cells[(t, m, c, st)]) for st in ("ok", "unparsable", "failed")))
        console.print(table)

    groups = failure_groups(samples)
    if groups and failures > 0:
        typer.echo("failures:")
        for group in groups[:failures]:
            example = group.example
            message = str((example.error or {}).get("message", ""))[:200]
            typer.echo(f"  {group.kind}: {group.count} (e.g. {example.task}/{example.case_id}/{example.condition}: {message})")
    for line in _placement_lines(read_qc(run_dir, warn=False), samples, manifest, read_reidentification(run_dir)):
        typer.echo(line)
    rejected = read_rejected(run_dir)
    if rejected:
        typer.echo(rejected_summary(rejected, run_dir))
    if manifest.get("status") != "complete" and not lock_holder(run_dir):
        typer.echo(f"resume with: harness eval --resume {run_dir}")


def _placement_lines(qc: list[dict], samples: list, manifest: dict, probes: list[dict] = ()) -> list[str]:
    """Which node ran which jobs: defacing from the QC log's `ran_on`, rendering and scoring from the samples', the
    privacy attack from qc/reidentification.jsonl's (jobs answered from a cache, and anything run in the driver's own
    process under the local executor, ran nowhere else and are not listed)."""
    by_node: dict[tuple, dict[str, list]] = {}

    def add(placed, part: str) -> None:
        if isinstance(placed, dict):
            node = (str(placed.get("node", "?")), str(placed.get("host", "?")))
            by_node.setdefault(node, {}).setdefault(part, []).append(float(placed.get("seconds") or 0))

    for rec in qc:
        add(rec.get("ran_on"), "deface")
    for sample in samples:
        for part, placed in sample.ran_on.items():
            add(placed, str(part))
    for probe in probes:
        add(probe.get("ran_on"), "privacy")
    if not by_node:
        return []
    lines = [f"jobs by node ({(manifest.get('config') or {}).get('executor', 'local')} executor):"]
    for (node, host), parts in sorted(by_node.items()):
        counts = ", ".join(f"{len(secs)} {part} ({sum(secs):.1f} s)" for part, secs in sorted(parts.items()))
        lines.append(f"  {node[:12]} on {host}: {counts}")
    lost = manifest.get("jobs_lost_and_rerun")
    if lost:
        lines.append(f"  {lost} job{'s' if lost != 1 else ''} lost with a node and run again")
    return lines


def register(app: typer.Typer) -> None:
    runs_app.command("list")(list_cmd)
    runs_app.command("show")(show_cmd)
    app.add_typer(runs_app, name="runs")
