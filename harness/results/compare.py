"""Compare two runs sample by sample: the same task, case, condition and mode in both, paired.

Typical uses: two models on the same cohort (each run holds one model per task), or one model before and after a
change (same model in both runs: pairs are then also matched on the model). For every accuracy score both runs
recorded, the paired difference (B - A) gets a bootstrap CI and a Wilcoxon signed-rank p, Benjamini-Hochberg
adjusted across all rows.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import HarnessError
from harness.scoring.stats import benjamini_hochberg, paired_comparison
from harness.store.run_store import read_samples


@dataclass
class CompareRow:
    task: str
    condition: str
    mode: str
    metric: str
    n: int
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    p: float
    p_adj: float | None = None


def _index(samples, with_model: bool) -> dict:
    out = defaultdict(dict)
    for s in samples:
        if s.status != "ok":
            continue
        key = (s.task, s.case_id, s.condition, s.mode) + ((s.model,) if with_model else ())
        for metric, value in s.scores.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[key][metric] = float(value)
    return out


def compare_runs(run_a, run_b) -> list[CompareRow]:
    a, b = read_samples(Path(run_a)), read_samples(Path(run_b))
    if not a or not b:
        raise HarnessError(f"{run_a if not a else run_b}: no samples to compare")
    models_a = {(s.task, s.model) for s in a}
    models_b = {(s.task, s.model) for s in b}
    with_model = bool(models_a & models_b)  # same model in both: match on it too
    ia, ib = _index(a, with_model), _index(b, with_model)
    grouped: dict[tuple, tuple[list, list]] = defaultdict(lambda: ([], []))
    for key in sorted(set(ia) & set(ib)):
        task, _case, condition, mode = key[:4]
        for metric in sorted(set(ia[key]) & set(ib[key])):
            xs, ys = grouped[(task, condition, mode, metric)]
            xs.append(ia[key][metric])
            ys.append(ib[key][metric])
    if not grouped:
        raise HarnessError("the two runs share no scored samples (same task, case, condition and mode)")
    rows = []
    for (task, condition, mode, metric), (xs, ys) in sorted(grouped.items()):
        pc = paired_comparison(xs, ys)
        rows.append(CompareRow(task, condition, mode, metric, pc.n, pc.mean_original, pc.mean_defaced,
                               pc.difference.estimate, pc.difference.low, pc.difference.high, pc.wilcoxon.p_value))
    adjusted = benjamini_hochberg([r.p for r in rows]).adjusted
    for row, p_adj in zip(rows, adjusted):
        row.p_adj = p_adj
    return rows
