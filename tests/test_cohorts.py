"""Cohort sources on small fixtures written here: manifest (JSONL/CSV/Parquet), BIDS, DICOM studies, UPENN-GBM,
Hugging Face datasets. Bad rows must be reported per case and skipped, never crash the cohort."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from harness.data.case import Case
from harness.data.cohort import CohortError, detect_kind, load_cohort
from harness.core.errors import HarnessError
from harness.imaging.io.dicom_write import write_dicom_series
from harness.core.volume import Volume


def nifti(path: Path, value: float = 100.0, shape=(12, 14, 10), seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(seed).uniform(0, value, shape).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0])), str(path))
    return path


def problems_by_row(cohort) -> dict:
    return {row: message for row, message in cohort.problems}


@pytest.fixture
def manifest_dir(tmp_path):
    nifti(tmp_path / "a" / "t1.nii.gz")
    nifti(tmp_path / "b" / "t1.nii.gz", seed=1)
    nifti(tmp_path / "c" / "t1.nii.gz", seed=2)
    (tmp_path / "broken.nii.gz").write_bytes(b"not a nifti at all")
    rows = [
        {"id": "a", "volumes": {"t1": "a/t1.nii.gz"}, "truth": {"evans_ratio": 0.31}},
        {"id": "b", "volumes": {"t1": "b/t1.nii.gz"}, "truth": {"evans_ratio": 0.25}, "meta": {"site": "x"}},
        {"id": "missing-file", "volumes": {"t1": "nowhere/t1.nii.gz"}, "truth": {"evans_ratio": 0.3}},
        {"id": "no-truth", "volumes": {"t1": "c/t1.nii.gz"}, "truth": {}},
        {"id": "bad-truth", "volumes": {"t1": "c/t1.nii.gz"}, "truth": {"evans_ratio": "large"}},
        {"id": "a", "volumes": {"t1": "c/t1.nii.gz"}, "truth": {"evans_ratio": 0.3}},
        {"volumes": {"t1": "c/t1.nii.gz"}, "truth": {"evans_ratio": 0.3}},
        {"id": "unreadable", "volumes": {"t1": "broken.nii.gz"}, "truth": {"evans_ratio": 0.3}},
        {"id": "other-task", "task": "tumor-dx", "volumes": {"t1": "c/t1.nii.gz"}, "truth": {"diagnosis": "meningioma"}},
    ]
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


def test_jsonl_manifest_reports_each_bad_row_and_keeps_good_ones(manifest_dir):
    cohort = load_cohort(manifest_dir / "manifest.jsonl", "nph-evans")
    assert [c.id for c in cohort.cases] == ["a", "b"]
    assert isinstance(cohort.cases[0], Case)
    assert cohort.cases[0].volumes["t1"] == manifest_dir / "a" / "t1.nii.gz"  # relative to the manifest
    assert cohort.cases[0].truth["evans_ratio"] == pytest.approx(0.31)
    assert cohort.cases[1].meta == {"site": "x"}
    bad = problems_by_row(cohort)
    assert "file not found" in bad["missing-file"]
    assert "evans_ratio" in bad["no-truth"]
    assert "evans_ratio" in bad["bad-truth"] and "large" in bad["bad-truth"]
    assert bad["a"] == "duplicate id"
    assert bad["row 7"] == "missing id"
    assert "unreadable NIfTI" in bad["unreadable"]
    assert "other-task" not in bad  # rows of another task are not errors
    assert len(cohort.problems) == 6
    assert cohort.cases[0].load("t1").shape == (12, 14, 10)


def test_folder_with_manifest_and_limit(manifest_dir):
    cohort = load_cohort(manifest_dir, "nph-evans", limit=1)
    assert [c.id for c in cohort.cases] == ["a"]


def test_content_hash_follows_content_not_location(manifest_dir, tmp_path_factory):
    first = load_cohort(manifest_dir, "nph-evans").content_hash
    moved = tmp_path_factory.mktemp("moved") / "cohort"
    shutil.copytree(manifest_dir, moved)
    assert load_cohort(moved, "nph-evans").content_hash == first
    nifti(moved / "b" / "t1.nii.gz", seed=99)  # one voxel file changes
    assert load_cohort(moved, "nph-evans").content_hash != first


def test_csv_manifest_with_flat_columns(tmp_path):
    nifti(tmp_path / "x.nii.gz")
    (tmp_path / "cases.csv").write_text(
        "id,t1,t1c,t2,flair,diagnosis\n"
        "ok,x.nii.gz,x.nii.gz,x.nii.gz,x.nii.gz,Meningioma\n"
        "wrong-label,x.nii.gz,x.nii.gz,x.nii.gz,x.nii.gz,tumour\n"
        "no-volume,,,,,glioblastoma\n"
    )
    cohort = load_cohort(tmp_path / "cases.csv", "tumor-dx")
    assert [c.id for c in cohort.cases] == ["ok"]
    assert cohort.cases[0].truth["diagnosis"] == "meningioma"
    assert list(cohort.cases[0].volumes) == ["t1", "t1c", "t2", "flair"]
    bad = problems_by_row(cohort)
    assert "not one of" in bad["wrong-label"]
    assert "no t1" in bad["no-volume"]


def test_parquet_manifest(tmp_path):
    import datasets

    nifti(tmp_path / "v.nii.gz")
    datasets.Dataset.from_list([
        {"id": "p1", "t1": "v.nii.gz", "best_slice": 4},
        {"id": "p2", "t1": "v.nii.gz", "best_slice": -3},
    ]).to_parquet(str(tmp_path / "m.parquet"))
    cohort = load_cohort(tmp_path / "m.parquet", "tumor-slice")
    assert [c.id for c in cohort.cases] == ["p1"] and cohort.cases[0].truth["best_slice"] == 4
    assert "non-negative integer" in problems_by_row(cohort)["p2"]


def test_bids_tree_with_sessions_and_participants(tmp_path):
    root = tmp_path / "bids"
    (root / "dataset_description.json").parent.mkdir(parents=True)
    (root / "dataset_description.json").write_text('{"Name": "t", "BIDSVersion": "1.8.0"}')
    nifti(root / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    nifti(root / "sub-01" / "anat" / "sub-01_ce-gadolinium_T1w.nii.gz", seed=3)
    nifti(root / "sub-02" / "ses-a" / "anat" / "sub-02_ses-a_T1w.nii.gz")
    nifti(root / "sub-02" / "ses-b" / "anat" / "sub-02_ses-b_run-1_T1w.nii.gz")
    nifti(root / "sub-03" / "anat" / "sub-03_T1w.nii.gz")
    nifti(root / "sub-04" / "anat" / "sub-04_T2w.nii.gz")
    (root / "participants.tsv").write_text("participant_id\tage\tevans_ratio\nsub-01\t70\t0.34\nsub-02\t71\t0.28\nsub-03\t72\tn/a\nsub-04\t60\t0.2\n")
    assert detect_kind(root)[0] == "bids"
    cohort = load_cohort(root, "nph-evans")
    assert [c.id for c in cohort.cases] == ["sub-01", "sub-02_ses-a", "sub-02_ses-b"]
    assert cohort.cases[0].volumes["t1c"].name == "sub-01_ce-gadolinium_T1w.nii.gz"
    assert cohort.cases[0].volumes["t1"].name == "sub-01_T1w.nii.gz"
    assert cohort.cases[1].truth["evans_ratio"] == pytest.approx(0.28)
    assert "age" not in cohort.cases[0].truth
    bad = problems_by_row(cohort)
    assert "evans_ratio" in bad["sub-03"]
    assert "no t1" in bad["sub-04"]


def test_manifest_rows_give_volumes_defaced_elsewhere_as_objects_or_role_at_name_columns(tmp_path):
    nifti(tmp_path / "a" / "t1.nii.gz")
    nifti(tmp_path / "b" / "t1.nii.gz", seed=1)
    rows = [
        {"id": "a", "volumes": {"t1": "a/t1.nii.gz"}, "truth": {"evans_ratio": 0.3},
         "defaced": {"mri_reface": {"t1": "a/t1_reface.nii.gz"}, "pydeface": {"t1": "/abs/a_pydeface.nii.gz"}}},
        {"id": "b", "volumes": {"t1": "b/t1.nii.gz"}, "truth": {"evans_ratio": 0.3}},
        {"id": "no-such-role", "volumes": {"t1": "a/t1.nii.gz"}, "truth": {"evans_ratio": 0.3}, "defaced": {"x": {"flair": "f.nii"}}},
        {"id": "bad-name", "volumes": {"t1": "a/t1.nii.gz"}, "truth": {"evans_ratio": 0.3}, "defaced": {"a b(c)": {"t1": "f.nii"}}},
        {"id": "not-an-object", "volumes": {"t1": "a/t1.nii.gz"}, "truth": {"evans_ratio": 0.3}, "defaced": {"x": "f.nii"}},
    ]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cohort = load_cohort(tmp_path / "m.jsonl", "nph-evans")
    a, b = cohort.cases  # a defaced file is checked when used, so a missing one does not reject its row
    assert a.defaced == {"mri_reface": {"t1": tmp_path / "a" / "t1_reface.nii.gz"}, "pydeface": {"t1": Path("/abs/a_pydeface.nii.gz")}}
    assert b.defaced == {}
    bad = problems_by_row(cohort)
    assert "'flair'" in bad["no-such-role"] and "letters, digits" in bad["bad-name"] and "object" in bad["not-an-object"]
    (tmp_path / "m.csv").write_text("id,t1,evans_ratio,t1@mri_reface\na,a/t1.nii.gz,0.3,a/t1_reface.nii.gz\nb,b/t1.nii.gz,0.3,\n")
    a, b = load_cohort(tmp_path / "m.csv", "nph-evans").cases
    assert a.defaced == {"mri_reface": {"t1": tmp_path / "a" / "t1_reface.nii.gz"}} and b.defaced == {}


def test_bids_derivatives_give_volumes_defaced_elsewhere(tmp_path):
    root = tmp_path / "bids"
    nifti(root / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    nifti(root / "sub-02" / "ses-a" / "anat" / "sub-02_ses-a_T1w.nii.gz")
    (root / "participants.tsv").write_text("participant_id\tevans_ratio\nsub-01\t0.34\nsub-02\t0.28\n")
    derived = root / "derivatives" / "pydeface"
    nifti(derived / "sub-01" / "anat" / "sub-01_desc-defaced_T1w.nii.gz")
    nifti(derived / "sub-01" / "anat" / "sub-01_acq-iso_space-MNI152_desc-defaced_T1w.nii.gz")  # first by name, but in another space
    nifti(derived / "sub-01" / "anat" / "sub-01_desc-defaced_T2w.nii.gz")  # no raw T2w: ignored, the case stays
    nifti(derived / "sub-02" / "ses-a" / "anat" / "sub-02_ses-a_desc-defaced_T1w.nii.gz")
    nifti(root / "derivatives" / "mri_reface" / "sub-02" / "ses-a" / "anat" / "sub-02_ses-a_T1w.nii.gz")
    one, two = load_cohort(root, "nph-evans").cases
    assert one.defaced == {"pydeface": {"t1": derived / "sub-01" / "anat" / "sub-01_desc-defaced_T1w.nii.gz"}}
    assert two.defaced == {"mri_reface": {"t1": root / "derivatives/mri_reface/sub-02/ses-a/anat/sub-02_ses-a_T1w.nii.gz"},
                           "pydeface": {"t1": derived / "sub-02/ses-a/anat/sub-02_ses-a_desc-defaced_T1w.nii.gz"}}


def test_dicom_studies_with_reports_csv(tmp_path):
    root = tmp_path / "ct"
    data = np.full((16, 16, 6), 30.0, np.float32)
    data[:2] = -1000
    write_dicom_series(Volume(data, np.diag([0.5, 0.5, 5.0, 1.0]), "CT"), root / "study1" / "series")
    write_dicom_series(Volume(data, np.diag([0.5, 0.5, 5.0, 1.0]), "CT"), root / "study2")
    (root / "junk").mkdir()
    (root / "junk" / "a.txt").write_text("hello, not DICOM")
    (root / "reports.csv").write_text(
        "study,report,sdh,sinus_disease\n"
        'study1,"FINDINGS: Acute left subdural haematoma.\nIMPRESSION: Left SDH.",yes,no\n'
        "study2,,no,no\n"
        "gone,Normal.,no,no\n"
        "junk,Normal.,no,no\n"
        "study1b,Normal.,maybe,no\n"
    )
    cohort = load_cohort(root, "ct-report")
    assert [c.id for c in cohort.cases] == ["study1"]
    case = cohort.cases[0]
    assert case.truth["findings"] == {"sdh": True, "sinus_disease": False}
    v = case.load("ct")
    assert v.modality == "CT" and v.shape == (16, 16, 6) and float(v.data.min()) == -1000.0
    bad = problems_by_row(cohort)
    assert "report" in bad["study2"]
    assert "not found" in bad["gone"]
    assert "not a DICOM folder" in bad["junk"]
    assert "true/false" in bad["study1b"]


def _upenn(root: Path):
    for cid, with_seg in (("UPENN-GBM-00001_11", True), ("UPENN-GBM-00002_11", False)):
        for name in ("T1", "T1GD", "T2", "FLAIR"):
            nifti(root / "images_structural_unstripped" / cid / f"{cid}_{name}_unstripped.nii.gz")
        if with_seg:
            seg = np.zeros((12, 14, 10), np.uint8)
            seg[3:8, 3:9, 6] = 4
            seg[4:6, 4:6, 5] = 1
            seg[2:10, 2:12, 7] = 2
            (root / "images_segm").mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(seg, np.diag([1.0, 1.0, 2.0, 1.0])), str(root / "images_segm" / f"{cid}_segm.nii.gz"))
    (root / "UPENN-GBM_clinical_info_v2.1.csv").write_text("ID,Gender,IDH1,MGMT\nUPENN-GBM-00001_11,F,Wildtype,Methylated\n")


def test_upenn_gbm_layout(tmp_path):
    root = tmp_path / "upenn"
    _upenn(root)
    slices = load_cohort(root, "tumor-slice")
    assert [c.id for c in slices.cases] == ["UPENN-GBM-00001_11"]
    assert slices.cases[0].truth["best_slice"] == 7  # 80 voxels of oedema beat 30 of enhancing tumour
    assert "no segmentation" in problems_by_row(slices)["UPENN-GBM-00002_11"]
    dx = load_cohort(root, "tumor-dx")
    assert [c.truth["diagnosis"] for c in dx.cases] == ["glioblastoma", "glioblastoma"]
    assert dx.cases[0].truth["molecular"] == {"IDH1": "Wildtype", "MGMT": "Methylated"}
    assert set(dx.cases[0].volumes) == {"t1", "t1c", "t2", "flair"}
    with pytest.raises(HarnessError, match="tumor-slice and tumor-dx.* only, not ct-report"):
        load_cohort(root, "ct-report")


def test_hugging_face_dataset_with_volume_bytes(tmp_path):
    import datasets

    good = nifti(tmp_path / "src.nii.gz").read_bytes()
    ds = datasets.Dataset.from_list([
        {"id": "h1", "t1": good, "evans_ratio": 0.33},
        {"id": "h2", "t1": b"garbage bytes", "evans_ratio": 0.3},
    ])
    ds.save_to_disk(str(tmp_path / "hfds"))
    cohort = load_cohort(tmp_path / "hfds", "nph-evans", cache_dir=tmp_path / "cache")
    assert [c.id for c in cohort.cases] == ["h1"]
    assert cohort.cases[0].volumes["t1"].read_bytes() == good
    assert cohort.cases[0].load("t1").shape == (12, 14, 10)
    assert "not NIfTI" in problems_by_row(cohort)["h2"]


def test_unknown_sources_and_tasks_are_clear_errors(tmp_path):
    with pytest.raises(CohortError, match="cannot tell"):
        load_cohort(tmp_path, "nph-evans")
    with pytest.raises(CohortError, match="no such file"):
        load_cohort(tmp_path / "nope.jsonl", "nph-evans")
    with pytest.raises(HarnessError, match="unknown task"):
        load_cohort(tmp_path, "evans")
    (tmp_path / "m.jsonl").write_text('{"id": "a"}\n{"id": "x", "truth": \n')
    with pytest.raises(HarnessError, match=r"m\.jsonl: cannot read manifest \(line 2 is not JSON"):
        load_cohort(tmp_path / "m.jsonl", "nph-evans")
    (tmp_path / "m.json").write_text('[{"id": "a"}, 7]')
    with pytest.raises(HarnessError, match=r"m\.json: cannot read manifest \(entry 2 is not an object"):
        load_cohort(tmp_path / "m.json", "nph-evans")
    (tmp_path / "m.json").write_text('[{"id": "a", "t1": "nowhere.nii.gz", "evans_ratio": 0.3}]')
    assert load_cohort(tmp_path / "m.json", "nph-evans").problems[0][0] == "a"  # a JSON array of rows is read


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_copies_of_a_manifest_stay_inside_the_harness_cache(tmp_path, suffix):
    """`datasets` keeps an Arrow copy of what it reads (ids, paths, truth): with --cache-dir X it must land in X, not in
    the user's global Hugging Face cache. A child process, because `datasets` reads HF_HOME when imported."""
    import subprocess
    import sys

    marker = "case-7c1e0b9f-left-in-cache"
    manifest = tmp_path / f"m{suffix}"
    if suffix == ".csv":
        manifest.write_text(f"id,t1,evans_ratio\n{marker},{tmp_path / 'missing.nii.gz'},0.3\n")
    else:
        manifest.write_text(json.dumps({"id": marker, "t1": str(tmp_path / "missing.nii.gz"), "evans_ratio": 0.3}) + "\n")
    hf_home, cache = tmp_path / "hf-home", tmp_path / "harness-cache"
    code = ("import sys; from harness.data.cohort import load_cohort; "
            "c = load_cohort(sys.argv[1], 'nph-evans', cache_dir=sys.argv[2]); print(len(c.problems))")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code, str(manifest), str(cache)], capture_output=True, text=True, cwd=root,
                         env={**__import__("os").environ, "HF_HOME": str(hf_home), "PYTHONPATH": str(root)})
    assert out.returncode == 0 and out.stdout.strip() == "1", out.stderr[-2000:]  # the row is read (and refused: no file)

    def holding(folder: Path) -> list[Path]:
        return [p for p in folder.rglob("*") if p.is_file() and marker.encode() in p.read_bytes()]

    if suffix == ".csv":  # JSON lines are read directly: no copy at all
        assert holding(cache), "expected the Arrow copy under the harness cache"
    assert not hf_home.exists() or not holding(hf_home)


def test_file_digests_are_remembered_by_identity_and_a_changed_file_is_read_again(tmp_path, monkeypatch):
    import hashlib

    from harness.core import hashing as cohort_module

    monkeypatch.setattr(cohort_module, "_fingerprints", {})
    cohort_module.use_digest_cache(tmp_path / "cache")
    try:
        f = tmp_path / "t1.nii.gz"
        f.write_bytes(b"voxels" * 1000)
        assert cohort_module.fingerprint(f) == hashlib.sha256(f.read_bytes()).hexdigest()
        [entry] = (tmp_path / "cache" / "file-digests").iterdir()
        entry.write_text('{"sha256": "' + "f" * 64 + '"}')  # what a later process finds: it does not read the file
        cohort_module._fingerprints.clear()
        assert cohort_module.fingerprint(f) == "f" * 64
        f.write_bytes(b"other voxels" * 1000)
        cohort_module._fingerprints.clear()
        assert cohort_module.fingerprint(f) == hashlib.sha256(f.read_bytes()).hexdigest()
    finally:
        cohort_module.use_digest_cache(None)
