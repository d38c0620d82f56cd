"""The built-in phantom cohorts: `harness data sample` for every task, ground truth recomputed independently from
the written files, DICOM and NIfTI copies of the same CT, determinism by seed, and the cached default cohort.

Cohorts here use --scale 2.5 (voxels 2.5x coarser) to keep the suite fast; the derived anatomy is cached in the
user's cache folder like any harness cache (deriving it once takes ~20 s)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from harness.cli import _register, app
from harness.data.cohort import load_cohort
from tasks.ct_report.vocabulary import FINDING_KEYS
from tasks.tumor.vocabulary import DIAGNOSES

SCALE = "2.5"
N = {"nph-evans": 2, "tumor-slice": 2, "tumor-dx": 4, "ct-report": 3}


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    _register()
    runner = CliRunner()
    out = {}
    for task, n in N.items():
        folder = tmp_path_factory.mktemp("sample") / task
        result = runner.invoke(app, ["data", "sample", "--task", task, "--n", str(n), "--seed", "3", "--out", str(folder), "--scale", SCALE])
        assert result.exit_code == 0, result.output
        out[task] = folder
    return out


def canonical(path) -> tuple[np.ndarray, np.ndarray]:
    img = nib.as_closest_canonical(nib.load(str(path)))
    return np.asarray(img.dataobj), img.affine


@pytest.mark.parametrize("task", list(N))
def test_sample_writes_a_loadable_cohort(cohorts, task):
    cohort = load_cohort(cohorts[task] / "manifest.jsonl", task)
    assert len(cohort.cases) == N[task] and cohort.problems == []
    info = json.loads((cohorts[task] / "cohort.json").read_text())
    assert info["phantom"] is True and info["task"] == task
    for case in cohort.cases:
        assert case.meta["phantom"] is True and case.meta["anatomy"] in ("pydeface-mean", "pydeface-colin27-face", "colin27")
        shapes = {case.load(role).shape for role in case.roles}
        assert len(shapes) == 1  # all contrasts of a case share one grid
    assert len({c.id for c in cohort.cases}) == N[task]


def test_evans_ratio_recomputed_from_masks(cohorts):
    for case in load_cohort(cohorts["nph-evans"], "nph-evans").cases:
        fh, affine = canonical(case.truth["masks"]["frontal_horns"])
        ic, _ = canonical(case.truth["masks"]["intracranial"])
        dx = float(np.linalg.norm(affine[:3, 0]))
        widths = []
        for k in range(fh.shape[2]):
            cols = np.where(fh[:, :, k].sum(axis=1) > 0)[0]
            widths.append((cols.max() - cols.min() + 1) * dx if cols.size else 0.0)
        k = int(np.argmax(widths))
        cols = np.where(ic[:, :, k].sum(axis=1) > 0)[0]
        skull = (cols.max() - cols.min() + 1) * dx
        assert case.truth["slice_index"] == k
        assert case.truth["evans_ratio"] == pytest.approx(widths[k] / skull, abs=1e-9)
        assert 0.18 < case.truth["evans_ratio"] < 0.45
        # the frontal horns are dark CSF on the T1 and lie inside the intracranial mask
        t1, _ = canonical(case.volumes["t1"])
        assert np.all(ic[fh > 0] > 0)
        assert t1[fh > 0].mean() < 0.5 * t1[(ic > 0) & (fh == 0)].mean()


def test_tumour_best_slice_and_classes(cohorts):
    cohort = load_cohort(cohorts["tumor-slice"], "tumor-slice")
    for case in cohort.cases:
        seg, affine = canonical(case.truth["masks"]["seg"])
        assert set(np.unique(seg)) <= {0, 1, 2, 3}
        areas = (seg > 0).sum(axis=(0, 1))
        assert case.truth["best_slice"] == int(np.argmax(areas))
        assert case.truth["areas_mm2"][case.truth["best_slice"]] == pytest.approx(areas.max() * abs(affine[0, 0] * affine[1, 1]), rel=1e-3)
    dx = load_cohort(cohorts["tumor-dx"], "tumor-dx")
    both = load_cohort(cohorts["tumor-dx"], "tumor-slice")  # the tumour phantoms carry both tasks' truth
    assert [c.id for c in both.cases] == [c.id for c in dx.cases] and "best_slice" in both.cases[0].truth
    assert sorted(c.truth["diagnosis"] for c in dx.cases) == sorted(DIAGNOSES)
    for case in dx.cases:
        seg, _ = canonical(Path(case.truth["masks"]["seg"]))
        t1c, _ = canonical(case.volumes["t1c"])
        t1, _ = canonical(case.volumes["t1"])
        labels = set(np.unique(seg)) - {0}
        d = case.truth["diagnosis"]
        if d == "glioblastoma":
            assert {1, 2, 3} <= labels  # necrosis, oedema, enhancing rim
        if d == "low-grade glioma":
            assert 3 not in labels and 1 in labels  # no enhancement
        if d == "meningioma":
            assert 3 in labels and 1 not in labels
        if d == "metastases":
            from scipy import ndimage as ndi

            assert ndi.label(np.isin(seg, (1, 3)))[1] >= 2  # several lesions
        if 3 in labels:  # enhancing tissue is brighter after contrast than before, relative to white matter
            ratio_c = t1c[seg == 3].mean() / np.median(t1c[seg == 0][t1c[seg == 0] > 0])
            ratio = t1[seg == 3].mean() / np.median(t1[seg == 0][t1[seg == 0] > 0])
            assert ratio_c > 1.5 * ratio


def test_ct_dicom_and_nifti_are_the_same_scan_in_hu(cohorts):
    cohort = load_cohort(cohorts["ct-report"], "ct-report")
    for case in cohort.cases:
        dicom = case.load("ct")
        nifti = case.load("ct_nifti")
        assert dicom.meta["source_format"] == "dicom"
        assert np.array_equal(dicom.data, nifti.data)
        assert np.allclose(dicom.affine, nifti.affine, atol=1e-3)
        assert dicom.data.min() <= -1000 and dicom.data.max() > 1000  # air and bone in HU
        t = case.truth
        assert set(t["findings"]) == set(FINDING_KEYS)
        assert "FINDINGS:" in t["report"] and "IMPRESSION:" in t["report"]
        named = {"sdh": "subdural", "edh": "epidural", "iph": "haem", "hydrocephalus": "hydrocephalus", "chronic_infarct": "infarct"}
        for key, word in named.items():
            if t["findings"][key]:
                assert word in t["report_impression"].lower()
        if t["normal"]:
            assert not any(t["findings"].values())


def test_cases_are_deterministic_and_differ(tmp_path):
    from harness.phantoms.anatomy import load_atlas
    from harness.data.sample_cohort import write_case

    atlas = load_atlas()
    [a] = write_case("ct-report", 5, 1, tmp_path / "a", atlas, resolution_scale=3.0)
    [b] = write_case("ct-report", 5, 1, tmp_path / "b", atlas, resolution_scale=3.0)
    [c] = write_case("ct-report", 5, 2, tmp_path / "c", atlas, resolution_scale=3.0)
    va, _ = canonical(tmp_path / "a" / a["volumes"]["ct_nifti"])
    vb, _ = canonical(tmp_path / "b" / b["volumes"]["ct_nifti"])
    vc, _ = canonical(tmp_path / "c" / c["volumes"]["ct_nifti"])
    assert np.array_equal(va, vb) and a["truth"] == b["truth"]
    assert va.shape != vc.shape or not np.array_equal(va, vc)
    assert a["meta"]["pose"] != c["meta"]["pose"]


def test_reports_vary_in_phrasing():
    from tasks.ct_report.phantom import reference_report

    truth = {"intracranial": [], "extracranial": [], "findings": {k: False for k in FINDING_KEYS}, "normal": True}
    texts = {reference_report(truth, np.random.default_rng(s))["report"] for s in range(12)}
    assert len(texts) >= 4


@pytest.mark.slow
def test_default_sample_cohort_is_generated_once_and_only_as_far_as_asked(tmp_path, monkeypatch):
    from tasks.nph_evans.phantom import PHANTOMS

    monkeypatch.setattr(PHANTOMS, "default_n", 3)
    made = []
    first = load_cohort(None, "nph-evans", limit=1, cache_dir=tmp_path, progress=lambda i, n, row: made.append(row["id"]))
    assert first.name == "sample-nph-evans" and [c.id for c in first.cases] == made == ["nph-evans-s0-000"]
    [folder] = (tmp_path / "cohorts").glob("nph-evans-*")
    assert [p.name for p in (folder / "cases").iterdir()] == ["nph-evans-s0-000"]  # --limit 1 made one case, not 3
    volume = folder / "cases" / "nph-evans-s0-000" / "t1.nii.gz"
    stamp = volume.stat().st_mtime_ns
    made.clear()
    whole = load_cohort(None, "nph-evans", cache_dir=tmp_path, progress=lambda i, n, row: made.append(row["id"]))
    assert made == ["nph-evans-s0-001", "nph-evans-s0-002"]  # only the missing ones
    assert [c.id for c in whole.cases] == ["nph-evans-s0-000", "nph-evans-s0-001", "nph-evans-s0-002"]
    assert volume.stat().st_mtime_ns == stamp and whole.cases[0].truth == first.cases[0].truth
    made.clear()
    again = load_cohort(None, "nph-evans", cache_dir=tmp_path, progress=lambda i, n, row: made.append(row["id"]))
    assert made == [] and again.content_hash == whole.content_hash != first.content_hash
    assert load_cohort(None, "nph-evans", limit=1, cache_dir=tmp_path).content_hash == first.content_hash
    assert not list(folder.glob(".case-*"))  # no half-written case left behind
