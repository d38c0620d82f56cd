"""seg-fidelity on a manifest whose rows carry label maps for the original and two conditions (NIfTI, and a
FreeSurfer-style MGH in FreeSurfer's LIA orientation): Dice, volume change, the cohort's volume tests, CR and nCR
against hand-computed values; label tables; nearest-neighbour resampling; missing and unreadable maps."""

import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from harness.core.errors import HarnessError, VolumeError
from harness.core.failures import FailureKind
from harness.core.volume import Volume
from harness.data import load_cohort
from harness.engine import sample_jobs
from harness.imaging.io import save_nifti
from harness.imaging.io.labelmap import label_map_on
from harness.imaging.labels import LabelTableError, label_table
from harness.scoring.stats import wilcoxon_signed_rank
from tasks import get_task
from tests.conftest import make_head

SHAPE, SPACING = (20, 24, 18), (2.0, 2.0, 2.0)
VOXEL_ML = 0.008


def original_labels(i: int) -> np.ndarray:
    """Case i: cerebral WM (2) 6+i x 8 x 6 voxels, a lateral ventricle (4) 2 x 4 x 4, the caudate (11) 2 x 2 x 2."""
    lab = np.zeros(SHAPE, np.int32)
    lab[4:10 + i, 6:14, 4:10] = 2
    lab[10 + i:12 + i, 8:12, 5:9] = 4
    lab[4:6, 14:16, 4:6] = 11
    return lab


def deface_labels(i: int) -> np.ndarray:
    """One WM slab lost (48 voxels) and the caudate labelled putamen (12)."""
    lab = original_labels(i)
    lab[4, 6:14, 4:10] = 0
    lab[lab == 11] = 12
    return lab


def ext_labels(i: int) -> np.ndarray:
    """The ventricle one voxel longer (40 voxels instead of 32)."""
    lab = original_labels(i)
    lab[10 + i:12 + i, 12, 5:9] = 4
    return lab


def save_mgh_lia(labels: np.ndarray, affine: np.ndarray, path) -> None:
    """As FreeSurfer writes aseg.mgz: axes Left, Inferior, Anterior (same voxel centres, another array order)."""
    data = np.flip(labels, axis=0).transpose(0, 2, 1)[:, ::-1, :]  # (x->L, z->I, y->A)
    n = labels.shape
    lia = np.zeros((4, 4))
    lia[:3, 0] = -affine[:3, 0]
    lia[:3, 1] = -affine[:3, 2]
    lia[:3, 2] = affine[:3, 1]
    lia[:3, 3] = affine[:3, 3] + affine[:3, 0] * (n[0] - 1) + affine[:3, 2] * (n[2] - 1)
    lia[3, 3] = 1
    nib.save(nib.MGHImage(np.ascontiguousarray(data).astype(np.int32), lia), str(path))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("segcohort")
    head = make_head(SHAPE, SPACING)
    rows = []
    for i in range(3):
        d = root / f"c{i}"
        d.mkdir()
        save_nifti(head, d / "t1.nii.gz")
        save_nifti(head, d / "t1_ext.nii.gz")
        for name, lab in (("labels", original_labels(i)), ("labels_deface", deface_labels(i))):
            save_nifti(Volume(lab.astype(np.float32), head.affine, "MR"), d / f"{name}.nii.gz", dtype=np.int16)
        labels = {"original": f"c{i}/labels.nii.gz", "deface": f"c{i}/labels_deface.nii.gz"}
        if i < 2:  # the third case has no map for precomputed:ext
            save_mgh_lia(ext_labels(i), head.affine, d / "aseg_ext.mgz")
            labels["precomputed:ext"] = f"c{i}/aseg_ext.mgz"
        rows.append({"id": f"c{i}", "volumes": {"t1": f"c{i}/t1.nii.gz"}, "labels": labels,
                     "defaced": {"ext": {"t1": f"c{i}/t1_ext.nii.gz"}}, "masks": {"labels": f"c{i}/labels.nii.gz"}})
    (root / "cases.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = get_task("seg-fidelity")
    cases = load_cohort(str(root / "cases.jsonl"), task).cases
    answers = {}
    for case in cases:
        for condition in ("original", "deface", "precomputed:ext"):
            if condition in case.label_maps:
                raw = task.solve_direct(case, {"t1": head}, condition)
                answers[case.id, condition] = task.parse(raw).value
    return {"root": root, "task": task, "cases": cases, "answers": answers, "head": head}


def test_manifest_rows_carry_label_maps_per_condition(cohort):
    case = cohort["cases"][0]
    assert set(case.label_maps) == {"original", "deface", "precomputed:ext"}
    assert case.label_table == "freesurfer" and case.defaced["ext"]["t1"].name == "t1_ext.nii.gz"
    csv = cohort["root"] / "cases.csv"
    csv.write_text("id,t1,labels@original,labels@precomputed:ext,t1@ext,label_table\n"
                   "c0,c0/t1.nii.gz,c0/labels.nii.gz,c0/aseg_ext.mgz,c0/t1_ext.nii.gz,slant\n")
    (row,) = load_cohort(str(csv), cohort["task"]).cases
    assert set(row.label_maps) == {"original", "precomputed:ext"} and row.label_table == "slant"
    assert set(row.defaced) == {"ext"}  # labels@... columns are not defaced volumes


def test_dice_and_volume_change_against_hand_values(cohort):
    task, a = cohort["task"], cohort["answers"]
    o, d, e = a["c0", "original"], a["c0", "deface"], a["c0", "precomputed:ext"]
    assert o["volumes_ml"]["cerebral_wm"] == pytest.approx(288 * VOXEL_ML)
    assert o["label_volumes_ml"] == {"2": pytest.approx(2.304), "4": pytest.approx(0.256), "11": pytest.approx(0.064)}
    got = task.compare(o, d)
    assert got["dice_cerebral_wm"] == pytest.approx(2 * 240 / (288 + 240))
    assert got["dice_whole_brain"] == pytest.approx(2 * 280 / (328 + 280))  # caudate -> putamen stays brain
    assert got["dice_caudate"] == 0.0 and got["dice_putamen"] == 0.0 and got["dice_ventricles"] == 1.0
    assert got["dice_label_11"] == 0.0 and got["dice_label_2"] == pytest.approx(2 * 240 / 528)
    assert got["volume_change_label_2"] == pytest.approx(100 * (240 - 288) / 288)
    assert got["volume_change_label_11"] == -100.0 and got["volume_change_label_12"] is None  # 12: not in the original
    assert got["volume_change_cerebral_wm"] == pytest.approx(100 * (240 - 288) / 288)
    assert got["dice_brainstem"] is None and got["volume_change_brainstem"] is None  # in neither map
    ext = task.compare(o, e)  # the MGH map in LIA orientation lands on the same voxels
    assert "resampled_from" not in e["qc"]  # reoriented exactly (same voxel centres), not interpolated
    assert ext["dice_ventricles"] == pytest.approx(2 * 32 / (32 + 40))
    assert ext["volume_change_ventricles"] == pytest.approx(25.0)
    assert ext["dice_cerebral_wm"] == 1.0


def test_cohort_volume_tests_cr_and_ncr(cohort):
    task, a = cohort["task"], cohort["answers"]
    pairs = [(a[f"c{i}", "original"], a[f"c{i}", "deface"]) for i in range(3)]
    vol = task.agreement(pairs)["volumes"]
    assert set(vol["regions"]) == {"whole_brain", "ventricles", "caudate", "cerebral_wm"}  # putamen: no original
    wm = vol["regions"]["cerebral_wm"]
    assert wm["cr"]["cr"] == pytest.approx(1.96 * 48 * VOXEL_ML)  # every case loses 48 voxels
    assert wm["bland_altman"]["bias"] == pytest.approx(-48 * VOXEL_ML)
    o_wm = [o["volumes_ml"]["cerebral_wm"] for o, _ in pairs]
    assert wm["wilcoxon"]["p"] == pytest.approx(wilcoxon_signed_rank(o_wm, [d["volumes_ml"]["cerebral_wm"] for _, d in pairs]).p_value)
    assert wm["wilcoxon"]["q"] >= wm["wilcoxon"]["p"]
    # nCR: ventricles and caudate do not vary in the originals (left out); whole brain and WM originals span 96
    # voxels, every scaled difference is -0.5 -> 1.96 * sqrt(0.25)
    assert vol["ncr"]["cr"] == pytest.approx(0.98) and vol["ncr"]["n_regions"] == 2
    assert "2 region(s)" in vol["ncr"]["reason"]


def test_truth_label_map_scores_the_segmentation(cohort):
    task, a = cohort["task"], cohort["answers"]
    truth = cohort["cases"][0].truth
    assert task.score(a["c0", "original"], truth)["truth_dice_whole_brain"] == 1.0
    assert task.score(a["c0", "deface"], truth)["truth_dice_cerebral_wm"] == pytest.approx(2 * 240 / 528)


def test_missing_or_unreadable_map_fails_that_sample_with_the_reason(cohort):
    task, head = cohort["task"], cohort["head"]
    third = cohort["cases"][2]
    out = sample_jobs.solve(task, third, lambda: {"t1": head}, "precomputed:ext", "direct")
    kind, message = out["failed"]
    assert kind == FailureKind.BAD_INPUT and "none for 'precomputed:ext'" in message
    bad = cohort["root"] / "c2" / "broken.nii.gz"
    bad.write_bytes(b"not a label map")
    broken = type(third)(third.id, third.task, third.volumes, third.truth, third.meta, third.defaced,
                         {**third.label_maps, "precomputed:ext": bad}, third.label_table)
    kind, message = sample_jobs.solve(task, broken, lambda: {"t1": head}, "precomputed:ext", "direct")["failed"]
    assert kind == FailureKind.BAD_INPUT and "broken.nii.gz" in message


def test_label_map_on_another_grid_is_resampled_by_nearest_neighbour(tmp_path):
    head = make_head(SHAPE, SPACING)
    lab = original_labels(1)
    fine = np.repeat(np.repeat(np.repeat(lab, 2, 0), 2, 1), 2, 2)  # 1 mm voxels, same origin
    fine[1::2] = 7  # between the 2 mm voxel centres: only nearest neighbour at the centres ignores it
    affine = head.affine.copy()
    affine[:3, :3] = np.eye(3)
    nib.save(nib.Nifti1Image(fine.astype(np.int16), affine), str(tmp_path / "fine.nii.gz"))
    got = label_map_on(tmp_path / "fine.nii.gz", head)
    assert np.array_equal(got.labels, lab)
    assert got.resampled_from["shape"] == list(fine.shape) and got.resampled_from["spacing_mm"] == [1.0, 1.0, 1.0]
    nib.save(nib.Nifti1Image(lab.astype(np.float32) + 0.5, head.affine), str(tmp_path / "image.nii.gz"))
    with pytest.raises(VolumeError, match="non-integer"):
        label_map_on(tmp_path / "image.nii.gz", head)
    with pytest.raises(VolumeError, match="not found"):
        label_map_on(tmp_path / "absent.mgz", head)


def test_label_tables(tmp_path):
    fs, slant = label_table("freesurfer"), label_table("slant")
    assert len(slant.names) == 132 and len(slant.regions["cerebral_gm"]) == 98
    assert slant.name_of(59) == "Right-Thalamus-Proper" and slant.lateral_ventricles == (51, 52)
    assert fs.regions["caudate"] == (11, 50) and 1035 in fs.regions["cerebral_gm"] and 24 not in fs.regions["whole_brain"]
    tsv = tmp_path / "mine.tsv"
    tsv.write_text("label\tname\tregion\n1\tbrain\tcerebral_gm\n")
    assert label_table(str(tsv)).regions["cerebral_gm"] == (1,)
    tsv.write_text("label\tname\tregion\n1\tbrain\tcortex\n")
    with pytest.raises(LabelTableError, match=r"mine.tsv line 2: region 'cortex'"):
        label_table(str(tsv))
    with pytest.raises(HarnessError, match="neither freesurfer nor slant"):
        label_table("aseg")
    assert math.isclose(sum(1 for _ in fs.names), 123)


def test_board_tabulates_regions_by_defacer_with_ncr(cohort, tmp_path):
    from harness.core.sample import Sample
    from harness.results.aggregate import group_cells, summarize_task
    from leaderboard import plots
    from leaderboard.anonymize import hash_case
    from leaderboard.build import _pair_records
    from leaderboard.site import grouped_table

    task, a = cohort["task"], cohort["answers"]
    samples = [Sample(sample_id=f"{c}-{cond}", task=task.name, case_id=c, condition=cond, model="algorithm:seg-fidelity",
                      mode="direct", status="ok", defacer={"name": cond}, answer=a[c, cond], scores={})
               for c in ("c0", "c1", "c2") for cond in ("original", "deface")]
    tc = group_cells(samples)[task.name]
    summary = summarize_task(task, tc, {})
    table = grouped_table(summary, task.board_statistic)
    rows = {r[0].text: r for r in table.rows}
    assert [h["label"] for h in table.headers] == ["group", "deface · dice", "deface · volume change"]
    assert set(rows) == {"whole brain", "ventricles", "caudate", "cerebral wm", "putamen", "nCR"}  # measured regions
    wm = [2 * (5 + i) * 48 / ((6 + i) * 48 + (5 + i) * 48) for i in range(3)]
    assert rows["cerebral wm"][1].v == pytest.approx(np.mean(wm))
    assert rows["nCR"][1].v == pytest.approx(0.98)
    assert plots.tradeoff_statistic(summary, task.board_statistic, tmp_path, "x") is None  # no privacy stage: no plot

    # the per-case table (<board>-pairs.csv): the declared fidelity metrics, then every raw label's Dice and change
    records = _pair_records(task, summary, tc, b"salt")
    assert len(records) == 3 and all(list(r) == list(records[0]) for r in records)
    fidelity = [k for k in records[0] if k.startswith(("dice_label_", "volume_change_label_"))]
    assert fidelity == ["dice_label_2", "dice_label_4", "dice_label_11", "dice_label_12",
                        "volume_change_label_2", "volume_change_label_4", "volume_change_label_11", "volume_change_label_12"]
    by_case = {r["case"]: r for r in records}
    for i in range(3):
        row = by_case[hash_case(f"c{i}", b"salt")]
        assert row["dice_label_2"] == pytest.approx(wm[i]) and row["volume_change_label_11"] == -100.0
        assert row["dice_cerebral_wm"] == pytest.approx(wm[i]) and row["volume_change_label_12"] is None


def test_board_ncr_cell_is_the_estimate_with_its_ci(cohort):
    """Cases losing different volumes (so the bootstrap CI has width): the board's nCR cell shows the estimate, equal
    to nCR computed here from its definition, and the CI around it."""
    from harness.core.sample import Sample
    from harness.results.aggregate import group_cells, summarize_task
    from leaderboard.site import grouped_table

    task, a = cohort["task"], cohort["answers"]
    loss = [48, 96, 24]  # voxels of white matter (and so of whole brain) lost per case
    samples = []
    for i in range(3):
        o = a[f"c{i}", "original"]
        d = dict(a[f"c{i}", "deface"])
        d["volumes_ml"] = {**o["volumes_ml"], **{r: o["volumes_ml"][r] - loss[i] * VOXEL_ML for r in ("whole_brain", "cerebral_wm")}}
        samples += [Sample(sample_id=f"c{i}-{cond}", task=task.name, case_id=f"c{i}", condition=cond,
                           model="algorithm:seg-fidelity", mode="direct", status="ok", defacer={"name": cond},
                           answer=ans, scores={}) for cond, ans in (("original", o), ("deface", d))]
    summary = summarize_task(task, group_cells(samples)[task.name], {})
    ncr = {r[0].text: r for r in grouped_table(summary, task.board_statistic).rows}["nCR"][1]
    # both varying regions span 96 voxels in the originals: scaled differences -loss/96 (ventricles, caudate constant)
    expected = 1.96 * math.sqrt(np.mean([(x / 96) ** 2 for x in loss for _ in range(2)]))
    assert ncr.v == pytest.approx(expected)
    low, high = (float(x) for x in ncr.ci.strip("[]").split(","))
    assert low < expected < high


def test_bids_derivatives_give_label_maps_per_condition(tmp_path):
    """*_dseg maps in BIDS derivatives: desc-original / desc-<defacer> name their condition anywhere, a map in a
    defaced-volume pipeline's folder is precomputed:<folder>'s, a BIDS dseg.tsv (index, name) is the table; a map that
    names no condition stays out, and a label-map task fails that case's unmapped conditions with the reason."""
    head = make_head(SHAPE, SPACING)
    root = tmp_path / "bids"
    (root / "participants.tsv").parent.mkdir(parents=True)
    (root / "participants.tsv").write_text("participant_id\nsub-01\nsub-02\n")

    def write(rel: str, labels=None) -> str:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        volume = head if labels is None else Volume(labels.astype(np.float32), head.affine, "MR")
        save_nifti(volume, path, dtype=None if labels is None else np.int16)
        return str(path)

    for sub in ("sub-01", "sub-02"):
        write(f"{sub}/anat/{sub}_T1w.nii.gz")
    write("derivatives/mri_reface/sub-01/anat/sub-01_desc-defaced_T1w.nii.gz")
    ext = write("derivatives/mri_reface/sub-01/anat/sub-01_desc-aseg_dseg.nii.gz", ext_labels(0))
    seg = "derivatives/segmentations"
    original = write(f"{seg}/sub-01/anat/sub-01_desc-original_dseg.nii.gz", original_labels(0))
    deface = write(f"{seg}/sub-01/anat/sub-01_desc-deface_dseg.nii.gz", deface_labels(0))
    table = "index\tname\tregion\tlateral_ventricle\n2\tWM\tcerebral_wm\tno\n4\tventricle\tventricles\tyes\n11\tcaudate\tcaudate\tno\n"
    (root / "derivatives/mri_reface/dseg.tsv").write_text(table + "12\tputamen\tputamen\tno\n")
    (root / seg / "dseg.tsv").write_text(table)  # not the pipeline's table: sub-01 keeps no map
    assert not load_cohort(str(root), "seg-fidelity").cases[0].label_maps
    (root / seg / "dseg.tsv").write_text(table + "12\tputamen\tputamen\tno\n")
    write(f"{seg}/sub-02/anat/sub-02_desc-original_dseg.nii.gz", original_labels(1))
    unnamed = write(f"{seg}/sub-02/anat/sub-02_dseg.nii.gz", original_labels(1))
    one, two = load_cohort(str(root), "seg-fidelity").cases
    assert {c: str(p) for c, p in one.label_maps.items()} == {"original": original, "deface": deface,
                                                              "precomputed:mri_reface": ext}
    assert Path(one.label_table).name == "dseg.tsv" and "label_map_problems" not in one.meta
    assert set(two.label_maps) == {"original"} and unnamed in two.meta["label_map_problems"][0]
    task = get_task("seg-fidelity")
    o = task.solve_direct(one, {"t1": head}, "original")
    d = task.solve_direct(one, {"t1": head}, "deface")
    assert o["table"] == "dseg.tsv" and o["regions"]["caudate"] == [11]
    assert task.compare(o, d)["dice_cerebral_wm"] == pytest.approx(2 * 240 / (288 + 240))
    kind, message = sample_jobs.solve(task, two, lambda: {"t1": head}, "reface", "direct")["failed"]
    assert kind == FailureKind.BAD_INPUT and "none for 'reface'" in message and unnamed in message


def test_unreadable_bids_label_table_is_that_cases_problem(tmp_path, monkeypatch):
    """A dseg.tsv that cannot be read leaves that case without label maps, with the reason; the cohort still loads."""
    head = make_head(SHAPE, SPACING)
    root = tmp_path / "bids"
    save_nifti(head, root / "sub-01/anat/sub-01_T1w.nii.gz")
    seg = root / "derivatives/segmentations"
    save_nifti(Volume(original_labels(0).astype(np.float32), head.affine, "MR"),
               seg / "sub-01/anat/sub-01_desc-original_dseg.nii.gz", dtype=np.int16)
    (seg / "dseg.tsv").write_text("index\tname\tregion\n2\tWM\tcerebral_wm\n")
    read_bytes = Path.read_bytes

    def refuse(self):
        if self.name == "dseg.tsv":
            raise PermissionError(13, "Permission denied", str(self))
        return read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", refuse)
    (case,) = load_cohort(str(root), "seg-fidelity").cases
    assert not case.label_maps
    assert "dseg.tsv: label table not readable (Permission denied)" in case.meta["label_map_problems"][0]
