"""BIDS datasets: sub-<label>/[ses-<label>/]anat/*.nii[.gz] plus participants.tsv for the ground truth.

Roles from BIDS suffixes: T1w -> t1 (or t1c when the file has a ce-<agent> entity), T2w -> t2, FLAIR -> flair,
CT -> ct (BIDS has no official CT suffix; *_ct / *_CT files are accepted). When several runs match a role, the
first in name order is used (the case's volumes name the chosen files). Ground truth comes from the columns of
participants.tsv named by the task's truth fields (evans_ratio, best_slice, diagnosis, report, ...); "n/a" is empty.
A session is one case (id sub-X_ses-Y); without sessions the subject is the case (id sub-X).

Volumes defaced elsewhere come from BIDS derivatives: derivatives/<NAME>/ mirrors the raw tree
(derivatives/<NAME>/sub-X/[ses-Y/]anat/*.nii[.gz], roles by the same suffixes; a desc-<label> entity such as
desc-defaced is allowed), and `--defacer precomputed:NAME` shows those files (defacers/precomputed.py). Files with a
space-<label> entity are skipped: they were resampled into another space, a defaced copy is in its source's.

Label maps (seg-fidelity, nph-evans --mode labels) are BIDS segmentations, *_dseg.nii[.gz], in the same derivatives
trees. Which condition a map segments:
- desc-original, or desc-<defacer> for a defacer run on the fly (desc-reface, desc-deface, desc-quickshear, ...): that
  condition, in any derivatives folder;
- any other (or no) desc, in the folder of a pipeline that holds the case's defaced volume: precomputed:<folder>.
A map that says neither, or two maps for one condition, leave the case without that map and the reason in the case's
meta (a label-map task fails those samples with it; other tasks are unaffected). The table: a dseg.tsv at the top of
the derivatives folder or beside the map (BIDS columns index and name; harness's own columns also work), else
FreeSurfer's; the maps of one case must share one table.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from harness.data.sources.manifest import DEFACED_NAME, build_case

SUFFIX_ROLE = {"t1w": "t1", "t2w": "t2", "flair": "flair", "ct": "ct"}
DSEG = re.compile(r"_dseg\.nii(\.gz)?$")


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


def _volumes(folder: Path) -> dict[str, str]:
    """role -> the first file of that role (in name order) under folder/anat and folder/ct."""
    volumes: dict[str, str] = {}
    for f in sorted((folder / "anat").glob("*.nii*")) + sorted((folder / "ct").glob("*.nii*")):
        role = _role(f.name)
        if role and role not in volumes and "_space-" not in f.name:
            volumes[role] = str(f)
    return volumes


def _derivatives(root: Path) -> list[Path]:
    """Pipeline folders whose name can be typed as precomputed:NAME (others, e.g. "my pipeline", are ignored)."""
    return sorted(p for p in (root / "derivatives").glob("*") if p.is_dir() and DEFACED_NAME.fullmatch(p.name))


def _label_maps(derivatives: list[Path], within: Path, pipelines: set[str]) -> tuple[dict[str, str], str, list[str]]:
    """({condition: path}, label table, problems) of one case's *_dseg files (the module's docstring has the rules)."""
    from defacers import names  # on-the-fly defacers a desc-<label> can name (BIDS labels are alphanumeric)

    named = {"original"} | {n for n in names() if n.isalnum()}
    found: dict[str, list[Path]] = {}
    problems = []
    for folder in derivatives:
        for f in sorted((folder / within / "anat").glob("*_dseg.nii*")):
            if "_space-" in f.name or not DSEG.search(f.name):
                continue
            desc = re.search(r"_desc-([A-Za-z0-9]+)", f.name)
            condition = desc.group(1) if desc and desc.group(1) in named else (
                f"precomputed:{folder.name}" if folder.name in pipelines else None)
            if condition is None:
                problems.append(f"{f}: a label map outside a defaced-volume pipeline must say which condition it "
                                f"segments (desc-original or desc-<defacer>: {', '.join(sorted(named))})")
            else:
                found.setdefault(condition, []).append(f)
    maps = {}
    for condition, files in found.items():
        if len(files) > 1:
            problems.append(f"{len(files)} label maps for {condition}: {', '.join(str(f) for f in files)} - keep one")
        else:
            maps[condition] = files[0]
    tables = {c: _dseg_table(f) for c, f in maps.items()}
    try:
        distinct = {t if t == "freesurfer" else Path(t).read_bytes() for t in tables.values()}  # copies are one table
    except OSError as exc:  # one case's unreadable table: its label-map samples fail with this, nothing else
        problems.append(f"{exc.filename}: label table not readable ({exc.strerror or exc})")
        return {}, "", problems
    if len(distinct) > 1:
        problems.append("the label maps use different tables: " + "; ".join(f"{c}: {t}" for c, t in sorted(tables.items())))
        maps = {}
    table = next(iter(tables.values()), "freesurfer") if maps else ""
    return {c: str(f) for c, f in maps.items()}, table, problems


def _dseg_table(dseg: Path) -> str:
    """The label table of a dseg file: its sidecar TSV, else the derivatives folder's dseg.tsv, else FreeSurfer's."""
    sidecar = dseg.with_name(DSEG.sub("_dseg.tsv", dseg.name))
    top = next((p for p in dseg.parents if p.parent.name == "derivatives"), None)
    for candidate in (sidecar, top / "dseg.tsv" if top else None):
        if candidate is not None and candidate.is_file():
            return str(candidate)
    return "freesurfer"


def read(location: str, task, *, limit=None, cache_dir=None):
    root = Path(location)
    labels = _participants(root)
    derivatives = _derivatives(root)
    cases, problems = [], []
    for sub in sorted(p for p in root.glob("sub-*") if p.is_dir()):
        sessions = sorted(p for p in sub.glob("ses-*") if p.is_dir()) or [sub]
        for ses in sessions:
            case_id = sub.name if ses is sub else f"{sub.name}_{ses.name}"
            volumes = _volumes(ses)
            within = ses.relative_to(root)
            # only roles the raw case has: a derivative of a scan that is not used here does not reject the case
            defaced = {d.name: {r: p for r, p in _volumes(d / within).items() if r in volumes} for d in derivatives}
            try:
                truth = task.truth_from_columns(labels.get(sub.name, {}))
            except ValueError as exc:
                problems.append((case_id, str(exc)))
                continue
            row = {"id": case_id, "volumes": volumes, "truth": truth, "defaced": defaced}
            maps, table, label_problems = _label_maps(derivatives, within, {n for n, v in defaced.items() if v})
            if maps:
                row.update(labels=maps, label_table=table)
            meta = {"source": "bids", **({"label_map_problems": label_problems} if label_problems else {})}
            case, problem = build_case(row, root, task, row_name=case_id, source_meta=meta)
            if problem:
                problems.append((case_id, problem))
                continue
            cases.append(case)
            if limit is not None and len(cases) >= limit:
                return cases, problems
    if not cases and not problems:
        problems.append((str(root), "no sub-*/[ses-*/]anat/*.nii[.gz] files found"))
    return cases, problems
