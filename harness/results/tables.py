"""summary.json as terminal tables (rich): the run overview and every metric of one task."""

from __future__ import annotations

from harness.store.summary import Coverage, Estimate, MetricResult, Summary, SummaryRow, TaskSummary


def _fmt(e: Estimate, digits: int = 3) -> str:
    if e.value is None:
        return "-"
    text = f"{e.value:.{digits}f}"
    if e.ci_low is not None and e.ci_high is not None:
        text += f" [{e.ci_low:.{digits}f}, {e.ci_high:.{digits}f}]"
    return text


def _cov(c: Coverage) -> str:
    if not c.planned:
        return "-"
    text = f"{c.ok}/{c.planned}"
    if c.unparsable:
        text += f", {c.unparsable} unparsable"
    if c.failed:
        text += f", {c.failed} failed"
    return text


def summary_tables(summary: Summary) -> list:
    """One rich Table per task: model x defacer, scores on original and defaced, fidelity with 95% CI, coverage."""
    from rich.table import Table

    tables = []
    for task in summary.tasks:
        table = Table(title=f"{task.task}  ({task.metric}{'' if task.higher_is_better else ', lower is better'}; "
                            f"fidelity: {task.fidelity_metric}; 95% CI)", title_justify="left")
        # the privacy stage's rank-1 re-identification, when the run had it
        reid = any(r.privacy is not None and r.privacy.reidentification for r in task.rows)
        for column in ("model", "mode", "defacer", f"{task.metric} original", f"{task.metric} defaced",
                       f"fidelity ({task.fidelity_metric})", *(["re-identified (rank-1)"] if reid else []),
                       "pairs", "coverage original", "coverage defaced"):
            table.add_column(column, overflow="fold")
        for row in task.rows:
            fidelity = row.fidelity.get(task.fidelity_metric) or next(iter(row.fidelity.values()), Estimate(None))
            shown = [_fmt(row.privacy.reid(1), 2) if row.privacy is not None and row.privacy.reidentification else "-"] if reid else []
            table.add_row(row.model, row.mode or "-", row.defacer, _fmt(row.score_original), _fmt(row.score_defaced), _fmt(fidelity),
                          *shown, str(row.n_pairs), _cov(row.coverage_original), _cov(row.coverage_defaced))
        tables.append(table)
        if len(task.accuracy_metrics) > 1 or len(task.fidelity_metrics) > 1:
            tables.extend(metric_tables(task))
    return tables


def _delta(r: MetricResult) -> str:
    """defaced value and the paired change, starred when the BH-adjusted p is below 0.05."""
    if r.defaced.value is None:
        return "-"
    text = f"{r.defaced.value:.3f}"
    if r.delta.value is not None:
        text += f" ({r.delta.value:+.3f}{'*' if r.p_adjusted is not None and r.p_adjusted < 0.05 else ''})"
    return text


def metric_tables(task: TaskSummary) -> list:
    """For a task with several metrics, one table per model x mode: every accuracy metric on the original and under
    each defacer (paired change in brackets), then every fidelity metric per defacer with its 95% CI."""
    from rich.table import Table

    tables = []
    by_model: dict[tuple[str, str], list[SummaryRow]] = {}
    for row in task.rows:
        by_model.setdefault((row.model, row.mode), []).append(row)
    for (model, mode), rows in by_model.items():
        table = Table(title=f"{task.task}, {model} ({mode or '-'}): every metric - defaced (paired change, * BH p<0.05); "
                            f"fidelity [95% CI]", title_justify="left")
        table.add_column("metric", overflow="fold")
        table.add_column("original", overflow="fold")
        for row in rows:
            table.add_column(row.defacer, overflow="fold")
        for m in task.accuracy_metrics:
            name = m["name"]
            results = [row.accuracy.get(name, MetricResult()) for row in rows]
            original = next((r.original for r in results if r.original.value is not None), Estimate(None))
            table.add_row(name, "-" if original.value is None else f"{original.value:.3f}", *(_delta(r) for r in results))
        table.add_section()
        for m in task.fidelity_metrics:
            name = m["name"]
            table.add_row(f"fidelity: {name}", "", *(_fmt(row.fidelity.get(name, Estimate(None)), 2) for row in rows))
        tables.append(table)
    return tables
