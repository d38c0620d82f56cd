"""A folder of head-CT DICOM studies plus a reports/labels CSV.

Layout:
    ROOT/reports.csv (or labels.csv)   columns: study (folder under ROOT holding one study's DICOM files),
                                       id (optional; default the study folder name), report (reference text),
                                       and optional finding columns named by harness.data.truth.FINDING_KEYS
                                       (true/false/1/0/yes/no)
    ROOT/<study>/...                   DICOM files (any depth; the largest series is used when several)
For tasks other than ct-report the CSV's truth columns (evans_ratio, ...) are used the same way.
"""

from __future__ import annotations

import csv
from pathlib import Path

from harness.data.sources.manifest import KNOWN_TRUTH_COLUMNS, build_case
from harness.data.truth import FINDING_KEYS

TRUE = {"1", "true", "yes", "y", "present", "positive"}
FALSE = {"0", "false", "no", "n", "absent", "negative"}


def read(location: str, task: str, *, limit=None, cache_dir=None):
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
        truth: dict = {k: v for k, v in row.items() if k in KNOWN_TRUTH_COLUMNS and v not in (None, "")}
        findings = {}
        bad = None
        for key in FINDING_KEYS:
            value = (row.get(key) or "").strip().lower()
            if not value:
                continue
            if value in TRUE:
                findings[key] = True
            elif value in FALSE:
                findings[key] = False
            else:
                bad = f"finding {key!r} must be true/false, got {row.get(key)!r}"
        if bad:
            problems.append((name, bad))
            continue
        if findings:
            truth["findings"] = findings
        case, problem = build_case({"id": case_id, "volumes": {"ct": study}, "truth": truth}, root, task, row_name=name, source_meta={"source": "dicom"})
        if problem:
            problems.append((name, problem))
            continue
        seen.add(case_id)
        cases.append(case)
        if limit is not None and len(cases) >= limit:
            break
    return cases, problems
