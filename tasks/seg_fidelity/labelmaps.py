"""The label map of a case's T1 under a condition, wherever it comes from - shared by seg-fidelity (whose answers are
label maps) and nph-evans's "labels" route (the Evans ratio read off a label map's lateral ventricles):
- the cohort's, when the case gives label maps (manifest `labels` / `labels@CONDITION`), one per condition; a map on
  another grid is resampled onto the T1's by nearest neighbour and the QC says so; a condition without a map, or a
  map that cannot be read, is bad input with the reason;
- else the harness's own segmentation of the (defaced) T1 (tasks.seg_fidelity.segment), in FreeSurfer numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.core.errors import HarnessError
from harness.imaging.io.labelmap import label_map_on
from harness.imaging.labels import LabelTable, label_table
from tasks.seg_fidelity.segment import SEGMENTED_REGIONS, segment_tissues

HARNESS_SEGMENTATION = "harness segmentation"


class LabelMapError(HarnessError):
    pass


@dataclass
class CaseLabels:
    labels: np.ndarray  # on the T1's grid
    table: LabelTable  # what the numbers mean (regions, lateral ventricles)
    source: str  # "label map NAME" or HARNESS_SEGMENTATION
    qc: dict = field(default_factory=dict)  # resampled_from, labels_not_in_table


def case_label_map(case, t1, condition: str) -> CaseLabels:
    qc: dict = {}
    problems = case.meta.get("label_map_problems") or []  # maps the cohort source could not assign (BIDS)
    if case.label_maps or problems:
        path = case.label_maps.get(condition)
        if path is None:
            given = f"gives label maps for {', '.join(sorted(case.label_maps))} but" if case.label_maps else "has"
            raise LabelMapError(f"case {case.id} {given} none for {condition!r} (manifest \"labels\": "
                                f"{{{condition!r}: PATH}} or a labels@{condition} column; BIDS: a *_dseg file)"
                                + "".join(f"; {p}" for p in problems))
        table = label_table(case.label_table)
        given = label_map_on(path, t1)
        labels, source = given.labels, f"label map {Path(path).name}"
        if given.resampled_from:
            qc["resampled_from"] = given.resampled_from
    else:
        table, labels, source = label_table("freesurfer"), segment_tissues(t1), HARNESS_SEGMENTATION
        table = LabelTable(table.name, table.names, {r: v for r, v in table.regions.items() if r in SEGMENTED_REGIONS},
                           table.lateral_ventricles)
    unknown = sorted(set(np.unique(labels).tolist()) - set(table.names) - {0})
    if unknown:
        qc["labels_not_in_table"] = unknown[:50]
    return CaseLabels(labels, table, source, qc)
