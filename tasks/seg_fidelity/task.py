"""seg-fidelity: does defacing change a brain segmentation? The answers are label maps of the T1 under each condition;
the pair's fidelity is their overlap and volume change per region, the cohort's is how volumes move (Wilcoxon + BH,
Bland-Altman, CR and nCR as Molchanova et al. 2024 report them).

Where the label maps come from (mode "direct": no VLM is asked; the model column reads "algorithm:seg-fidelity"):
- the cohort's, when a case gives them (manifest `labels` / `labels@CONDITION`: FreeSurfer, SLANT, SynthSeg, any
  NIfTI or MGH label volume; one per condition - "original", each --defacer as typed). A map on another grid is
  resampled onto the T1's by nearest neighbour (the answer's `qc.resampled_from` says so); a condition the case
  gives no map for, or a map that cannot be read, fails that sample with the reason (bad input).
- else the harness's own segmentation of the (defaced) T1 (tasks.seg_fidelity.segment): lateral ventricles,
  cerebral grey and white matter, in FreeSurfer numbers.

Regions: whole brain + the nine regions Gao et al. 2022 merge SLANT's labels into (harness.imaging.labels.REGIONS);
a region the label table does not have is absent, not zero. Every raw label is compared too: compare() returns
`dice_label_N` and `volume_change_label_N` (columns of the leaderboard's per-case table, <board>-pairs.csv) and each
answer keeps `label_volumes_ml`. The answer also carries the Evans ratio measured on the map's lateral ventricles
(frontal horns = their anterior part) and the inner-skull width on the T1 (tasks.nph_evans.analysis.
evans_of_ventricles), which nph-evans's "labels" route reports on its own board.
Accuracy (when the case's truth has a label map - the sample phantoms' exact one - or an Evans ratio): Dice per
region against it, and the Evans ratio's absolute error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from harness.core.parsing import ParseResult, validate
from harness.imaging.compact import MaskFormatError, decode_labels, encode_labels
from harness.imaging.io.labelmap import read_label_map
from harness.imaging.labels import REGIONS, LabelTable
from harness.scoring.segmentation import (
    confusion,
    dice_of,
    label_counts,
    region_volumes_ml,
    relative_change,
    volume_statistics,
)
from harness.scoring.stats import bland_altman, complete_pairs
from tasks import register_task
from tasks.base import Metric, ModelInput, SetStatistic, Task, TruthField
from tasks.nph_evans.analysis import evans_of_ventricles
from tasks.nph_evans.phantom import PHANTOMS
from tasks.seg_fidelity.labelmaps import case_label_map

TRUTH_MASK = "labels"  # the truth mask that is an exact label map (the sample phantoms write it)
REGION_TITLES = {"whole_brain": "whole brain", "ventricles": "ventricles", "caudate": "caudate",
                 "cerebral_wm": "cerebral white matter", "cerebral_gm": "cerebral grey matter",
                 "brainstem": "brainstem", "putamen": "putamen", "thalamus": "thalamus",
                 "cerebellar_gm": "cerebellar grey matter", "cerebellar_wm": "cerebellar white matter"}


def _region_metrics(prefix: str, what: str, **kw) -> tuple[Metric, ...]:
    return tuple(Metric(f"{prefix}{r}", what.format(region=REGION_TITLES[r]), group=r, **kw) for r in REGIONS)


@register_task
class SegFidelityTask(Task):
    name = "seg-fidelity"
    version = "1"
    title = "Segmentation fidelity (T1 label maps)"
    description = ("Label maps of the T1 on the original and the defaced volume (the cohort's FreeSurfer / SLANT / "
                   "any label maps, or the harness's own segmentation): Dice and volume change per region, "
                   "Wilcoxon + BH, Bland-Altman, CR and nCR over the cohort.")
    roles = ("t1",)
    truth_fields = (
        TruthField("evans_ratio", "number", "Evans ratio of the case (optional: scores the label map's Evans ratio)",
                   bounds=(0.05, 1.0)),
    )
    phantoms = PHANTOMS
    modes = ("direct",)
    default_mode = "direct"
    baseline = "algorithm:seg-fidelity"  # never called: direct mode has no model (harness.engine.runner)
    answer_schema = {
        "type": "object",
        "properties": {
            "source": {"type": "string"}, "table": {"type": "string"},
            "grid": {"type": "object"},  # {"voxel_ml", "shape"}: not a measurement (kept off Bland-Altman plots)
            "regions": {"type": "object"}, "volumes_ml": {"type": "object"}, "label_volumes_ml": {"type": "object"},
            "labels": {"type": "object"}, "qc": {"type": "object"},
            "evans_ratio": {"type": ["number", "null"]},
        },
        "required": ["grid", "regions", "volumes_ml", "labels"],
    }
    accuracy_metrics = (
        *_region_metrics("truth_dice_", "Dice of the {region} against the case's exact label map", higher_is_better=True),
        Metric("er_abs_error", "|Evans ratio of the label map - ground truth|", higher_is_better=False),
    )
    fidelity_metrics = (
        *_region_metrics("dice_", "Dice of the {region}, defaced vs original label map", higher_is_better=True),
        *_region_metrics("volume_change_", "{region} volume change, (defaced - original) / original",
                         higher_is_better=False, unit="%"),
        Metric("er_abs_diff", "|Evans ratio defaced - original| (label-map route)", higher_is_better=False),
    )

    board_statistic = SetStatistic(
        "nCR", ("volumes", "ncr"), "normalised coefficient of repeatability of the region volumes over the cohort "
        "(Molchanova et al. 2024): 1.96 sqrt(mean squared difference) of volumes min-max scaled by the originals' "
        "range, all regions jointly", higher_is_better=False)

    def headline(self, truth) -> str:
        er = truth.get("evans_ratio")
        return f"Evans ratio {er:.3f}" if isinstance(er, (int, float)) else "label maps"

    def build_input(self, case, volumes: Mapping[str, Any], mode: str) -> ModelInput:
        raise ValueError("seg-fidelity has no model input: its answers are label maps (mode direct)")

    # --- the answer: a label map of this condition -----------------------------------------------------------------
    def solve_direct(self, case, volumes: Mapping[str, Any], condition: str = "original", mode: str = "direct") -> dict:
        t1 = volumes["t1"]
        got = case_label_map(case, t1, condition)
        return self._answer(t1, got.labels, got.table, got.source, got.qc)

    def _answer(self, t1, labels: np.ndarray, table: LabelTable, source: str, qc: dict) -> dict:
        voxel_ml = float(np.prod(t1.spacing)) / 1000.0
        present = {int(v): int(c) for v, c in enumerate(np.bincount(labels.ravel())) if c and v}
        regions = {r: [int(v) for v in table.regions[r]] for r in REGIONS if table.regions.get(r)}
        seg = evans_of_ventricles(t1, np.isin(labels, table.lateral_ventricles))
        answer = {"source": source, "table": Path(table.name).name, "regions": regions,
                  "grid": {"voxel_ml": voxel_ml, "shape": list(labels.shape)},
                  "volumes_ml": {r: round(v, 4) for r, v in region_volumes_ml(present, voxel_ml, regions).items()},
                  "label_volumes_ml": {str(k): round(c * voxel_ml, 4) for k, c in present.items()},
                  "labels": encode_labels(labels), "qc": qc, "evans_ratio": None}
        if seg.evans_ratio is not None:
            answer.update(evans_ratio=round(seg.evans_ratio, 4), frontal_horn_width_mm=round(seg.frontal_horn_width_mm, 2),
                          inner_skull_width_mm=round(seg.inner_skull_width_mm, 2), slice_index=seg.slice_index)
        else:
            qc["evans_ratio"] = seg.reason
        return answer

    def parse(self, answer: Any) -> ParseResult:
        # Answers are made by solve_direct (or read back from a run), never free text: validated as they are.
        value, problem = validate(answer, self.answer_schema)
        if problem:
            return ParseResult(False, None, problem, "unparsable")
        return ParseResult(True, value, None, "direct")

    # --- scores ---------------------------------------------------------------------------------------------------
    def score(self, answer: dict, truth: dict) -> dict[str, float | None]:
        out: dict[str, float | None] = {m.name: None for m in self.accuracy_metrics}
        er, true_er = answer.get("evans_ratio"), truth.get("evans_ratio")
        if isinstance(er, (int, float)) and isinstance(true_er, (int, float)):
            out["er_abs_error"] = abs(float(er) - float(true_er))
        path = (truth.get("masks") or {}).get(TRUTH_MASK)
        if path:
            exact, _, _ = read_label_map(path)
            conf = _confusion(exact, answer)
            if conf is not None:
                for r, labels in answer["regions"].items():
                    out[f"truth_dice_{r}"] = dice_of(conf, labels)
        return out

    def compare(self, original: dict, defaced: dict) -> dict[str, float | None]:
        out: dict[str, float | None] = {m.name: None for m in self.fidelity_metrics}
        o_vol, d_vol = original.get("volumes_ml") or {}, defaced.get("volumes_ml") or {}
        for r in original.get("regions") or {}:
            out[f"volume_change_{r}"] = relative_change(o_vol.get(r), d_vol.get(r))
        if isinstance(original.get("evans_ratio"), (int, float)) and isinstance(defaced.get("evans_ratio"), (int, float)):
            out["er_abs_diff"] = abs(float(defaced["evans_ratio"]) - float(original["evans_ratio"]))
        try:
            conf = _confusion(decode_labels(original.get("labels")), defaced)
        except MaskFormatError:
            conf = None
        if conf is None:
            return out
        for r, labels in (original.get("regions") or {}).items():
            out[f"dice_{r}"] = dice_of(conf, labels)
        o_count, d_count = label_counts(conf)
        for label in sorted((set(o_count) | set(d_count)) - {0}):
            out[f"dice_label_{label}"] = dice_of(conf, [label])
            out[f"volume_change_label_{label}"] = relative_change(o_count.get(label), d_count.get(label, 0))
        return out

    def agreement(self, pairs: Sequence[tuple[dict, dict]]) -> dict[str, Any]:
        """Volume statistics over the cases with both answers, for the regions measured in them (a region empty in
        every original - absent from the table or the segmenter - is left out), and the Evans ratio's Bland-Altman."""
        regions = [r for r in REGIONS if any((o.get("volumes_ml") or {}).get(r) for o, _ in pairs)]
        original = {r: [float(o["volumes_ml"].get(r, 0.0)) for o, _ in pairs] for r in regions}
        defaced = {r: [float(d["volumes_ml"].get(r, 0.0)) for _, d in pairs] for r in regions}
        o_er, d_er, _ = complete_pairs([o.get("evans_ratio") for o, _ in pairs], [d.get("evans_ratio") for _, d in pairs])
        return {"n_pairs": len(pairs), "volumes": volume_statistics(original, defaced),
                "evans_ratio_bland_altman": bland_altman([float(v) for v in o_er], [float(v) for v in d_er]).to_dict()}


def _confusion(original_labels: np.ndarray, other_answer: dict):
    """Confusion table of a label map and an answer's map on the same grid; None when the grids differ or the
    answer's map is malformed."""
    try:
        other = decode_labels(other_answer.get("labels"))
    except MaskFormatError:
        return None
    return confusion(original_labels, other) if other.shape == original_labels.shape else None

