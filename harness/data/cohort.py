"""Cohorts: the cases of one task from one source, with the rows that could not be used and why.

`load_cohort(source, task)` picks the reader from the source:
    None                         the built-in sample cohort of the task (phantoms; generated on first use, cached)
    *.jsonl / *.json / *.csv / *.parquet, or a folder holding manifest.jsonl|csv|parquet   a manifest
    a folder with dataset_description.json or sub-*/ folders                                 a BIDS dataset
    a folder with images_structural*/ (and images_segm/)                                     the UPENN-GBM layout
    a folder with reports.csv or labels.csv next to DICOM study folders                      DICOM studies (head CT)
    a folder saved by `datasets` (save_to_disk) or with data/*.parquet + README.md; "hf:owner/name" for the hub
A prefix forces the reader: manifest:, bids:, upenn:, dicom:, hf:.
Bad rows never stop a cohort: they are listed in `problems` as (row or case id, message) and skipped.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from harness.core.hashing import canonical_json, fingerprint
from harness.data.case import Case
from harness.core.errors import HarnessError


class CohortError(HarnessError):
    pass


@dataclass(frozen=True)
class Cohort:
    name: str
    task: str
    cases: list[Case]
    problems: list[tuple[str, str]] = field(default_factory=list)
    source: str = ""

    def __len__(self) -> int:
        return len(self.cases)

    def __iter__(self):
        return iter(self.cases)

    def case(self, case_id: str) -> Case:
        try:
            return self._by_id[case_id]  # the runner asks once per sample: a scan would be quadratic in cohort size
        except KeyError:
            raise CohortError(f"cohort {self.name} has no case {case_id!r}") from None

    @cached_property
    def _by_id(self) -> dict:
        return {c.id: c for c in self.cases}

    @cached_property
    def content_hash(self) -> str:
        """sha256 over every case's id, file contents (not paths), truth and metadata: equal wherever the cohort
        lives, different as soon as one voxel file or one label changes."""
        h = hashlib.sha256()
        h.update(self.task.encode())
        for case in sorted(self.cases, key=lambda c: c.id):
            truth = dict(case.truth)
            if isinstance(truth.get("masks"), dict):
                truth["masks"] = {k: fingerprint(v) for k, v in truth["masks"].items()}
            doc = {"id": case.id, "volumes": {r: fingerprint(p) for r, p in sorted(case.volumes.items())}, "truth": truth, "meta": case.meta}
            if case.defaced:  # only then: cohorts without precomputed volumes keep the hashes they always had
                doc["defaced"] = {name: {r: fingerprint(p) for r, p in sorted(roles.items())} for name, roles in sorted(case.defaced.items())}
            if case.label_maps:  # likewise: only cohorts that give label maps hash them
                doc["label_maps"] = {c: fingerprint(p) for c, p in sorted(case.label_maps.items())}
                doc["label_table"] = fingerprint(case.label_table) if Path(case.label_table).is_file() else case.label_table
            h.update(canonical_json(doc).encode())
        return h.hexdigest()


PREFIXES = ("manifest", "bids", "upenn", "dicom", "hf")
MANIFEST_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


def detect_kind(source: str | Path) -> tuple[str, str]:
    """(reader kind, location) for a source string or path."""
    text = str(source)
    for prefix in PREFIXES:
        if text.startswith(prefix + ":"):
            return prefix, text[len(prefix) + 1 :]
    path = Path(text)
    if not path.exists():
        raise CohortError(f"{path}: no such file or folder (prefix hf: to read a dataset from the Hugging Face hub)")
    if path.is_file():
        if path.name.lower().endswith(MANIFEST_SUFFIXES):
            return "manifest", text
        raise CohortError(f"{path}: a manifest must be .jsonl, .json, .csv or .parquet")
    for name in ("manifest.jsonl", "manifest.csv", "manifest.parquet", "manifest.json"):
        if (path / name).exists():
            return "manifest", str(path / name)
    if (path / "dataset_description.json").exists() or any(path.glob("sub-*")):
        return "bids", text
    if any(path.glob("images_structural*")):
        return "upenn", text
    if (path / "reports.csv").exists() or (path / "labels.csv").exists():
        return "dicom", text
    if (path / "dataset_info.json").exists() or (path / "state.json").exists() or (path / "data").is_dir() or any(path.glob("*.parquet")):
        return "hf", text
    raise CohortError(
        f"{path}: cannot tell what kind of cohort this is; expected manifest.jsonl/csv/parquet, a BIDS tree, the "
        "UPENN-GBM layout, DICOM studies with reports.csv, or a Hugging Face dataset folder"
    )


def load_cohort(source: str | Path | None, task, *, limit: int | None = None, cache_dir=None, progress=None) -> Cohort:
    """Read the cases of `task` (a Task or a task name) from `source` (see the module doc). limit: keep the first
    N usable cases. progress(i, n, row): called per case while the built-in sample cohort is generated (first use)."""
    from tasks import get_task

    task = get_task(task) if isinstance(task, str) else task
    if limit is not None and limit < 1:
        raise CohortError(f"limit must be at least 1, got {limit}")
    if source is None:
        from harness.data.sample_cohort import phantoms_of, sample_cohort_manifest

        n = min(limit, phantoms_of(task).default_n) if limit is not None else None  # --limit 2 generates 2 cases
        manifest = sample_cohort_manifest(task, cache_dir, n=n, progress=progress)
        cohort = _read("manifest", str(manifest), task, limit, cache_dir)
        return Cohort(f"sample-{task.name}", task.name, cohort.cases, cohort.problems, "sample")
    kind, location = detect_kind(source)
    return _read(kind, location, task, limit, cache_dir)


def _read(kind: str, location: str, task, limit, cache_dir) -> Cohort:
    from harness.data.sources import bids, dicom_studies, hf, manifest, upenn

    reader = {"manifest": manifest.read, "bids": bids.read, "upenn": upenn.read, "dicom": dicom_studies.read, "hf": hf.read}[kind]
    cases, problems = reader(location, task, limit=limit, cache_dir=cache_dir)
    name = Path(location).stem if kind != "hf" or Path(location).exists() else location
    if name == "manifest":
        name = Path(location).parent.name
    return Cohort(name, task.name, cases, problems, f"{kind}:{location}")


def summary(cohort: Cohort) -> dict:
    return {"name": cohort.name, "task": cohort.task, "cases": len(cohort.cases), "problems": len(cohort.problems),
            "source": cohort.source, "content_hash": cohort.content_hash}


def dumps_problems(cohort: Cohort) -> str:
    return json.dumps([{"row": r, "problem": m} for r, m in cohort.problems], indent=2)
