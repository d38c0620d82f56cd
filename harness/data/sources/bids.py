"""BIDS datasets: sub-<label>/[ses-<label>/]anat/*.nii[.gz] plus participants.tsv for the ground truth.

Roles from BIDS suffixes: T1w -> t1 (or t1c when the file has a ce-<agent> entity), T2w -> t2, FLAIR -> flair,
CT -> ct (BIDS has no official CT suffix; *_ct / *_CT files are accepted). When several runs match a role, the
first in name order is used and the choice is recorded in the case meta. Ground truth comes from the columns of
participants.tsv named by the task's truth fields (evans_ratio, best_slice, diagnosis, report, ...); "n/a" is empty.
A session is one case (id sub-X_ses-Y); without sessions the subject is the case (id sub-X).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from harness.data.sources.manifest import build_case

SUFFIX_ROLE = {"t1w": "t1", "t2w": "t2", "flair": "flair", "ct": "ct"}


def _role(name: str) -> str | None:
    stem = re.sub(r"\.nii(\.gz)?$", "", name, flags=re.I)
    suffix = stem.rsplit("_", 1)[-1].lower()
    role = SUFFIX_ROLE.get(suffix)
    if role == "t1" and re.search(r"_ce-[a-zA-Z0-9]+", stem):
        return "t1c"
    return role


def _participants(root: Path) -> dict[str, dict]:
    path = root / "participants.tsv"
    if not path.exists():
        return {}
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    out = {}
    for row in rows:
        pid = (row.get("participant_id") or "").strip()
        if pid:
            out[pid if pid.startswith("sub-") else f"sub-{pid}"] = {k: v for k, v in row.items() if v not in (None, "", "n/a")}
    return out


def read(location: str, task, *, limit=None, cache_dir=None):
    root = Path(location)
    labels = _participants(root)
    cases, problems = [], []
    for sub in sorted(p for p in root.glob("sub-*") if p.is_dir()):
        sessions = sorted(p for p in sub.glob("ses-*") if p.is_dir()) or [sub]
        for ses in sessions:
            case_id = sub.name if ses is sub else f"{sub.name}_{ses.name}"
            volumes: dict[str, str] = {}
            chosen = {}
            for f in sorted((ses / "anat").glob("*.nii*")) + sorted((ses / "ct").glob("*.nii*")):
                role = _role(f.name)
                if role and role not in volumes:
                    volumes[role] = str(f)
                    chosen[role] = f.name
            try:
                truth = task.truth_from_columns(labels.get(sub.name, {}))
            except ValueError as exc:
                problems.append((case_id, str(exc)))
                continue
            row = {"id": case_id, "volumes": volumes, "truth": truth}
            case, problem = build_case(row, root, task, row_name=case_id, source_meta={"source": "bids"})
            if problem:
                problems.append((case_id, problem))
                continue
            cases.append(case)
            if limit is not None and len(cases) >= limit:
                return cases, problems
    if not cases and not problems:
        problems.append((str(root), "no sub-*/[ses-*/]anat/*.nii[.gz] files found"))
    return cases, problems
