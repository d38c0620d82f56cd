"""Cohort rows a run could not use: one summary for the start and the end of `harness eval` and for `harness runs
show`, so rejected rows never vanish into a count."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from harness.store.run_store import REJECTED

SHOWN = 3


def rejected_summary(rejected: list[dict], run_dir: Path | str | None = None) -> str:
    """'N cohort rows rejected (task: n, ...), not evaluated but counted in coverage; first: id: reason ...'."""
    by_task = Counter(r["task"] for r in rejected)
    head = (f"{len(rejected)} cohort row{'s' if len(rejected) != 1 else ''} rejected "
            f"({', '.join(f'{t}: {n}' for t, n in sorted(by_task.items()))}), not evaluated but counted in coverage")
    lines = [head] + [f"  {r['case_id']}: {r['reason'][:200]}" for r in rejected[:SHOWN]]
    if len(rejected) > SHOWN or run_dir is not None:
        where = f"all in {Path(run_dir) / REJECTED}" if run_dir is not None else ""
        more = f"{len(rejected) - SHOWN} more" if len(rejected) > SHOWN else ""
        lines.append("  " + "; ".join(filter(None, (more, where))))
    return "\n".join(lines)
