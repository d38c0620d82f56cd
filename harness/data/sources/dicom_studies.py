"""A folder of head-CT DICOM studies plus a reports/labels CSV.

Layout:
    ROOT/reports.csv (or labels.csv)   columns: study (folder under ROOT holding one study's DICOM files),
                                       id (optional; default the study folder name), report (reference text),
                                       and the task's other truth columns (for ct-report also one true/false
                                       column per finding label: iph, sdh, ...; see `harness tasks`)
    ROOT/<study>/...                   DICOM files (any depth; the largest series is used when several)
Any task's truth columns (evans_ratio, ...) are read the same way.
"""

from __future__ import annotations

import csv
from pathlib import Path

from harness.data.sources.manifest import build_case


def read(location: str, task, *, limit=None, cache_dir=None):
    root = Path(location)
    table = next((root / n for n in ("reports.csv", "labels.csv") if (root / n).exists()), None)
    if table is None:
        return [], [(str(root), "no reports.csv or labels.csv")]
    with open(table, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    cases, problems, seen = [], [], set()
    for n, row in enumerate(rows, start=2):  # row 1 is the header
        study = (row.get("study") or row.get("path") or "").strip()
        case_id = (row.get("id") or "").strip() or Path(study).name
        name = case_id or f"line {n}"
        if not study:
            problems.append((name, "no study folder in column 'study'"))
            continue
        if case_id in seen:
            problems.append((name, "duplicate id"))
            continue
        try:
            truth = task.truth_from_columns(row)
        except ValueError as exc:
            problems.append((name, str(exc)))
            continue
        case, problem = build_case({"id": case_id, "volumes": {"ct": study}, "truth": truth}, root, task, row_name=name, source_meta={"source": "dicom"})
        if problem:
            problems.append((name, problem))
            continue
        seen.add(case_id)
        cases.append(case)
        if limit is not None and len(cases) >= limit:
            break
    return cases, problems
