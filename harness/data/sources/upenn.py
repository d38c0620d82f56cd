"""The UPENN-GBM collection (TCIA) as distributed: NIfTI in the SRI-24 grid, one folder per subject and visit.

    ROOT/images_structural_unstripped/<ID>/<ID>_{T1,T1GD,T2,FLAIR}_unstripped.nii.gz   (with face: used here)
    ROOT/images_segm/<ID>_segm.nii.gz                    expert segmentation (1 necrosis, 2 oedema, 4 enhancing)
    ROOT/automated_segm/<ID>_automated_approx_segm.nii.gz  used when no expert one exists (recorded in meta)
    ROOT/UPENN-GBM_clinical_info_*.csv                   ID, IDH1, MGMT, ... (molecular markers kept in truth)
Skull-stripped images (images_structural/) are not used: a defacing study needs the face. Truth for tumor-slice is
computed from the segmentation on the canonical (RAS) grid: the axial slice with the largest tumour area; for
tumor-dx every case is glioblastoma. Other tasks have no truth in this collection.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from harness.data.sources.manifest import build_case
from harness.core.errors import HarnessError

MODALITY_FILES = {"t1": "T1", "t1c": "T1GD", "t2": "T2", "flair": "FLAIR"}


def _clinical(root: Path) -> dict[str, dict]:
    tables = sorted(root.glob("UPENN-GBM_clinical_info*.csv"))
    if not tables:
        return {}
    with open(tables[-1], newline="", encoding="utf-8-sig") as fh:
        return {row.get("ID", "").strip(): row for row in csv.DictReader(fh) if row.get("ID")}


def tumour_slice_truth(seg_path: Path) -> dict:
    from tasks.tumor.phantom import slice_areas
    from harness.imaging.io import load_volume

    seg = load_volume(seg_path, modality="MR")
    labels = np.rint(seg.data).astype(np.int16)
    areas = slice_areas(labels, seg.spacing)
    if areas.max() <= 0:
        raise ValueError("segmentation is empty")
    enhancing = np.isin(labels, (3, 4)).sum(axis=(0, 1)) * seg.spacing[0] * seg.spacing[1]
    return {"best_slice": int(np.argmax(areas)), "areas_mm2": [round(float(a), 1) for a in areas],
            "enhancing_areas_mm2": [round(float(a), 1) for a in enhancing]}


def read(location: str, task: str, *, limit=None, cache_dir=None):
    if task not in ("tumor-slice", "tumor-dx"):
        raise HarnessError(f"UPENN-GBM has ground truth for tumor-slice and tumor-dx only, not {task}")
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
        truth: dict = {}
        if task == "tumor-dx":
            truth["diagnosis"] = "glioblastoma"
            row = clinical.get(cid) or clinical.get(cid.rsplit("_", 1)[0]) or {}
            molecular = {k: row[k] for k in ("IDH1", "MGMT") if row.get(k) not in (None, "", "NA", "Not Available")}
            if molecular:
                truth["molecular"] = molecular
        masks = {}
        expert = root / "images_segm" / f"{cid}_segm.nii.gz"
        auto = root / "automated_segm" / f"{cid}_automated_approx_segm.nii.gz"
        seg = expert if expert.exists() else auto if auto.exists() else None
        if seg is not None:
            masks["seg"] = str(seg)
            meta["segmentation"] = "expert" if seg is expert else "automated"
        if task == "tumor-slice":
            if seg is None:
                problems.append((cid, "no segmentation (images_segm/ or automated_segm/)"))
                continue
            try:
                truth.update(tumour_slice_truth(seg))
            except (HarnessError, ValueError) as exc:
                problems.append((cid, f"segmentation: {exc}"))
                continue
        case, problem = build_case({"id": cid, "volumes": volumes, "truth": truth, "masks": masks}, root, task, row_name=cid, source_meta=meta)
        if problem:
            problems.append((cid, problem))
            continue
        cases.append(case)
        if limit is not None and len(cases) >= limit:
            break
    return cases, problems
