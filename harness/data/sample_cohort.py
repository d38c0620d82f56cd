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
What a case holds is the task's business: each task declares a PhantomGenerator (tasks/<task>/phantom.py) as
`Task.phantoms`; this module only writes and caches what it makes.
Every case is deterministic in (generator, seed, case index): case i is the same whatever n is, so the cache keeps
cases one by one (CACHE/cohorts/<phantoms>-<key>/cases, rows/) and writes a manifest per case count asked for.
Every case is built from the pydeface average head; when mricron-data is installed (as on CI), cases alternate
between its own face and Colin27's face on it (anatomy.load_atlases: a second real face makes the faces distinct
people to a face-recognition attack), so the cohort depends on that package - its key says which. (Phantoms with
Colin27's brain too exist - load_atlases(include_colin27=True) - but their faces are too dark for the
template-based defacers, which refuse them.)
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from harness.core.config import default_cache_dir
from harness.core.errors import HarnessError
from harness.core.files import atomic_write_text
from harness.core.hashing import content_key
from harness.core.volume import Volume
from harness.imaging.io import save_nifti
from harness.imaging.io.dicom_write import write_dicom_series
from harness.phantoms import anatomy
from harness.phantoms.head import HEAD_VERSION
from harness.phantoms.generator import PhantomGenerator

WRITER_VERSION = 2  # bump whenever the files written for a case change, so cached cohorts are rebuilt
DEFAULT_SEED = 0


def phantoms_of(task) -> PhantomGenerator:
    """The phantom generator of a task (a Task or a task name)."""
    from tasks import get_task

    task = get_task(task) if isinstance(task, str) else task
    if task.phantoms is None:
        raise HarnessError(f"task {task.name} has no built-in sample cohort; give a cohort with --cohort")
    return task.phantoms


def write_case(task, seed: int, index: int, out: Path, atlas: anatomy.Atlas, *, resolution_scale: float = 1.0) -> list[dict]:
    """Generate case `index` and write its files under out/cases/<id>/; returns its manifest rows (one per task
    that reads these phantoms)."""
    gen = phantoms_of(task)
    rng = gen.rng(seed, index)
    started = time.perf_counter()
    made = gen.make_case(atlas, rng, index, resolution_scale=resolution_scale)
    head = made["head"]
    case_id = f"{gen.name}-s{seed}-{index:03d}"
    folder = out / "cases" / case_id
    folder.mkdir(parents=True, exist_ok=True)
    volumes = {}
    for role, data in made["images"].items():
        modality = "CT" if role == "ct" else "MR"
        volume = Volume(data, head.affine, modality, {"source_format": "nifti"})
        if role == "ct":  # CT arrives from scanners as DICOM: the DICOM reader is exercised on every run
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
        "generator_version": WRITER_VERSION,
        "head_version": HEAD_VERSION,
        "phantoms": {"name": gen.name, "version": gen.version},
        "seed": seed,
        "index": index,
        "shape": list(head.labels.shape),
        "spacing_mm": [round(s, 3) for s in head.spacing],
        "pose": head.pose,
        "face_deformation_mm": round(head.face_amplitude_mm, 2),
        "face_features_mm": head.face_features_mm,
        "seconds": round(time.perf_counter() - started, 2),
        **made["facts"],
        **gen.meta_for(index, made),
    }
    meta = json.loads(json.dumps(meta, default=_plain))
    return [
        {"id": case_id, "task": t, "volumes": volumes, "masks": masks,
         "truth": json.loads(json.dumps(gen.truth_for(t, made["truth"]), default=_plain)), "meta": meta}
        for t in gen.tasks
    ]


def _plain(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON-able: {type(obj).__name__}")


def write_sample_cohort(task, n: int, seed: int, out, *, resolution_scale: float = 1.0, cache_dir=None, progress=None) -> Path:
    """Write n phantom cases of `task` (a Task or a task name) into `out` (created; must be empty or absent).
    Returns the manifest path."""
    gen = phantoms_of(task)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise HarnessError(f"{out}: output folder is not empty; choose a new folder")
    out.mkdir(parents=True, exist_ok=True)
    atlases = anatomy.load_atlases(cache_dir)
    rows = []
    for i in range(n):
        rows.extend(write_case(task, seed, i, out, gen.atlas_for(i, atlases), resolution_scale=resolution_scale))
        if progress:
            progress(i + 1, n, rows[-1])
    atomic_write_text(out / "manifest.jsonl", _jsonl(rows))
    _write_info(out, gen, atlases, seed, resolution_scale, task=task if isinstance(task, str) else task.name, n=n)
    return out / "manifest.jsonl"


def sample_cohort_manifest(task, cache_dir=None, *, n: int | None = None, seed: int = DEFAULT_SEED,
                           resolution_scale: float = 1.0, progress=None) -> Path:
    """The manifest of the first n cases (default: the generator's default_n) of `task`'s cached built-in cohort.
    Cases are generated on first use, one at a time and only those asked for (`--limit 2` makes 2), and kept: a later
    call for more cases generates only the missing ones. progress(i, n, row) is called after each generated case."""
    gen = phantoms_of(task)
    n = gen.default_n if n is None else n
    if n < 1:
        raise HarnessError(f"a sample cohort needs at least one case, not {n}")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = cache / "cohorts" / f"{gen.name}-{cohort_key(gen, seed, resolution_scale)[:16]}"
    manifest = folder / f"manifest-{n}.jsonl"
    if manifest.exists():
        return manifest
    atlases = anatomy.load_atlases(cache)  # only to generate: reading the atlas costs more than the rest of this
    (folder / "rows").mkdir(parents=True, exist_ok=True)
    missing = [i for i in range(n) if not (folder / "rows" / f"{i:05d}.jsonl").exists()]
    for done, i in enumerate(missing, 1):
        rows = _generate_case(task, seed, i, folder, gen.atlas_for(i, atlases), resolution_scale)
        if progress:
            progress(done, len(missing), rows[-1])
    text = "".join((folder / "rows" / f"{i:05d}.jsonl").read_text() for i in range(n))
    atomic_write_text(manifest, text)
    _write_info(folder, gen, atlases, seed, resolution_scale)
    return manifest


def cohort_key(gen: PhantomGenerator, seed: int, resolution_scale: float) -> str:
    """What the cached cases of a built-in cohort are made from: any change to the writer, the heads, the task's
    generator or the anatomy gives a new key, so stale cases are never served."""
    return content_key(generator=WRITER_VERSION, heads=HEAD_VERSION, phantoms=gen.version, anatomy=anatomy.atlas_keys(),
                       group=gen.name, seed=seed, scale=resolution_scale)


def _jsonl(rows) -> str:
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)


def _write_info(folder: Path, gen, atlases, seed: int, resolution_scale: float, **extra) -> None:
    """cohort.json: what made the cases (generator, anatomy, seed, scale)."""
    info = {"phantoms": gen.name, "phantoms_version": gen.version, "tasks": list(gen.tasks), "seed": seed,
            "generator_version": WRITER_VERSION, "head_version": HEAD_VERSION, "anatomy": [a.source for a in atlases],
            "anatomy_hash": [a.content_hash for a in atlases], "resolution_scale": resolution_scale, "phantom": True,
            **extra}
    atomic_write_text(folder / "cohort.json", json.dumps(info, indent=2, sort_keys=True) + "\n")


def _generate_case(task, seed: int, index: int, folder: Path, atlas, resolution_scale: float) -> list[dict]:
    """Write case `index` into folder/cases/<id>/ and its rows into folder/rows/<index>.jsonl, each by an atomic
    rename: a killed generation leaves no half case, and a process that loses a race keeps the winner's files."""
    tmp = Path(tempfile.mkdtemp(prefix=f".case-{index}-", dir=folder))
    try:
        rows = write_case(task, seed, index, tmp, atlas, resolution_scale=resolution_scale)
        (folder / "cases").mkdir(exist_ok=True)
        for made in (tmp / "cases").iterdir():
            try:
                made.rename(folder / "cases" / made.name)
            except OSError:
                if not (folder / "cases" / made.name).is_dir():
                    raise
        atomic_write_text(folder / "rows" / f"{index:05d}.jsonl", _jsonl(rows))
        return rows
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
