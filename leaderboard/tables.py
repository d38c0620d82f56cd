"""A board's rows as flat records (CSV, JSON, Parquet, Markdown). Columns come from the task's declared metrics.

Flat record (one per model x mode x defacer; CI = bootstrap 95% over cases, null when undefined):
  task, task_version, model, model_revision, mode, defacer, defacer_version, n_cases, n_pairs,
  per accuracy metric M (continuous/binary):  M_original, M_original_ci_low, M_original_ci_high, M_defaced (+CI),
      M_delta (+CI; mean of defaced - original over complete pairs), M_test, M_p, M_p_adj (Benjamini-Hochberg)
  per categorical accuracy metric M:  M_kappa (+CI), M_test
  per set-level accuracy metric M (e.g. macro-F1):  M_original (+CI), M_defaced (+CI), M_delta (+CI; paired bootstrap)
  per fidelity metric F:  fidelity_F (+CI; mean of task.compare over pairs)
  privacy: reid_rank1 (+CI), reid_rank5 (+CI), reid_detected, reid_same_person, reid_chance_rank1, reid_volumes,
      reid_no_face, reid_attack (the face-recognition attack, null when the privacy stage did not run),
      face_fraction_changed (+CI), face_surface_change_mm (+CI), brain_voxels_changed_mean,
      brain_voxels_changed_max, qc_volumes, defacer_refusals, defacer_failures
  coverage: original_planned, original_ok, original_unparsable, original_failed, defaced_planned, defaced_ok,
      defaced_unparsable, defaced_failed
"""

from __future__ import annotations

import csv
import io

from harness.store.summary import Estimate, SummaryRow, TaskSummary


def _put(rec: dict, name: str, e: Estimate | None) -> None:
    e = e or Estimate(None)
    rec[name], rec[f"{name}_ci_low"], rec[f"{name}_ci_high"] = e.value, e.ci_low, e.ci_high


def columns(summary: TaskSummary) -> list[dict]:
    """Column descriptions (name, description, unit, higher_is_better) for the flat records of a task."""
    cols = [{"name": n, "description": d} for n, d in (
        ("task", "task name"), ("task_version", "task version"), ("model", "model"),
        ("model_revision", "model revision"), ("mode", "single turn, agent or direct"), ("defacer", "defacer"),
        ("defacer_version", "defacer version"), ("n_cases", "cases planned"),
        ("n_pairs", "cases with a parsed answer on both the original and the defaced volume"))]
    for m in summary.accuracy_metrics:
        name, unit, hib = m["name"], m.get("unit", ""), m.get("higher_is_better")
        if m.get("kind") == "categorical":
            cols.append({"name": f"{name}_kappa", "description": f"Cohen's kappa original vs defaced: {m['description']}"})
            continue
        cols += [{"name": f"{name}_original", "description": f"{m['description']} (original)", "unit": unit, "higher_is_better": hib},
                 {"name": f"{name}_defaced", "description": f"{m['description']} (defaced)", "unit": unit, "higher_is_better": hib},
                 {"name": f"{name}_delta", "description": f"defaced - original, paired: {m['description']}", "unit": unit}]
        if m.get("kind") != "set":
            cols.append({"name": f"{name}_p_adj", "description": f"{'McNemar' if m.get('kind') == 'binary' else 'Wilcoxon'} p, "
                                                                f"Benjamini-Hochberg adjusted ({summary.test_family})"})
    for m in summary.fidelity_metrics:
        cols.append({"name": f"fidelity_{m['name']}", "description": m["description"], "unit": m.get("unit", ""),
                     "higher_is_better": m.get("higher_is_better")})
    cols += [{"name": "reid_rank1", "description": "share of defaced volumes a face-recognition attack matched to their "
              "own original first (rank-1 re-identification)", "unit": "fraction", "higher_is_better": False},
             {"name": "reid_detected", "description": "share of defaced volumes where the attack found a face",
              "unit": "fraction", "higher_is_better": False},
             {"name": "face_fraction_changed", "description": "share of face-region head voxels the defacer changed",
              "unit": "fraction", "higher_is_better": True},
             {"name": "face_surface_change_mm", "description": "mean change of the face surface seen from the front",
              "unit": "mm", "higher_is_better": True},
             {"name": "brain_voxels_changed_max", "description": "most brain voxels changed in one volume",
              "unit": "voxels", "higher_is_better": False}]
    return cols


def flat_record(summary: TaskSummary, row: SummaryRow, facts: dict) -> dict:
    model = facts.get("models", {}).get(row.model, {})
    defacer = facts.get("defacers", {}).get(row.defacer, {})
    rec = {"task": summary.task, "task_version": summary.version, "model": row.model,
           "model_revision": None if model.get("revision") is None else str(model.get("revision")),
           "mode": row.mode, "defacer": row.defacer,
           "defacer_version": None if defacer.get("version") is None else str(defacer.get("version")),
           "n_cases": row.n_cases, "n_pairs": row.n_pairs}
    for m in summary.accuracy_metrics:
        name = m["name"]
        res = row.accuracy.get(name)
        if m.get("kind") == "categorical":
            _put(rec, f"{name}_kappa", res.kappa if res else None)
            rec[f"{name}_test"] = res.test if res else None
            continue
        _put(rec, f"{name}_original", res.original if res else None)
        _put(rec, f"{name}_defaced", res.defaced if res else None)
        _put(rec, f"{name}_delta", res.delta if res else None)
        if m.get("kind") == "set":  # a value of the whole set: CIs, no paired test
            continue
        rec[f"{name}_test"] = res.test if res else None
        rec[f"{name}_p"] = res.p_value if res else None
        rec[f"{name}_p_adj"] = res.p_adjusted if res else None
    for m in summary.fidelity_metrics:
        _put(rec, f"fidelity_{m['name']}", row.fidelity.get(m["name"]))
    p = row.privacy
    reid = (p.reidentification if p else None) or {}
    for k in (1, 5):
        _put(rec, f"reid_rank{k}", p.reid(k) if p and p.reidentification else None)
    for key in ("detected", "same_person", "chance_rank1"):
        rec[f"reid_{key}"] = reid.get(key)
    rec["reid_volumes"], rec["reid_no_face"], rec["reid_attack"] = reid.get("n"), reid.get("no_face"), reid.get("attack")
    _put(rec, "face_fraction_changed", p.face_fraction_changed if p else None)
    _put(rec, "face_surface_change_mm", p.face_surface_change_mm if p else None)
    rec["brain_voxels_changed_mean"] = p.brain_voxels_changed_mean if p else None
    rec["brain_voxels_changed_max"] = p.brain_voxels_changed_max if p else None
    rec["qc_volumes"] = p.volumes if p else 0
    rec["defacer_refusals"] = p.refused if p else 0
    rec["defacer_failures"] = p.failed if p else 0
    for cond, cov in (("original", row.coverage_original), ("defaced", row.coverage_defaced)):
        for k, v in cov.to_dict().items():
            rec[f"{cond}_{k}"] = v
    return rec


def to_csv(records: list[dict]) -> str:
    buf = io.StringIO()
    if records:
        writer = csv.DictWriter(buf, fieldnames=list(records[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
    return buf.getvalue()


def fmt(e: Estimate | None, digits: int = 3, scale: float = 1.0, signed: bool = False) -> str:
    if e is None or e.value is None:
        return "–"
    f = f"{{:{'+' if signed else ''}.{digits}f}}"
    text = f.format(e.value * scale)
    if e.ci_low is not None and e.ci_high is not None:
        text += f" [{e.ci_low * scale:.{digits}f}, {e.ci_high * scale:.{digits}f}]"
    return text


def fmt_p(p: float | None) -> str:
    if p is None:
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def markdown(summary: TaskSummary, facts: dict) -> str:
    """The board as a Markdown table (primary metric in full; other metrics as deltas; fidelity; privacy; coverage)."""
    acc = [m for m in summary.accuracy_metrics if m.get("kind") != "categorical"]
    head = ["model", "mode", "defacer"]
    if acc:
        p = acc[0]["name"]
        head += [f"{p} original", f"{p} defaced"]
    head += [f"Δ {m['name']} (p adj.)" for m in acc]
    head += [f"fidelity: {m['name']}" for m in summary.fidelity_metrics]
    head += ["re-identified (rank-1) %", "face changed %", "face surface mm", "brain voxels changed (max)", "pairs", "coverage orig / def"]
    lines = [f"## {summary.title or summary.task} (`{summary.task}` v{summary.version})", "",
             "Estimates are means with bootstrap 95% CIs over cases; Δ = defaced − original over complete pairs; "
             f"p adjusted by Benjamini-Hochberg across {summary.test_family}.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in summary.rows:
        cells = [row.model, row.mode, row.defacer]
        if acc:
            res = row.accuracy.get(acc[0]["name"])
            cells += [fmt(res.original if res else None), fmt(res.defaced if res else None)]
        for m in acc:
            res = row.accuracy.get(m["name"])
            cells.append(f"{fmt(res.delta if res else None, signed=True)} ({fmt_p(res.p_adjusted if res else None)})")
        cells += [fmt(row.fidelity.get(m["name"])) for m in summary.fidelity_metrics]
        pv = row.privacy
        cells += [fmt(pv.reid(1) if pv and pv.reidentification else None, 0, 100.0),
                  fmt(pv.face_fraction_changed if pv else None, 1, 100.0), fmt(pv.face_surface_change_mm if pv else None, 1),
                  "–" if not pv or pv.brain_voxels_changed_max is None else f"{pv.brain_voxels_changed_max:,}",
                  str(row.n_pairs), f"{_cov(row.coverage_original)} / {_cov(row.coverage_defaced)}"]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _cov(c) -> str:
    text = f"{c.ok}/{c.planned}"
    extra = [f"{c.unparsable} unparsable" if c.unparsable else "", f"{c.failed} failed" if c.failed else ""]
    extra = [e for e in extra if e]
    return text + (f" ({', '.join(extra)})" if extra else "")
