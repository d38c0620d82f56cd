"""Manifest cohorts: JSONL, JSON, CSV or Parquet, one row per case, read with `datasets` (works offline).

Row schema (paths are relative to the manifest's folder unless absolute):
    id        str, required, unique
    task      str, optional; rows of other tasks are skipped (one manifest may hold several tasks)
    volumes   {role: path}; or flat columns named by role: t1, t1c, t2, flair, ct (DICOM folder or NIfTI), ct_nifti
    truth     {field: value} (a JSON string in CSV); or flat columns named by the task's truth fields
              (evans_ratio, best_slice, diagnosis, report, ...; `harness tasks` lists each task's fields)
    masks     {name: path} (JSON string in CSV) or flat columns mask_<name>; put into truth["masks"] as absolute paths
    meta      {key: value}, optional, must be free of patient information
    defaced   {defacer name: {role: path}}, optional (JSON string in CSV); or flat columns ROLE@NAME (t1@mri_reface):
              volumes defaced elsewhere, shown by `--defacer precomputed:NAME` (defacers/precomputed.py). A name is
              letters, digits and _ . + - ; each role must be one of the row's volumes. The files are checked when
              used, not here: a missing one fails only the samples that need it, with the reason.
    labels    {condition: path}, optional (JSON string in CSV); or flat columns labels@CONDITION (labels@original,
              labels@reface, labels@precomputed:mri_reface): label maps made elsewhere (FreeSurfer aseg.mgz, SLANT,
              any NIfTI label volume) of the task's volume under each condition, for `seg-fidelity`. A condition is
              "original" or a --defacer as typed. Checked when used: a missing or unreadable map fails that sample.
    label_table  "freesurfer" (default), "slant", or a TSV path (harness/imaging/labels): what the label values mean
Example JSONL row:
    {"id": "c1", "volumes": {"t1": "c1/t1.nii.gz"}, "truth": {"evans_ratio": 0.31},
     "defaced": {"mri_reface": {"t1": "c1/t1_reface.nii.gz"}}}
Example CSV:
    id,t1,evans_ratio,t1@mri_reface
    c1,c1/t1.nii.gz,0.31,c1/t1_reface.nii.gz
A row is rejected (and reported) when: id missing or repeated, no volume of the task's roles, a file missing or
its header unreadable, the required truth missing or of the wrong type, a defaced entry that is not a path of one of
its roles. Nulls (absent keys) are dropped.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from harness.data.case import ROLES, Case
from harness.imaging.labels import BUILT_IN as BUILT_IN_LABEL_TABLES
from harness.core.config import default_cache_dir
from harness.core.errors import HarnessError


class ManifestError(HarnessError):
    pass


DEFACED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
DEFACED_COLUMN_SEP = "@"  # flat column ROLE@NAME
LABELS_COLUMN = "labels" + DEFACED_COLUMN_SEP  # flat column labels@CONDITION
DEFAULT_LABEL_TABLE = "freesurfer"


def drop_nulls(value):
    """datasets fills keys missing from a row with None (it unifies the schema over rows); drop them again."""
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value


def _json_field(value, name: str):
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return {}
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"column {name!r} is not valid JSON ({exc.msg})") from None
    return value or {}


def check_volume(path: Path) -> str | None:
    """A cheap readability check (header only): None when fine, else the problem."""
    from harness.imaging.io import is_nifti

    if not path.exists():
        return f"file not found: {path}"
    if not (path.is_file() or path.is_dir()):  # /dev/zero would be read (and hashed) forever
        return f"not a regular file or folder (a device, pipe or socket): {path}"
    if path.is_dir():
        files = [f for f in sorted(path.rglob("*")) if f.is_file()]
        if not files:
            return f"DICOM folder is empty: {path}"
        with open(files[0], "rb") as fh:
            head = fh.read(132)
        if head[128:132] != b"DICM":
            import pydicom

            try:
                pydicom.dcmread(files[0], stop_before_pixels=True, force=True).SOPClassUID  # noqa: B018
            except Exception:
                return f"not a DICOM folder (first file {files[0].name} is not DICOM): {path}"
        return None
    if is_nifti(path):
        import nibabel as nib

        from harness.core.errors import VolumeError
        from harness.imaging.io.nifti import check_declared_size

        try:
            img = nib.load(str(path))
            if len(img.shape) < 3:
                return f"not a 3D volume (shape {img.shape}): {path}"
            check_declared_size(img, path)
        except VolumeError as exc:
            return str(exc)
        except Exception as exc:
            return f"unreadable NIfTI ({exc.__class__.__name__}): {path}"
        return None
    return None  # a single DICOM file: load_volume will judge it


def role_columns(task) -> tuple[str, ...]:
    """Flat columns that name a volume: every known role, and any other role the task reads."""
    return tuple(dict.fromkeys((*ROLES, *task.roles)))


def build_case(row: dict, base: Path, task, *, row_name: str, source_meta: dict | None = None, check_files: bool = True) -> tuple[Case | None, str | None]:
    """One manifest-like row -> (Case, None) or (None, problem). `task` is a tasks.base.Task: its roles and truth
    fields decide which columns are read and what makes the row usable."""
    row = drop_nulls(dict(row))
    case_id = str(row.get("id") or "").strip()
    if not case_id:
        return None, "missing id"
    try:
        volumes_in = _json_field(row.get("volumes"), "volumes")
        truth = _json_field(row.get("truth"), "truth")
        masks_in = _json_field(row.get("masks"), "masks")
        meta = _json_field(row.get("meta"), "meta")
        defaced_in = _json_field(row.get("defaced"), "defaced")
        labels_in = _json_field(row.get("labels"), "labels")
    except ValueError as exc:
        return None, str(exc)
    if not isinstance(volumes_in, dict) or not isinstance(truth, dict) or not isinstance(masks_in, dict) or not isinstance(meta, dict):
        return None, "volumes, truth, masks and meta must be objects"
    volumes_in = dict(volumes_in)
    for role in role_columns(task):
        if row.get(role) not in (None, ""):
            volumes_in.setdefault(role, row[role])
    for key, value in row.items():
        if key.startswith("mask_") and value not in (None, ""):
            masks_in.setdefault(key[len("mask_") :], value)
    try:
        truth = {**task.truth_from_columns(row), **truth}
    except ValueError as exc:
        return None, str(exc)
    volumes = {}
    for role, rel in volumes_in.items():
        if not isinstance(rel, str) or not rel.strip():
            return None, f"volume {role!r} has no path"
        volumes[str(role)] = _resolve(base, rel)
    order = {r: i for i, r in enumerate(ROLES)}
    volumes = dict(sorted(volumes.items(), key=lambda item: (order.get(item[0], len(ROLES)), item[0])))
    needed = [r for r in task.roles if r in volumes]
    if not needed:
        return None, f"no {' / '.join(task.roles)} volume for task {task.name}"
    if check_files:
        for role, path in volumes.items():
            problem = check_volume(path)
            if problem:
                return None, f"{role}: {problem}"
    defaced, problem = _defaced_paths(defaced_in, row, base, volumes)
    if problem:
        return None, problem
    label_maps, problem = _label_map_paths(labels_in, row, base)
    if problem:
        return None, problem
    label_table = str(row.get("label_table") or DEFAULT_LABEL_TABLE).strip()
    if label_table not in BUILT_IN_LABEL_TABLES:
        label_table = str(_resolve(base, label_table))
    if masks_in:
        masks = {}
        for name, rel in masks_in.items():
            path = _resolve(base, str(rel))
            if check_files and not path.exists():
                return None, f"mask {name!r}: file not found: {path}"
            masks[str(name)] = str(path)
        truth["masks"] = masks
    try:
        truth = task.complete_truth(truth)
    except (ValueError, HarnessError) as exc:
        return None, str(exc)
    truth, problems = task.check_truth(truth)
    if problems:
        return None, "; ".join(problems)
    meta = {**(source_meta or {}), **meta}
    return Case(case_id, task.name, volumes, truth, meta, defaced, label_maps, label_table if label_maps else ""), None


def _resolve(base: Path, rel: str) -> Path:
    return Path(rel) if Path(rel).is_absolute() else base / rel


def _defaced_paths(given, row: dict, base: Path, volumes: dict) -> tuple[dict, str | None]:
    """The row's volumes defaced elsewhere, {name: {role: path}}, from its "defaced" object and ROLE@NAME columns."""
    if not isinstance(given, dict) or not all(isinstance(v, dict) for v in given.values()):
        return {}, 'defaced must be an object {"DEFACER": {"ROLE": "PATH"}}'
    entries = [(str(name), str(role), path) for name, roles in given.items() for role, path in roles.items()]
    for key, path in row.items():
        role, sep, name = str(key).partition(DEFACED_COLUMN_SEP)
        if sep and path not in (None, "") and not str(key).startswith(LABELS_COLUMN):
            entries.append((name, role, path))
    defaced: dict[str, dict[str, Path]] = {}
    for name, role, path in entries:
        if not DEFACED_NAME.fullmatch(name):
            return {}, f"defaced name {name!r} must be letters, digits and _ . + - (it is typed as --defacer precomputed:NAME)"
        if role not in volumes:
            return {}, f"defaced {name} gives a {role!r} volume, but the row has no {role!r} volume ({', '.join(volumes)})"
        if not isinstance(path, str) or not path.strip():
            return {}, f"defaced {name} {role} has no path"
        defaced.setdefault(name, {}).setdefault(role, _resolve(base, path.strip()))
    return defaced, None


def _label_map_paths(given, row: dict, base: Path) -> tuple[dict, str | None]:
    """The row's label maps, {condition: path}, from its "labels" object and labels@CONDITION columns."""
    if not isinstance(given, dict):
        return {}, 'labels must be an object {"CONDITION": "PATH"} (CONDITION: original or a --defacer as typed)'
    entries = list(given.items()) + [(str(k)[len(LABELS_COLUMN):], v) for k, v in row.items()
                                     if str(k).startswith(LABELS_COLUMN) and v not in (None, "")]
    maps: dict[str, Path] = {}
    for condition, path in entries:
        condition = str(condition).strip()
        if not condition:
            return {}, "a label map names no condition (labels@CONDITION)"
        if not isinstance(path, str) or not path.strip():
            return {}, f"label map of {condition} has no path"
        maps.setdefault(condition, _resolve(base, path.strip()))
    return maps, None


def rows_to_cases(rows, base: Path, task, *, limit=None, check_files=True) -> tuple[list[Case], list[tuple[str, str]]]:
    cases, problems, seen = [], [], set()
    for n, row in enumerate(rows, start=1):
        row_task = row.get("task")
        if row_task not in (None, "") and row_task != task.name:
            continue
        name = str(row.get("id") or f"row {n}")
        if name in seen:
            problems.append((name, "duplicate id"))
            continue
        case, problem = build_case(row, base, task, row_name=name, check_files=check_files)
        if problem:
            problems.append((name if row.get("id") else f"row {n}", problem))
            continue
        seen.add(case.id)
        cases.append(case)
        if limit is not None and len(cases) >= limit:
            break
    return cases, problems


def hf_cache(cache_dir=None) -> str:
    """Where `datasets` may write its Arrow copies of a cohort: inside the harness cache."""
    return str((Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "hf-datasets")


def _json_rows(path: Path) -> list[dict]:
    """Rows of a JSON-lines file, or of a JSON file holding a list of objects (or JSON lines). Read directly: the
    `datasets` route costs seconds of import and an Arrow copy for what is a few KB of text."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read manifest ({exc.__class__.__name__}: {exc})") from None
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{path}: cannot read manifest (not JSON: {exc.msg} at line {exc.lineno})") from None
        numbered = list(enumerate(rows, 1))
    else:
        numbered = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    numbered.append((n, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise ManifestError(f"{path}: cannot read manifest (line {n} is not JSON: {exc.msg})") from None
    bad = [n for n, row in numbered if not isinstance(row, dict)]
    if bad:
        raise ManifestError(f"{path}: cannot read manifest (entry {bad[0]} is not an object; each row is {{\"id\": ...}})")
    return [row for _, row in numbered]


def load_rows(path: Path, cache_dir=None) -> list[dict]:
    """The manifest's rows: JSON lines / JSON read directly, CSV / Parquet via `datasets` (whose Arrow copy of ids,
    paths and truth goes under the harness cache, never the user's global Hugging Face cache)."""
    import datasets

    suffix = path.suffix.lower()
    builder = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}.get(suffix)
    if builder is None:
        raise ManifestError(f"{path}: a manifest must be .jsonl, .json, .csv or .parquet")
    if not path.exists():
        raise ManifestError(f"{path}: no such manifest")
    if path.stat().st_size == 0:
        return []
    if builder == "json":
        return _json_rows(path)
    kwargs = {}
    if builder == "csv":
        kwargs["keep_default_na"] = False  # an empty cell is an empty string, not NaN, and "NA" stays text
    try:
        datasets.disable_progress_bars()
        ds = datasets.load_dataset(builder, data_files=str(path), split="train", cache_dir=hf_cache(cache_dir), **kwargs)
    except Exception as exc:  # datasets raises many types for malformed files
        raise ManifestError(f"{path}: cannot read manifest ({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    return [dict(r) for r in ds]


def read(location: str, task, *, limit=None, cache_dir=None):
    path = Path(location)
    rows = load_rows(path, cache_dir)
    return rows_to_cases(rows, path.parent, task, limit=limit)
