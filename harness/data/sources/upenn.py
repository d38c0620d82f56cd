"""The UPENN-GBM collection (TCIA) as distributed: NIfTI in the SRI-24 grid, one folder per subject and visit.

    ROOT/images_structural_unstripped/<ID>/<ID>_{T1,T1GD,T2,FLAIR}_unstripped.nii.gz   (with face: used here)
    ROOT/images_segm/<ID>_segm.nii.gz                    expert segmentation (1 necrosis, 2 oedema, 4 enhancing)
    ROOT/automated_segm/<ID>_automated_approx_segm.nii.gz  used when no expert one exists (recorded in meta)
    ROOT/UPENN-GBM_clinical_info_*.csv                   ID, IDH1, MGMT, ... (molecular markers kept in truth)
Skull-stripped images (images_structural/) are not used: a defacing study needs the face. What the collection
offers every task: the four contrasts, the tumour segmentation as mask "seg", diagnosis = glioblastoma (every case
is one) and the molecular markers. A task takes from that what it declares (tumor-slice computes its best slice
from the segmentation); a task whose required truth the collection cannot give is refused up front.
"""

from __future__ import annotations

import csv
from pathlib import Path

from harness.core.errors import HarnessError
from harness.data.sources.manifest import build_case

MODALITY_FILES = {"t1": "T1", "t1c": "T1GD", "t2": "T2", "flair": "FLAIR"}
TRUTH_FIELDS = ("diagnosis", "molecular")
MASKS = ("seg",)


def _clinical(root: Path) -> dict[str, dict]:
    tables = sorted(root.glob("UPENN-GBM_clinical_info*.csv"))
    if not tables:
        return {}
    with open(tables[-1], newline="", encoding="utf-8-sig") as fh:
        return {row.get("ID", "").strip(): row for row in csv.DictReader(fh) if row.get("ID")}


def usable_by(task) -> bool:
    return bool(set(task.roles) & set(MODALITY_FILES)) and task.truth_available(TRUTH_FIELDS, MASKS)


def _refuse(task) -> HarnessError:
    from tasks import get_task, task_names

    usable = [name for name in task_names() if usable_by(get_task(name))]
    return HarnessError(f"UPENN-GBM has ground truth for {' and '.join(usable) or 'no registered task'} only, not {task.name}")


def read(location: str, task, *, limit=None, cache_dir=None):
    if not usable_by(task):
        raise _refuse(task)
    root = Path(location)
    images = root / "images_structural_unstripped"
    clinical = _clinical(root)
    cases, problems = [], []
    if not images.is_dir():
        return [], [(str(root), "no images_structural_unstripped/ folder (skull-stripped images cannot be defaced)")]
    for folder in sorted(p for p in images.iterdir() if p.is_dir()):
        cid = folder.name
        volumes = {role: str(folder / f"{cid}_{name}_unstripped.nii.gz") for role, name in MODALITY_FILES.items()}
        meta = {"source": "upenn-gbm"}
        truth: dict = {"diagnosis": "glioblastoma"}
        row = clinical.get(cid) or clinical.get(cid.rsplit("_", 1)[0]) or {}
        molecular = {k: row[k] for k in ("IDH1", "MGMT") if row.get(k) not in (None, "", "NA", "Not Available")}
        if molecular:
            truth["molecular"] = molecular
        truth = {k: v for k, v in truth.items() if k in {f.name for f in task.truth_fields}}
        masks = {}
        expert = root / "images_segm" / f"{cid}_segm.nii.gz"
        auto = root / "automated_segm" / f"{cid}_automated_approx_segm.nii.gz"
        seg = expert if expert.exists() else auto if auto.exists() else None
        if seg is not None:
            masks["seg"] = str(seg)
            meta["segmentation"] = "expert" if seg is expert else "automated"
        case, problem = build_case({"id": cid, "volumes": volumes, "truth": truth, "masks": masks}, root, task, row_name=cid, source_meta=meta)
        if problem:
            problems.append((cid, problem))
            continue
        cases.append(case)
        if limit is not None and len(cases) >= limit:
            break
    return cases, problems
