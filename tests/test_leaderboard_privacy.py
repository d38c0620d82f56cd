"""The leaderboard's privacy: re-identification scores from the runs' probe records, and face renders never published."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from harness.imaging.face_render import GALLERY_VIEW, FaceRender
from leaderboard import build, publish
from leaderboard.anonymize import LeakError
from tests.leaderboard_fixtures import MeasureTask, qc_line, sample, write_run

TASK = MeasureTask()
CASES = [f"CASE-SECRET-{i:04d}" for i in range(1, 5)]
ATTACK = "dlib HOG detector (MMOD CNN fallback), 5-point alignment, ResNet-v1 128-D embedding (dlib 20.0.1)"


def _probe(case, condition, rank=None, detected=True, no_face=None, people=3):
    return {"task": TASK.name, "condition": condition, "case_id": case, "role": "t1", "label": f"{case}/t1",
            "person": case, "no_face": no_face, "detected": detected and not no_face, "in_gallery": not no_face,
            "rank": rank, "distance": None if rank is None else (0.3 if rank == 1 else 0.7),
            "gallery_people": people, "attack": ATTACK}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("lbp")
    t = TASK
    samples = [sample(t, c, cond, "m1", r) for c, r in zip(CASES, (0.25, 0.33, 0.31, 0.40)) for cond in ("original", "quickshear")]
    qc = [qc_line(t.name, c, "quickshear", 0.9, 12.0, 0) for c in CASES]
    run = write_run(root / "runs" / "r1", samples, qc)
    gone = "no face in view: the field of view ends before the mouth"
    probes = [_probe(CASES[0], "original", 1), _probe(CASES[1], "original", 1), _probe(CASES[2], "original", 1),
              _probe(CASES[3], "original", no_face=gone),
              _probe(CASES[0], "quickshear", 1), _probe(CASES[1], "quickshear", 3),
              _probe(CASES[2], "quickshear", None, detected=False), _probe(CASES[3], "quickshear", no_face=gone)]
    (run / "qc" / "reidentification.jsonl").write_text("".join(json.dumps(p) + "\n" for p in probes))
    build([run], root / "site", tasks={t.name: t}, salt_dir=root / "salts")
    return root


def test_reidentification_columns_table_and_plot_axis(built):
    with open(built / "site" / "results" / f"{TASK.name}.csv", newline="") as fh:
        [row] = list(csv.DictReader(fh))
    # quickshear: 3 volumes with a face in view; ranks 1, 3 and no face found; one with no face in view
    assert float(row["reid_rank1"]) == pytest.approx(1 / 3, abs=1e-3)
    assert float(row["reid_rank5"]) == pytest.approx(2 / 3, abs=1e-3)
    assert float(row["reid_detected"]) == pytest.approx(2 / 3, abs=1e-3)
    assert float(row["reid_same_person"]) == pytest.approx(1 / 3, abs=1e-3)
    assert (row["reid_volumes"], row["reid_no_face"], row["reid_attack"]) == ("3", "1", ATTACK)
    assert float(row["face_fraction_changed"]) == pytest.approx(0.9)  # the voxel measures stay
    page = (built / "site" / f"{TASK.name}.html").read_text()
    assert "Privacy: face-recognition re-identification" in page and ATTACK in page
    assert "positive control" in page
    assert "matched to their own original first" in page  # the trade-off plot's x axis is rank-1 now
    assert "CASE-SECRET" not in page
    md = (built / "site" / "results" / f"{TASK.name}.md").read_text()
    assert "re-identified (rank-1) %" in md and "| 33 [" in md


def test_publish_refuses_a_face_render(built, tmp_path):
    site = tmp_path / "site"
    shutil.copytree(built / "site", site)
    publish(site, str(tmp_path / "ok"))  # the board itself is clean
    image = (np.arange(64 * 64).reshape(64, 64) % 251).astype(np.uint8)
    (site / "plots" / "tradeoff-extra.png").write_bytes(FaceRender(GALLERY_VIEW, image, 0.5).png())
    with pytest.raises(LeakError, match="tradeoff-extra.png: is a face render"):
        publish(site, str(tmp_path / "out"))
