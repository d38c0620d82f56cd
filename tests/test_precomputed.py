"""`precomputed:NAME`: volumes defaced elsewhere enter a run through the cohort and get the QC native defacers get.

The acceptance check of issue 13: a manifest whose rows carry the outputs of `harness deface --defacer reface` as
`precomputed:ext` gives the same answers and the same QC as `--defacer reface`. The task is the runner's test task
(tests/runner_fixtures.py), whose answer is the brightness of the mid-sagittal image, so any difference in the face
the model is shown changes the answer.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import defacers
from harness.cli.deface import deface_cmd
from harness.core.failures import FailureKind
from harness.data.sample_cohort import write_sample_cohort
from harness.engine.runner import EvalConfig, EvalError, Runner
from harness.imaging.io import load_volume
from harness.results.run_summary import summarize_run
from harness.store.run_store import read_qc, read_samples
from tests import runner_fixtures

pytestmark = pytest.mark.slow
QC_MEASURES = ("voxels_changed", "brain_voxels", "brain_voxels_changed", "face_region_voxels", "face_head_voxels",
               "face_fraction_changed", "face_surface_change_mm", "changed_outside_face_region")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """Two nph-evans phantoms at 2.6 mm, and each one's t1 defaced by `harness deface --defacer reface`."""
    root = tmp_path_factory.mktemp("precomputed")
    manifest = write_sample_cohort("nph-evans", n=2, seed=7, out=root, resolution_scale=2.0)
    for case in root.joinpath("cases").iterdir():
        deface_cmd(volume=case / "t1.nii.gz", defacer="reface", out=case / "t1_reface.nii.gz", qc_png=None,
                   qc_json=None, cache_dir=root / "cache", param=[], modality=None, brain_from=None)
    return manifest


def with_defaced(manifest: Path, out: Path, files: dict[str, str] | None = None) -> Path:
    """A copy of the manifest whose rows name each case's reface output (or `files[case id]`) as precomputed `ext`."""
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    for row in rows:
        t1 = (files or {}).get(row["id"], str(manifest.parent / f"cases/{row['id']}/t1_reface.nii.gz"))
        row["defaced"] = {"ext": {"t1": t1}}
        row["volumes"] = {role: str(manifest.parent / path) for role, path in row["volumes"].items()}
        row["masks"] = {name: str(manifest.parent / path) for name, path in row.get("masks", {}).items()}
    out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return out


def evaluate(manifest: Path, cohort: Path, tmp_path: Path, defacer_names: list[str]):
    """A run on `manifest`, sharing the cohort's defacer cache (reface's outputs there are reused, not recomputed)."""
    cfg = EvalConfig(tasks=["nph-evans"], defacers=defacer_names, cohort=str(manifest), out=tmp_path / "runs",
                     cache_dir=cohort.parent / "cache", workers=0, quiet=True, privacy=False)
    with runner_fixtures.install():
        return Runner(cfg, argv=["harness", "eval", "--test"]).run(summarize=summarize_run)


def test_reface_outputs_as_precomputed_give_the_same_answers_and_qc_as_reface(cohort, tmp_path):
    outcome = evaluate(with_defaced(cohort, tmp_path / "m.jsonl"), cohort, tmp_path, ["reface", "precomputed:ext"])
    assert outcome.counts["ok"] == 6 and outcome.failed == 0
    answers = {(s.case_id, s.condition): s.answer["evans_ratio"] for s in read_samples(outcome.run_dir)}
    cases = sorted({case for case, _ in answers})
    assert [answers[(c, "precomputed:ext")] for c in cases] == [answers[(c, "reface")] for c in cases]
    assert all(answers[(c, "reface")] != answers[(c, "original")] for c in cases)  # the answer does see the face
    qc = {(q["case_id"], q["condition"]): q for q in read_qc(outcome.run_dir)}
    for case in cases:
        native, given = qc[(case, "reface")]["qc"], qc[(case, "precomputed:ext")]["qc"]
        assert {k: given[k] for k in QC_MEASURES} == {k: native[k] for k in QC_MEASURES}
        assert given["registration"]["metric"] == native["registration"]["metric"]
        assert given["nothing_changed"] is False and "resampled_from" not in given
        assert qc[(case, "precomputed:ext")]["defacer"]["file_sha256"]  # the QC log names the file by content
    [row] = [r for t in outcome.summary.tasks for r in t.rows if r.defacer == "precomputed:ext"]
    assert row.n_pairs == 2

    # harness view re-renders what the model saw from the case's own precomputed file, and it matches
    from harness.view.catalog import load_runs
    from harness.view.images import ImageSource
    from harness.view.pages import View, slug

    with runner_fixtures.install():
        view = View(load_runs([outcome.run_dir]), ImageSource(cohort.parent / "cache"))
        [run] = view.runs.values()
        for sample in read_samples(outcome.run_dir):
            if sample.condition == "precomputed:ext":
                page = view.get(f"runs/{run.rid}/sample/{slug(sample.sample_id)}.html")[1].decode()
                assert page.count('data-status="match"') == 1 and 'data-status="mismatch"' not in page


def test_sample_ids_and_cohort_hash_follow_the_file_content(cohort, tmp_path):
    first_case = json.loads(cohort.read_text().splitlines()[0])["id"]
    copy = tmp_path / "copy.nii.gz"
    shutil.copy(cohort.parent / f"cases/{first_case}/t1_reface.nii.gz", copy)

    def plan(manifest):
        with runner_fixtures.install():
            runner = Runner(EvalConfig(tasks=["nph-evans"], defacers=["precomputed:ext"], cohort=str(manifest),
                                       out=tmp_path / "runs", cache_dir=tmp_path / "cache", quiet=True))
            items = runner.plan()
        return {(i.case_id, i.condition): i.sample_id for i in items}, runner.cohorts["nph-evans"].content_hash

    before, hash_before = plan(with_defaced(cohort, tmp_path / "a.jsonl", {first_case: str(copy)}))
    img = nib.load(str(copy))
    data = np.asarray(img.dataobj).copy()
    data[0, 0, 0] += 1  # one voxel of the defaced file
    nib.save(nib.Nifti1Image(data, img.affine, img.header), str(copy))
    after, hash_after = plan(with_defaced(cohort, tmp_path / "a.jsonl", {first_case: str(copy)}))
    changed = {key for key in before if before[key] != after[key]}
    assert changed == {(first_case, "precomputed:ext")}
    assert hash_before != hash_after  # so a run started with the old file is not continued with the new one


def test_a_name_the_cohort_does_not_give_is_an_error_before_anything_runs(cohort, tmp_path):
    with pytest.raises(EvalError, match=r"gives no volumes for precomputed:extt .*it gives: precomputed:ext"):
        evaluate(with_defaced(cohort, tmp_path / "m.jsonl"), cohort, tmp_path, ["precomputed:extt"])
    assert not (tmp_path / "runs").exists()


def test_a_missing_or_unreadable_file_fails_only_its_samples_with_the_reason(cohort, tmp_path):
    ids = [json.loads(line)["id"] for line in cohort.read_text().splitlines()]
    garbage = tmp_path / "garbage.nii.gz"
    garbage.write_bytes(b"this is not a NIfTI file")
    files = {ids[0]: str(tmp_path / "nowhere.nii.gz"), ids[1]: str(garbage)}
    outcome = evaluate(with_defaced(cohort, tmp_path / "m.jsonl", files), cohort, tmp_path, ["precomputed:ext"])
    samples = {(s.case_id, s.condition): s for s in read_samples(outcome.run_dir)}
    assert all(samples[(c, "original")].status == "ok" for c in ids)
    for case, path in files.items():
        failed = samples[(case, "precomputed:ext")]
        assert failed.status == "failed" and failed.error["kind"] == FailureKind.BAD_INPUT
        assert path in failed.error["message"] and "t1" in failed.error["message"]


def test_another_grid_is_resampled_onto_the_original_and_the_qc_says_so(cohort, tmp_path):
    original_path = next(cohort.parent.joinpath("cases").iterdir()) / "t1.nii.gz"
    original = load_volume(original_path)
    img = nib.load(str(original_path))
    # the same head cropped by 3 voxels on the left and stored left-right flipped: other shape, origin and axes
    crop = np.asarray(img.dataobj)[3:, :, :][::-1]
    affine = img.affine @ np.array([[-1, 0, 0, crop.shape[0] - 1 + 3], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], float)
    path = tmp_path / "cropped.nii.gz"
    nib.save(nib.Nifti1Image(crop, affine), str(path))
    result = defacers.get("precomputed:ext", path=str(path)).deface(original)
    assert result.qc["resampled_from"]["shape"] == [original.shape[0] - 3, *original.shape[1:]]
    assert np.array_equal(result.volume.data[3:], original.data[3:])  # voxel centres coincide: values unchanged
    assert np.all(result.volume.data[:3] == original.data.min())  # outside the file's field of view: air
    assert result.volume.shape == original.shape and np.allclose(result.volume.affine, original.affine)


def test_a_copy_of_the_original_is_flagged_nothing_changed(cohort, tmp_path):
    original_path = next(cohort.parent.joinpath("cases").iterdir()) / "t1.nii.gz"
    result = defacers.get("precomputed:ext", path=str(original_path)).deface(load_volume(original_path))
    assert result.qc["nothing_changed"] is True and result.qc["voxels_changed"] == 0
    assert "resampled_from" not in result.qc
    with pytest.raises(defacers.DefacerInputError, match="gives no 'ext' volume"):
        defacers.get("precomputed:ext").deface(load_volume(original_path))


def test_the_run_says_which_defaced_volumes_need_a_look():
    from harness.engine.deface_stage import qc_warnings

    lines = qc_warnings([("precomputed:a", {"nothing_changed": True}), ("precomputed:a", {"nothing_changed": True}),
                         ("precomputed:b", {"nothing_changed": False, "resampled_from": {"shape": [9, 9, 9]}}),
                         ("reface", {"nothing_changed": False})])
    assert lines == ["precomputed:a: 2 volumes identical to the original (nothing changed); see qc/defacer_qc.jsonl",
                     "precomputed:b: 1 volume on another grid than the original (resampled onto it); see qc/defacer_qc.jsonl"]
