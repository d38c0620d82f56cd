"""summary.json of a run: every sample of the run (earlier sessions of a resumed run included) aggregated."""

from __future__ import annotations

from collections import Counter

import harness
from harness.core.sample import utc_now
from harness.results.aggregate import aggregate
from harness.store.summary import Coverage, Summary
from harness.store.run_store import read_qc, read_reidentification, read_rejected


def summarize_run(store, runner) -> Summary:
    """Aggregate the run's samples into summary.json and return it. `runner` gives the tasks and stage timings."""
    samples = store.load_samples()
    failures = Counter(s.error.get("kind", "?") for s in samples if s.status == "failed" and s.error)
    counts = Counter(s.status for s in samples)
    summary = Summary(
        run=store.directory.name, created_at=utc_now(), harness_version=harness.__version__,
        counts=Coverage(planned=len(samples), ok=counts["ok"], unparsable=counts["unparsable"], failed=counts["failed"]),
        failures=dict(failures), stage_seconds={k: round(v, 3) for k, v in runner.stage_seconds.items()},
        tasks=aggregate(samples, runner.tasks, read_qc(store.directory), read_rejected(store.directory),
                        read_reidentification(store.directory)),
    )
    store.write_summary(summary)
    return summary
