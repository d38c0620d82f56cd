"""Build a leaderboard folder from run directories.

    DIR/index.html                  overview of every board
    DIR/<board>.html                one page per board (a board = one task, or one task variant with --separate)
    DIR/plots/<board>-*.png|svg     figures
    DIR/results/<board>.csv|.json|.md|.parquet       flat rows (leaderboard.tables documents the columns)
    DIR/results/<board>-pairs.csv|.parquet           one row per case x model x mode x defacer, case ids hashed:
                                                     accuracy scores on both conditions, the pair's fidelity values
    DIR/leaderboard.json            schema "harness-leaderboard/1": boards with facts, columns and TaskSummary
    DIR/README.md                   the boards as Markdown

Nothing here reads transcripts, renders or volumes; case ids appear only as salted hashes, and the finished folder
is scanned for case ids, local paths and secrets before build returns (LeakError otherwise).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from harness.results.aggregate import (
    AggregateError,
    group_cells,
    numeric,
    privacy_by_defacer,
    reidentification_by_condition,
    summarize_task,
)
from harness.store.run_store import read_run
from harness.core.files import atomic_write_text
from harness.core.errors import HarnessError
from leaderboard import plots
from leaderboard.boards import Board, board_facts, split_boards
from leaderboard.anonymize import check_clean, clean, cohort_salt, hash_case, scrub_paths
from leaderboard.built_files import record_build
from leaderboard.site import agreement_blocks, grouped_table, overview_table, privacy_table, render_page, results_table
from leaderboard.tables import columns, flat_record, markdown, to_csv

SCHEMA = "harness-leaderboard/1"


@dataclass
class BuildResult:
    out_dir: Path
    boards: list[str]
    seconds: float


def build(run_dirs: Iterable, out_dir, *, tasks: Mapping | None = None, separate: bool = False,
          salt_dir: Path | None = None) -> BuildResult:
    """Aggregate `run_dirs` into a leaderboard folder at `out_dir` (replaced if it holds an earlier leaderboard)."""
    t0 = time.perf_counter()
    run_dirs = [Path(d) for d in run_dirs]
    if not run_dirs:
        raise HarnessError("no run directories given")
    runs = [read_run(d) for d in run_dirs]
    if not any(r.samples for r in runs):
        raise HarnessError(f"no samples in {', '.join(str(d) for d in run_dirs)}; nothing to put on a leaderboard")
    boards = split_boards(runs, separate)
    out = _prepare(Path(out_dir), run_dirs)
    built, entries, index_boards, case_ids = [], [], [], set()
    nav = [{"name": b.name, "task": b.name if b.name != b.task else b.task, "page": f"{b.name}.html"} for b in boards]
    for board in boards:
        task = _task(tasks, board.task)
        samples = [s for r in board.runs for s in r.samples if s.task == board.task]
        qc = [q for r in board.runs for q in r.qc if q.get("task") == board.task]
        rejected = [x for r in board.runs for x in r.rejected if x.get("task") == board.task]
        reid = [x for r in board.runs for x in r.reidentification if x.get("task") == board.task]
        tc = group_cells(samples, qc, rejected)[board.task]
        case_ids |= tc.cases
        summary = summarize_task(task, tc, privacy_by_defacer(qc, reid))
        board_reid = {cond: r for (t, cond), r in reidentification_by_condition(reid).items() if t == board.task}
        facts = board_facts(board, {r.model for r in summary.rows}, {r.defacer for r in summary.rows}, len(tc.cases))
        _write_board(out, board, task, summary, facts, tc, cohort_salt(board.cohort_hash or board.task, salt_dir), nav,
                     board_reid)
        entries.append((board.name, f"{board.name}.html", summary))
        index_boards.append({"name": board.name, "task": board.task, "page": f"{board.name}.html",
                             "title": summary.title, "description": scrub_paths(str(getattr(task, "description", ""))),
                             "cases": len(tc.cases), "metric": summary.metric, "fidelity_metric": summary.fidelity_metric,
                             "facts": facts, "summary": summary})
        built.append(board.name)
    _write_index(out, index_boards, entries)
    forbidden = set(case_ids) | {str(d.resolve()) for d in run_dirs} | {str(Path.cwd()), str(Path.home())}
    check_clean(out, forbidden - {"/", ""})
    record_build(out, case_ids, salt_dir)
    return BuildResult(out, built, time.perf_counter() - t0)


def _task(tasks: Mapping | None, name: str):
    if tasks is not None:
        if name not in tasks:
            raise AggregateError(f"no task definition for {name}")
        return tasks[name]
    from tasks import get_task

    return get_task(name)


def _prepare(out: Path, run_dirs: list[Path]) -> Path:
    out = out.resolve()
    if any(out == d.resolve() or d.resolve() in out.parents for d in run_dirs):
        raise HarnessError(f"{out}: the leaderboard folder must not be inside a run directory")
    if out.exists():
        if not out.is_dir():
            raise HarnessError(f"{out}: exists and is not a folder")
        if any(out.iterdir()) and not (out / "leaderboard.json").exists():
            raise HarnessError(f"{out}: folder is not empty and holds no earlier leaderboard; choose another --out")
        shutil.rmtree(out)
    (out / "results").mkdir(parents=True)
    (out / "plots").mkdir()
    return out


def _write_board(out: Path, board: Board, task, summary, facts: dict, tc, salt: bytes, nav: list[dict],
                 reidentification: dict[str, dict]) -> None:
    name = board.name
    records = [flat_record(summary, row, facts) for row in summary.rows]
    atomic_write_text(out / "results" / f"{name}.csv", to_csv(records))
    _parquet(records, out / "results" / f"{name}.parquet")
    doc = {"schema": SCHEMA, "board": name, "task": summary.task, "facts": facts, "columns": columns(summary),
           "rows": records, "summary": summary.to_dict()}
    atomic_write_text(out / "results" / f"{name}.json", json.dumps(doc, indent=1, ensure_ascii=False, allow_nan=False) + "\n")
    atomic_write_text(out / "results" / f"{name}.md", markdown(summary, facts))
    pairs = _pair_records(task, summary, tc, salt)
    atomic_write_text(out / "results" / f"{name}-pairs.csv", to_csv(pairs))
    _parquet(pairs, out / "results" / f"{name}-pairs.parquet")

    statistic = getattr(task, "board_statistic", None)
    figures = [f for f in (plots.tradeoff(summary, out / "plots", f"{name}-tradeoff"),
                           statistic and plots.tradeoff_statistic(summary, statistic, out / "plots",
                                                                  f"{name}-tradeoff-{statistic.name.lower()}"),
                           plots.deltas(summary, out / "plots", f"{name}-deltas")) if f]
    for field in plots.measurement_fields(task):
        f = plots.bland_altman_plot(summary, tc.cells, field, out / "plots", f"{name}-bland-altman-{field}")
        if f:
            figures.append(f)
    if f := plots.coverage(summary, out / "plots", f"{name}-coverage"):
        figures.append(f)
    primary = next((m for m in summary.accuracy_metrics if m.get("kind") != "categorical"), None)
    headline, label = _headline(summary)
    html = render_page("task.html.j2", page_title=summary.title or summary.task, current=name, boards=nav,
                       summary=summary, description=scrub_paths(str(getattr(task, "description", ""))), facts=facts,
                       results=results_table(summary), figures=figures, grouped=grouped_table(summary, statistic), agreement=agreement_blocks(summary),
                       name=name, headline=headline, headline_label=label, primary=primary,
                       harness_versions=facts["harness_versions"], built=_today(),
                       privacy=privacy_table(reidentification),
                       attack=", ".join(sorted({str(r.get("attack")) for r in reidentification.values()})))
    atomic_write_text(out / f"{name}.html", html)


def _headline(summary) -> tuple[str, str]:
    """The number a reader should see first: the largest significant change of the primary score, if any."""
    primary = next((m for m in summary.accuracy_metrics if m.get("kind") != "categorical"), None)
    if not primary:
        return str(sum(r.n_pairs for r in summary.rows)), "paired answers"
    sig = [r for r in summary.rows if (res := r.accuracy.get(primary["name"])) and res.p_adjusted is not None
           and res.p_adjusted < 0.05]
    return f"{len(sig)} of {len(summary.rows)}", f"model × defacer cells where {primary['name']} changed significantly"


def _pair_records(task, summary, tc, salt: bytes) -> list[dict]:
    """One row per case x model x mode x defacer: each accuracy score on both conditions (a reader recomputes every
    delta and test from them; hashed ids keep the pairing) and the pair's fidelity values - the declared metrics,
    then whatever else compare() measures per case (seg-fidelity: Dice and volume change of every raw label)."""
    acc = [m["name"] for m in summary.accuracy_metrics]
    declared = [m["name"] for m in summary.fidelity_metrics]
    values = [got for cell in tc.cells for got in cell.compared(task).values()]  # computed once per cell
    extra = {k for got in values for k in got if k not in declared}
    extra = {k for k in extra if all(isinstance(got.get(k), (int, float, type(None))) and not isinstance(got.get(k), bool)
                                     for got in values)}  # measurements only, not labels or notes
    fidelity = declared + sorted(extra, key=_natural)
    out = []
    for cell in tc.cells:
        for case in sorted(tc.cases):
            o, d = cell.original.get(case), cell.defaced.get(case)
            rec = {"case": hash_case(case, salt), "model": cell.model, "mode": cell.mode, "defacer": cell.defacer,
                   "original_status": o.status if o else "not run", "defaced_status": d.status if d else "not run",
                   "original_error": _kind(o), "defaced_error": _kind(d)}
            for m in acc:
                rec[f"{m}_original"] = _score(o, m)
                rec[f"{m}_defaced"] = _score(d, m)
            got = cell.compared(task).get(case, {})
            for name in fidelity:
                rec[name] = float(got[name]) if numeric(got.get(name)) else None
            out.append(rec)
    out.sort(key=lambda r: (r["model"], r["mode"], r["defacer"], r["case"]))
    return out


def _natural(name: str) -> tuple:
    """dice_label_2 before dice_label_10."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name))


def _kind(s) -> str | None:
    if s is None or not s.error:
        return None
    return scrub_paths(str(s.error.get("kind", "error")))[:60]


def _score(s, metric: str):
    if s is None or s.status != "ok":
        return None
    v = s.scores.get(metric)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else (None if v is None else str(v))


def _parquet(records: list[dict], path: Path) -> None:
    table = pa.Table.from_pylist(records) if records else pa.table({})
    pq.write_table(table, path)


def _write_index(out: Path, boards: list[dict], entries) -> None:
    all_rows = [r for b in boards for r in b["summary"].rows]
    html = render_page("index.html.j2", page_title="Overview", current="", boards=boards,
                       overview=overview_table(entries), n_models=len({r.model for r in all_rows}),
                       n_defacers=len({r.defacer for r in all_rows}), n_pairs=sum(r.n_pairs for r in all_rows),
                       harness_versions=sorted({v for b in boards for v in b["facts"]["harness_versions"]}),
                       built=_today())
    atomic_write_text(out / "index.html", html)
    doc = {"schema": SCHEMA, "built": _today(),
           "boards": [{"name": b["name"], "task": b["task"], "title": b["title"], "page": b["page"],
                       "results": f"results/{b['name']}.json", "facts": b["facts"],
                       "summary": b["summary"].to_dict()} for b in boards]}
    atomic_write_text(out / "leaderboard.json", json.dumps(clean(doc), indent=1, ensure_ascii=False, allow_nan=False) + "\n")
    readme = ["# Defacing fidelity leaderboard", "",
              "Built by `harness leaderboard build`. Pages: `index.html`; data: `results/`.", ""]
    readme += [markdown(b["summary"], b["facts"]) for b in boards]
    atomic_write_text(out / "README.md", "\n".join(readme))


def _today() -> str:
    stamp = os.environ.get("SOURCE_DATE_EPOCH")  # reproducible builds
    when = datetime.fromtimestamp(int(stamp), timezone.utc) if stamp and stamp.isdigit() else datetime.now(timezone.utc)
    return when.strftime("%Y-%m-%d %H:%M UTC")
