"""Leaderboard figures (matplotlib, Agg; PNG and SVG): privacy vs fidelity, paired score deltas, coverage and
Bland-Altman for measurements. Okabe-Ito colours (colour-blind safe), one marker shape per model so points stay
apart without colour, labelled axes with units."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from harness.scoring.stats import bland_altman  # noqa: E402
from harness.store.summary import Estimate, TaskSummary  # noqa: E402

OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
STATUS_COLOURS = {"ok": "#009E73", "unparsable": "#E69F00", "failed": "#D55E00", "not run": "#BBBBBB"}

plt.rcParams.update({"svg.hashsalt": "harness-leaderboard", "font.size": 9, "axes.spines.top": False,
                     "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3})


@dataclass
class Figure:
    stem: str  # file name without extension, under plots/
    title: str
    caption: str


def _save(fig, out: Path, stem: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / f"{stem}.png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    fig.savefig(out / f"{stem}.svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)


def _label(metric: dict) -> str:
    unit = metric.get("unit")
    return metric["name"].replace("_", " ") + (f" ({unit})" if unit else "")


def _err(e: Estimate, scale: float = 1.0):
    if e.value is None:
        return None, None
    lo = e.value - e.ci_low if e.ci_low is not None else 0.0
    hi = e.ci_high - e.value if e.ci_high is not None else 0.0
    return e.value * scale, [[max(lo, 0.0) * scale], [max(hi, 0.0) * scale]]


def _series(summary: TaskSummary):
    defacers = sorted({r.defacer for r in summary.rows})
    models = sorted({(r.model, r.mode) for r in summary.rows})
    colour = {d: OKABE_ITO[i % len(OKABE_ITO)] for i, d in enumerate(defacers)}
    marker = {m: MARKERS[i % len(MARKERS)] for i, m in enumerate(models)}
    return defacers, models, colour, marker


def _model_label(model: str, mode: str, models) -> str:
    """The model's name, with its mode only when the board has more than one mode."""
    return model if len({md for _, md in models}) == 1 else f"{model} ({mode})"


def _legend(ax, defacers, models, colour, marker) -> None:
    """Colour = defacer, shape = model: two short legends instead of one entry per combination."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], ls="", marker="o", ms=7, color=colour[d], label=d) for d in defacers]
    handles += [Line2D([], [], ls="", marker=marker[m], ms=7, color="#444444", label=_model_label(*m, models))
                for m in models]
    ax.legend(handles=handles, fontsize=7, frameon=False, loc="best")


def _privacy_scatter(summary: TaskSummary, points, annotate: bool = False):
    """Axes with one point per (row, x privacy estimate as a share, y estimate), 95% CI whiskers, the legend."""
    defacers, models, colour, marker = _series(summary)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for r, x, y in points:
        xv, xerr = _err(x, 100.0)
        yv, yerr = _err(y)
        ax.errorbar(xv, yv, xerr=xerr, yerr=yerr, fmt=marker[(r.model, r.mode)], color=colour[r.defacer],
                    ms=7, capsize=3, lw=1.2)
        if annotate:
            ax.annotate(r.defacer, (xv, yv), textcoords="offset points", xytext=(6, 4), fontsize=7)
    _legend(ax, defacers, models, colour, marker)
    return ax


def tradeoff(summary: TaskSummary, out: Path, stem: str) -> Figure | None:
    """Privacy vs the primary fidelity metric; one point per defacer x model. Privacy is rank-1 re-identification by
    the face-recognition attack when the runs had the privacy stage, else the share of face voxels changed."""
    fid = summary.fidelity_metrics[0] if summary.fidelity_metrics else None
    reid = any(r.privacy is not None and r.privacy.reidentification for r in summary.rows)
    points = [(r, r.privacy.reid(1) if reid else r.privacy.face_fraction_changed, r.fidelity.get(fid["name"]) if fid else None)
              for r in summary.rows if r.privacy is not None]
    points = [(r, x, y) for r, x, y in points if x.value is not None and y is not None and y.value is not None]
    if not points:
        return None
    ax = _privacy_scatter(summary, points)
    ax.set_xlabel("re-identified by face recognition, rank-1 (%)  ←  more private" if reid
                  else "privacy: face-region head voxels changed (%)  →  more face removed")
    better = "higher is better" if fid.get("higher_is_better") else "lower is better"
    ax.set_ylabel(f"fidelity: {_label(fid)}  ({better})")
    ax.set_title(f"{summary.task}: privacy vs fidelity (95% CI)", loc="left")
    _save(ax.figure, out, stem)
    return Figure(stem, "Privacy vs fidelity",
                  "Each point is one defacer with one model; whiskers are bootstrap 95% CIs over cases (x over "
                  "defaced volumes, y over paired cases). "
                  + ("Privacy: the share of defaced volumes a face-recognition attack (dlib) matched to their own "
                     "original first. " if reid else "")
                  + f"Fidelity: {fid['description']}.")


def tradeoff_statistic(summary: TaskSummary, statistic, out: Path, stem: str) -> Figure | None:
    """Re-identification (rank-1, privacy stage) vs a cohort-level statistic of agreement() (tasks.base.SetStatistic,
    e.g. nCR as in Molchanova et al. 2024, Fig. 5); one point per defacer x model, 95% CIs on both axes."""
    points = []
    for r in summary.rows:
        if r.privacy is None or not r.privacy.reidentification:
            continue
        x = r.privacy.reid(1)
        y = Estimate(*statistic.value_of(r.agreement or {}))
        if x.value is not None and y.value is not None:
            points.append((r, x, y))
    if not points:
        return None
    ax = _privacy_scatter(summary, points, annotate=True)
    ax.set_xlabel("re-identified by face recognition, rank-1 (%)  ←  more private")
    better = "higher is better" if statistic.higher_is_better else "lower is better"
    ax.set_ylabel(f"{statistic.name}  ({better})")
    ax.set_title(f"{summary.task}: re-identification vs {statistic.name} (95% CI)", loc="left")
    _save(ax.figure, out, stem)
    return Figure(stem, f"Re-identification vs {statistic.name}",
                  "Each point is one defacer with one model; x: the share of defaced volumes a face-recognition "
                  "attack (dlib) matched to their own original first (bootstrap 95% CI over volumes); y: "
                  f"{statistic.description} (bootstrap 95% CI over cases). The lower left corner is best.")


def deltas(summary: TaskSummary, out: Path, stem: str) -> Figure | None:
    """Paired score change (defaced - original) per defacer and model, one panel per accuracy metric."""
    def has_delta(r, m) -> bool:
        return bool(r.accuracy.get(m["name"])) and r.accuracy[m["name"]].delta.value is not None

    # a metric no row could measure (e.g. a region the segmenter does not label) gets no empty panel
    metrics = [m for m in summary.accuracy_metrics if m.get("kind") != "categorical"
               and any(has_delta(r, m) for r in summary.rows)]
    rows = [r for r in summary.rows if any(has_delta(r, m) for m in metrics)]
    if not metrics or not rows:
        return None
    defacers, models, colour, marker = _series(summary)
    labels = [f"{r.defacer} · {_model_label(r.model, r.mode, models)}" for r in rows]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics) + 1.6, 0.42 * len(rows) + 1.4),
                             sharey=True, squeeze=False)
    for ax, m in zip(axes[0], metrics):
        for i, r in enumerate(rows):
            res = r.accuracy.get(m["name"])
            v, err = _err(res.delta) if res else (None, None)
            if v is not None:
                ax.errorbar(v, i, xerr=err, fmt=marker[(r.model, r.mode)], color=colour[r.defacer], ms=6, capsize=3)
        ax.axvline(0, color="#555555", lw=0.8)
        worse = "←" if m.get("higher_is_better") else "→"
        ax.set_xlabel(f"Δ {_label(m)}\ndefaced − original ({worse} worse)")
    axes[0][0].set_yticks(range(len(rows)), labels)
    axes[0][0].invert_yaxis()
    fig.suptitle(f"{summary.task}: change in score after defacing (paired, 95% CI)", x=0.01, ha="left", fontsize=10)
    fig.tight_layout()
    _save(fig, out, stem)
    return Figure(stem, "Score change after defacing",
                  "Mean paired difference (defaced − original) over cases answered on both volumes; whiskers are "
                  "bootstrap 95% CIs. An interval that crosses the vertical line is compatible with no change.")


def coverage(summary: TaskSummary, out: Path, stem: str) -> Figure | None:
    """Stacked bars: how many planned samples were parsed, unparsable, failed or not run, per model and condition."""
    bars = []
    seen = set()
    for r in summary.rows:
        key = (r.model, r.mode, "original")
        if key not in seen:
            seen.add(key)
            bars.append((f"{r.model} ({r.mode}) · original", r.coverage_original))
        bars.append((f"{r.model} ({r.mode}) · {r.defacer}", r.coverage_defaced))
    if not bars:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 0.34 * len(bars) + 1.2))
    for i, (label, c) in enumerate(bars):
        left = 0
        parts = {"ok": c.ok, "unparsable": c.unparsable, "failed": c.failed,
                 "not run": max(c.planned - c.ok - c.unparsable - c.failed, 0)}
        for status, n in parts.items():
            pct = 100.0 * n / c.planned if c.planned else 0.0
            ax.barh(i, pct, left=left, color=STATUS_COLOURS[status], label=status if i == 0 else None,
                    edgecolor="white", lw=0.5)
            left += pct
    ax.set_yticks(range(len(bars)), [b[0] for b in bars])
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of planned samples (%)")
    ax.set_title(f"{summary.task}: coverage", loc="left")
    ax.legend(ncol=4, fontsize=7, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.35 if len(bars) < 5 else -0.12))
    _save(fig, out, stem)
    return Figure(stem, "Coverage",
                  "Parsed answers are scored; unparsable answers and failures (timeouts, refusals, errors) are counted "
                  "here and left out of every paired statistic.")


def measurement_fields(task) -> list[str]:
    """Numeric top-level fields of a task's answer schema: the measurements a Bland-Altman plot is made for."""
    schema = getattr(task, "answer_schema", {}) or {}
    props = schema.get("properties", {}) if isinstance(schema, dict) else {}
    out = []
    for name, spec in props.items():
        types = spec.get("type") if isinstance(spec, dict) else None
        types = types if isinstance(types, list) else [types]
        if any(t in ("number", "integer") for t in types):
            out.append(name)
    return out


def bland_altman_plot(summary: TaskSummary, cells, field: str, out: Path, stem: str) -> Figure | None:
    """Bland-Altman of a measurement: defaced - original vs their mean, a panel per model, colours per defacer."""
    defacers, models, colour, marker = _series(summary)
    panels: dict[tuple[str, str], list] = {}
    for cell in cells:
        pts = [(o.answer.get(field), d.answer.get(field)) for _, o, d in cell.pairs()
               if isinstance(o.answer, dict) and isinstance(d.answer, dict)]
        pts = [(float(a), float(b)) for a, b in pts if _num(a) and _num(b)]
        if pts:
            panels.setdefault((cell.model, cell.mode), []).append((cell.defacer, pts))
    if not panels:
        return None
    n = len(panels)
    ncol = min(n, 3)
    nrow = math.ceil(n / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.4 * nrow), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax, ((model, mode), series) in zip(axes.flat, sorted(panels.items())):
        for defacer, pts in series:
            a = [p[0] for p in pts]
            b = [p[1] for p in pts]
            ba = bland_altman(a, b)
            c = colour[defacer]
            ax.scatter([(x + y) / 2 for x, y in pts], [y - x for x, y in pts], s=16, color=c, alpha=0.75,
                       marker=marker[(model, mode)], label=f"{defacer}: bias {ba.bias:+.3g}")
            if math.isfinite(ba.bias):
                ax.axhline(ba.bias, color=c, lw=1.2)
            for loa in (ba.loa_low, ba.loa_high):
                if math.isfinite(loa):
                    ax.axhline(loa, color=c, lw=0.9, ls="--")
        ax.axhline(0, color="#555555", lw=0.6)
        ax.set_title(_model_label(model, mode, models), loc="left", fontsize=9)
        ax.set_xlabel(f"mean of original and defaced {field}")
        ax.set_ylabel(f"defaced − original {field}")
        ax.legend(fontsize=7, frameon=True, framealpha=0.85, edgecolor="none", loc="best")
    fig.suptitle(f"{summary.task}: Bland-Altman of {field} (solid: bias, dashed: 95% limits of agreement)",
                 x=0.01, ha="left", fontsize=10)
    fig.tight_layout()
    _save(fig, out, stem)
    return Figure(stem, f"Bland-Altman: {field}",
                  f"Agreement of the {field} the model reports on the defaced and the original volume of the same "
                  "case. Points near zero mean defacing did not change the measurement.")


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
