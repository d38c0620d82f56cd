"""What `harness eval` prints at the end: the per-task summary tables, the run directory and what to do next."""

from __future__ import annotations

import os

from rich.console import Console

from harness.engine.rejected import rejected_summary
from harness.results.tables import summary_tables


def print_outcome(outcome, console: Console | None = None) -> None:
    console = console or Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 160  # logs and pipes: rich's 80 columns would fold the summary's numbers onto many lines
    if outcome.summary is not None:
        for table in summary_tables(outcome.summary):
            console.print(table)
    c = outcome.counts
    console.print(
        f"samples: {c.get('ok', 0)} ok, {c.get('unparsable', 0)} unparsable, {c.get('failed', 0)} failed"
        f" ({outcome.skipped_done} already done before this run); model calls: {outcome.model_calls};"
        f" defacer runs: {outcome.defacer_runs}; wall time: {outcome.wall_seconds:.1f} s"
    )
    console.print(f"run directory: {outcome.run_dir}")
    if outcome.rejected:
        console.print(rejected_summary(outcome.rejected, outcome.run_dir), highlight=False, markup=False)
    if c.get("failed", 0):
        console.print(f"failures: harness runs show {outcome.run_dir} --failures 5")
    console.print(f"leaderboard: harness leaderboard build {outcome.run_dir} --out leaderboard-site")
