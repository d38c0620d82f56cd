"""The built-in sample cohorts: head phantoms with exact ground truth, written as a manifest cohort.

These are PHANTOMS, not patients: real head anatomy (the pydeface average head with face) warped into new
subjects, with synthetic contrasts, lesions and haemorrhages painted from label maps. They make the harness run
meaningfully out of the box and give tests volumes whose right answers are known exactly; they do not replace an
evaluation on real scans (their textures are simpler, their pathology is textbook-typical).

Layout written by `write_sample_cohort` (the same layout `load_cohort` reads as a manifest):
    OUT/manifest.jsonl        one row per case and task: id, task, volumes {role: path}, truth, masks, meta
                              (tumour phantoms carry a tumor-slice and a tumor-dx row: same files, two truths)
    OUT/cohort.json           generator version, anatomy hash, task, n, seed
    OUT/cases/<id>/*.nii.gz   volumes and truth masks; ct-report also writes ct/ as a DICOM series
Every case is deterministic in (task, seed, case index): case i is the same whatever n is.
Every case is built from the pydeface average head, so the built-in cohort is the same on every machine. (Colin27
phantoms exist - harness.phantoms.anatomy.load_atlases(include_colin27=True) - but their faces are too dark for the
template-based defacers, which refuse them; see load_atlases.)
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from harness.core.files import atomic_write_text
from harness.core.hashing import content_key
from harness.core.config import default_cache_dir
from harness.phantoms import anatomy
from tasks.ct_report import phantom as headct
from tasks.nph_evans import phantom as nph
from tasks.tumor import phantom as tumors
from harness.data.truth import DIAGNOSES, TASKS, check_task
from harness.imaging.io import save_nifti
from harness.imaging.io.dicom_write import write_dicom_series
from harness.core.volume import Volume

GENERATOR_VERSION = 2  # bump whenever generated cases change, so cached cohorts are rebuilt
DEFAULT_N = {"nph-evans": 10, "tumor-slice": 8, "tumor-dx": 8, "ct-report": 12}
DEFAULT_SEED = 0
# tumor-slice and tumor-dx read the same phantoms (one set of files, one manifest row per task): the four lesion
# classes cycle over the cases, so n = 8 gives two of each.
GROUPS = {"nph-evans": ("nph-evans",), "tumor-slice": ("tumor-slice", "tumor-dx"), "tumor-dx": ("tumor-slice", "tumor-dx"), "ct-report": ("ct-report",)}
GROUP_NAMES = {"nph-evans": "nph-evans", "tumor-slice": "tumor", "tumor-dx": "tumor", "ct-report": "ct-report"}


def case_rng(task: str, seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, TASKS.index(GROUPS[task][0]), index]))


def atlas_for(task: str, index: int, atlases: list) -> anatomy.Atlas:
    """Heads alternate per full cycle of the task's classes, so every class appears on every head."""
    period = {"tumor": len(DIAGNOSES), "ct-report": len(headct.PRIMARY)}.get(GROUP_NAMES[task], 1)
    return atlases[(index // period) % len(atlases)]


def _generate(task: str, atlas: anatomy.Atlas, rng: np.random.Generator, index: int, resolution_scale: float) -> dict:
    if task == "nph-evans":
        return nph.make_case(atlas, rng, resolution_scale=resolution_scale)
    if task in ("tumor-slice", "tumor-dx"):
        return tumors.make_case(atlas, rng, DIAGNOSES[index % len(DIAGNOSES)], resolution_scale=resolution_scale)
    primary = headct.PRIMARY[index % len(headct.PRIMARY)]
    return headct.make_case(atlas, rng, primary=primary, resolution_scale=resolution_scale)


def _task_truth(task: str, truth: dict) -> dict:
    if task == "tumor-slice":
        return {k: truth[k] for k in ("best_slice", "best_slice_mm", "areas_mm2", "enhancing_areas_mm2", "tumour_volume_ml", "enhancing_volume_ml")}
    if task == "tumor-dx":
        return {"diagnosis": truth["diagnosis"], "findings": truth["findings"], "tumour_volume_ml": truth["tumour_volume_ml"]}
    return truth


def write_case(task: str, seed: int, index: int, out: Path, atlas: anatomy.Atlas, *, resolution_scale: float = 1.0) -> list[dict]:
    """Generate case `index` and write its files under out/cases/<id>/; returns its manifest rows (one per task
    of the task's group)."""
    rng = case_rng(task, seed, index)
    started = time.perf_counter()
    made = _generate(task, atlas, rng, index, resolution_scale)
    head = made["head"]
    case_id = f"{GROUP_NAMES[task]}-s{seed}-{index:03d}"
    folder = out / "cases" / case_id
    folder.mkdir(parents=True, exist_ok=True)
    volumes = {}
    for role, data in made["images"].items():
        modality = "CT" if role == "ct" else "MR"
        volume = Volume(data, head.affine, modality, {"source_format": "nifti"})
        if role == "ct":
            write_dicom_series(volume, folder / "ct", extra={"StudyDescription": "CT HEAD WO CONTRAST (PHANTOM)"})
            volumes["ct"] = f"cases/{case_id}/ct"
            save_nifti(volume, folder / "ct.nii.gz")
            volumes["ct_nifti"] = f"cases/{case_id}/ct.nii.gz"
        else:
            save_nifti(volume, folder / f"{role}.nii.gz")
            volumes[role] = f"cases/{case_id}/{role}.nii.gz"
    masks = {}
    for name, mask in made["masks"].items():
        save_nifti(Volume(mask.astype(np.uint8), head.affine, "MR"), folder / f"{name}.nii.gz", dtype=np.uint8)
        masks[name] = f"cases/{case_id}/{name}.nii.gz"
    meta = {
        "source": "sample",
        "phantom": True,
        "anatomy": atlas.source,
        "anatomy_hash": atlas.content_hash[:16],
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "index": index,
        "shape": list(head.labels.shape),
        "spacing_mm": [round(s, 3) for s in head.spacing],
        "pose": head.pose,
        "face_deformation_mm": round(head.face_amplitude_mm, 2),
        "seconds": round(time.perf_counter() - started, 2),
        **{k: v for k, v in made["facts"].items()},
    }
    if task in ("tumor-slice", "tumor-dx"):
        meta["lesion_class"] = made["truth"]["diagnosis"]
    if task == "ct-report":
        meta["primary_finding"] = headct.PRIMARY[index % len(headct.PRIMARY)]
    meta = json.loads(json.dumps(meta, default=_plain))
    return [
        {"id": case_id, "task": t, "volumes": volumes, "masks": masks, "truth": json.loads(json.dumps(_task_truth(t, made["truth"]), default=_plain)), "meta": meta}
        for t in GROUPS[task]
    ]


def _plain(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON-able: {type(obj).__name__}")


def write_sample_cohort(task: str, n: int, seed: int, out, *, resolution_scale: float = 1.0, cache_dir=None, progress=None) -> Path:
    """Write n phantom cases of `task` into `out` (created; must be empty or absent). Returns the manifest path."""
    check_task(task)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        from harness.core.errors import HarnessError

        raise HarnessError(f"{out}: output folder is not empty; choose a new folder")
    out.mkdir(parents=True, exist_ok=True)
    atlases = anatomy.load_atlases(cache_dir)
    rows = []
    for i in range(n):
        rows.extend(write_case(task, seed, i, out, atlas_for(task, i, atlases), resolution_scale=resolution_scale))
        if progress:
            progress(i + 1, n, rows[-1])
    atomic_write_text(out / "manifest.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    info = {"task": task, "tasks": list(GROUPS[task]), "n": n, "seed": seed, "generator_version": GENERATOR_VERSION, "anatomy": [a.source for a in atlases],
            "anatomy_hash": [a.content_hash for a in atlases], "resolution_scale": resolution_scale, "phantom": True}
    atomic_write_text(out / "cohort.json", json.dumps(info, indent=2, sort_keys=True) + "\n")
    return out / "manifest.jsonl"


def sample_cohort_dir(task: str, cache_dir=None, *, n: int | None = None, seed: int = DEFAULT_SEED, resolution_scale: float = 1.0,
                      progress=None) -> Path:
    """The cached built-in cohort of `task` (generated on first use; later calls only read it).
    progress(i, n, row) is called after each generated case (generation takes seconds per case)."""
    check_task(task)
    n = DEFAULT_N[task] if n is None else n
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    atlases = anatomy.load_atlases(cache)
    group = GROUP_NAMES[task]
    key = content_key(generator=GENERATOR_VERSION, anatomy=[a.content_hash for a in atlases], group=group, n=n, seed=seed, scale=resolution_scale)
    target = cache / "cohorts" / f"{group}-{key[:16]}"
    if (target / "manifest.jsonl").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{group}-", dir=target.parent))
    try:
        write_sample_cohort(task, n, seed, tmp, resolution_scale=resolution_scale, cache_dir=cache, progress=progress)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / "manifest.jsonl").exists():  # another process won the race only if it finished
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
