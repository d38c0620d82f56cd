"""The static HTML site: one page per board plus an overview. Jinja templates in leaderboard/templates/; CSS and the
sort script are inlined so a page works from file:// and any static host with no request leaving the folder."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import jinja2

from harness.store.summary import Estimate, SummaryRow, TaskSummary
from leaderboard.tables import fmt_p

_ENV = jinja2.Environment(loader=jinja2.PackageLoader("leaderboard", "templates"), autoescape=True,
                          trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)


@dataclass
class Cell:
    text: str
    v: float | str | None = None  # sort key: number, "" = no value (sorts last); None = sort by text
    ci: str = ""
    cls: str = ""
    title: str = ""


@dataclass
class HtmlTable:
    headers: list[dict] = field(default_factory=list)
    rows: list[list[Cell]] = field(default_factory=list)


def _num(x: float | None, digits: int = 3, scale: float = 1.0, signed: bool = False) -> str:
    if x is None:
        return "–"
    return f"{x * scale:{'+' if signed else ''}.{digits}f}"


def est_cell(e: Estimate | None, digits: int = 3, scale: float = 1.0, signed: bool = False, cls: str = "") -> Cell:
    if e is None or e.value is None:
        return Cell("–", "")
    ci = ""
    if e.ci_low is not None and e.ci_high is not None:
        ci = f"[{_num(e.ci_low, digits, scale, signed)}, {_num(e.ci_high, digits, scale, signed)}]"
    return Cell(_num(e.value, digits, scale, signed), round(e.value * scale, 10), ci, cls, f"n = {e.n}")


def _change_class(res, higher_is_better) -> str:
    if res is None or res.p_adjusted is None or res.p_adjusted >= 0.05 or res.delta.value in (None, 0):
        return ""
    worse = (res.delta.value < 0) == bool(higher_is_better)
    return "worse" if worse else "better"


def _cov_cell(c) -> Cell:
    if not c.planned:
        return Cell("–", "")
    note = ", ".join(x for x in (f"{c.unparsable} unparsable" if c.unparsable else "",
                                 f"{c.failed} failed" if c.failed else "") if x)
    return Cell(f"{c.ok}/{c.planned}", round(c.ok / c.planned, 6), note)


def results_table(summary: TaskSummary) -> HtmlTable:
    acc = [m for m in summary.accuracy_metrics if m.get("kind") != "categorical"]
    cat = [m for m in summary.accuracy_metrics if m.get("kind") == "categorical"]
    t = HtmlTable()
    h = t.headers
    h += [{"label": "model", "title": "model"}, {"label": "mode", "title": "single turn, agent or direct"},
          {"label": "defacer", "title": "defacer"}]
    if acc:
        p = acc[0]
        h += [{"label": f"{p['name']} original", "unit": p.get("unit"), "title": p["description"]},
              {"label": f"{p['name']} defaced", "unit": p.get("unit"), "title": p["description"]}]
    for m in acc:
        h += [{"label": f"Δ {m['name']}", "unit": "defaced − original", "title": m["description"]},
              {"label": "p adj.", "unit": {"binary": "McNemar", "set": "no test (set-level)"}.get(m.get("kind"), "Wilcoxon"),
               "title": f"Benjamini-Hochberg adjusted p of {m['name']}"}]
    for m in cat:
        h.append({"label": f"κ {m['name']}", "unit": "original vs defaced", "title": m["description"]})
    for m in summary.fidelity_metrics:
        h.append({"label": f"fidelity: {m['name']}", "unit": m.get("unit") or ("higher is better" if m.get("higher_is_better") else "lower is better"),
                  "title": m["description"]})
    h += [{"label": "re-identified", "unit": "rank-1 %", "title": "share of defaced volumes a face-recognition attack "
           "matched to their own original first (lower is more private)"},
          {"label": "face changed", "unit": "%", "title": "share of face-region head voxels changed"},
          {"label": "face surface", "unit": "mm", "title": "mean change of the face surface seen from the front"},
          {"label": "brain voxels changed", "unit": "mean / max", "title": "brain-mask voxels the defacer changed"},
          {"label": "refused", "unit": "volumes", "title": "volumes the defacer refused or failed on"},
          {"label": "pairs", "title": "cases answered on both volumes"},
          {"label": "coverage original", "unit": "parsed/planned", "title": "parsed answers on original volumes"},
          {"label": "coverage defaced", "unit": "parsed/planned", "title": "parsed answers on defaced volumes"}]
    for row in summary.rows:
        t.rows.append(_result_cells(summary, row, acc, cat))
    return t


def _result_cells(summary: TaskSummary, row: SummaryRow, acc, cat) -> list[Cell]:
    cells = [Cell(row.model), Cell(row.mode or "–"), Cell(row.defacer)]
    if acc:
        res = row.accuracy.get(acc[0]["name"])
        cells += [est_cell(res.original if res else None), est_cell(res.defaced if res else None)]
    for m in acc:
        res = row.accuracy.get(m["name"])
        cls = _change_class(res, m.get("higher_is_better"))
        cells.append(est_cell(res.delta if res else None, signed=True, cls=cls))
        p = res.p_adjusted if res else None
        cells.append(Cell(fmt_p(p), "" if p is None else p, f"raw {fmt_p(res.p_value)}" if res and res.p_value is not None else "",
                          title=(res.note or "") if res else ""))
    for m in cat:
        res = row.accuracy.get(m["name"])
        cells.append(est_cell(res.kappa if res else None))
    for m in summary.fidelity_metrics:
        cells.append(est_cell(row.fidelity.get(m["name"])))
    pv = row.privacy
    cells += [est_cell(pv.reid(1) if pv and pv.reidentification else None, 0, 100.0),
              est_cell(pv.face_fraction_changed if pv else None, 1, 100.0),
              est_cell(pv.face_surface_change_mm if pv else None, 1)]
    if pv and pv.brain_voxels_changed_max is not None:
        cells.append(Cell(f"{pv.brain_voxels_changed_mean:,.0f} / {pv.brain_voxels_changed_max:,}",
                          pv.brain_voxels_changed_max))
    else:
        cells.append(Cell("–", ""))
    cells.append(Cell(str(pv.refused + pv.failed) if pv else "–", (pv.refused + pv.failed) if pv else "",
                      f"of {pv.volumes + pv.refused + pv.failed}" if pv else ""))
    cells += [Cell(str(row.n_pairs), row.n_pairs), _cov_cell(row.coverage_original), _cov_cell(row.coverage_defaced)]
    return cells


def _metric_kind(metric: dict) -> str:
    """A grouped metric's name without its group ("dice_caudate" -> "dice"), for column headings."""
    return metric["name"].removesuffix(f"_{metric['group']}").replace("_", " ")


def grouped_table(summary: TaskSummary, statistic=None) -> HtmlTable | None:
    """Fidelity metrics that carry a group (e.g. a brain region), group x (model, defacer): each metric's mean and
    CI, a group without any value left out; then `statistic` (a tasks.base.SetStatistic of agreement(), e.g. nCR)
    per model and defacer. None when the task has no grouped metrics."""
    grouped = [m for m in summary.fidelity_metrics if m.get("group")]
    if not grouped:
        return None
    kinds = list(dict.fromkeys(_metric_kind(m) for m in grouped))
    by_group: dict[str, dict[str, dict]] = {}
    for m in grouped:
        by_group.setdefault(m["group"], {})[_metric_kind(m)] = m
    rows = summary.rows
    t = HtmlTable([{"label": "group"}])
    for r in rows:
        for kind in kinds:
            m = next(mm for g in by_group.values() for k, mm in g.items() if k == kind)
            t.headers.append({"label": f"{r.defacer} · {kind}", "unit": m.get("unit") or "",
                              "title": f"{r.model} ({r.mode}), {r.defacer}: {m['description'].replace(m['group'], 'group')}"})
    for group, metrics in by_group.items():
        cells = [Cell(group.replace("_", " "))]
        for r in rows:
            cells += [est_cell(r.fidelity.get(metrics[k]["name"]) if k in metrics else None) for k in kinds]
        if any(c.text != "–" for c in cells[1:]):
            t.rows.append(cells)
    if statistic is not None:
        cells = [Cell(statistic.name, title=statistic.description)]
        for r in rows:
            v, lo, hi, n = statistic.value_of(r.agreement or {})
            cells.append(est_cell(Estimate(v, lo, hi, n)))
            cells += [Cell("–", "") for _ in kinds[1:]]
        t.rows.append(cells)
    return t


def privacy_table(reidentification: dict[str, dict]) -> HtmlTable | None:
    """The re-identification attack per condition of one board (task and cohort): the originals' positive control
    first, then each defacer. None when the runs had no privacy stage."""
    if not reidentification:
        return None
    t = HtmlTable([{"label": "condition"}, {"label": "volumes", "title": "volumes with a face in view"},
                   {"label": "face detected", "unit": "%"},
                   {"label": "rank-1", "unit": "%", "title": "own person ranked first among the originals"},
                   {"label": "rank-5", "unit": "%"},
                   {"label": "same person", "unit": "%", "title": "within dlib's 0.6 of the own original"},
                   {"label": "chance rank-1", "unit": "%"},
                   {"label": "no face in view", "unit": "volumes", "title": "no head, skull-stripped, field of view "
                    "ends above the face, or refused by the defacer: neither re-identified nor private"}])
    for name in sorted(reidentification, key=lambda c: (c != "original", c)):
        r = reidentification[name]
        ests = [Estimate(r.get(f"rank{k}"), *(r.get(f"rank{k}_ci") or (None, None)), int(r.get("n_ranked") or 0)) for k in (1, 5)]
        pct = [Cell("–", "") if r.get(k) is None else Cell(f"{100 * r[k]:.0f}", r[k]) for k in ("detected", "same_person", "chance_rank1")]
        t.rows.append([Cell("original (positive control: other views and light)" if name == "original" else name),
                       Cell(str(r.get("n", 0)), r.get("n", 0)), pct[0], est_cell(ests[0], 0, 100.0),
                       est_cell(ests[1], 0, 100.0), pct[1], pct[2], Cell(str(r.get("no_face", 0)), r.get("no_face", 0))])
    return t


def overview_table(entries: list[tuple[str, str, TaskSummary]]) -> HtmlTable:
    """Every board's rows in one table: task, model, defacer, Δ of the primary score, first fidelity, face change."""
    t = HtmlTable([{"label": "task"}, {"label": "model"}, {"label": "defacer"},
                   {"label": "primary score", "unit": "better direction"},
                   {"label": "Δ primary score", "unit": "defaced − original"}, {"label": "p adj."},
                   {"label": "fidelity", "unit": "task's first fidelity metric"},
                   {"label": "face changed", "unit": "%"}, {"label": "pairs"}])
    for name, page, s in entries:
        primary = next((m for m in s.accuracy_metrics if m.get("kind") != "categorical"), None)
        for row in s.rows:
            res = row.accuracy.get(primary["name"]) if primary else None
            model = row.model if not row.mode else f"{row.model} ({row.mode})"
            fid = row.fidelity.get(s.fidelity_metric)
            t.rows.append([
                Cell(name, title=s.title), Cell(model), Cell(row.defacer),
                Cell(primary["name"] if primary else "–",
                     ci=("higher is better" if primary.get("higher_is_better") else "lower is better") if primary else ""),
                est_cell(res.delta if res else None, signed=True, cls=_change_class(res, primary.get("higher_is_better") if primary else True)),
                Cell(fmt_p(res.p_adjusted if res else None), "" if not res or res.p_adjusted is None else res.p_adjusted),
                est_cell(fid),
                est_cell(row.privacy.face_fraction_changed if row.privacy else None, 1, 100.0),
                Cell(str(row.n_pairs), row.n_pairs)])
            t.rows[-1][4].title = f"{primary['name'] if primary else ''}: n = {res.delta.n if res else 0}"
    return t


def render_page(template: str, **context) -> str:
    return _ENV.get_template(template).render(**context)


def agreement_blocks(summary: TaskSummary) -> list[dict]:
    return [{"label": f"{r.model} ({r.mode}) · {r.defacer}: {r.n_pairs} pairs",
             "json": json.dumps(r.agreement, indent=2, ensure_ascii=False)} for r in summary.rows if r.agreement]
