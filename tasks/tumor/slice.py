"""tumor-slice: pick the most representative axial slice of a brain tumour (the one with the largest tumour area).

Modes:
- single: one numbered axial montage per contrast (FLAIR, T2, T1, T1 post-contrast) over the brain, the same slices in
  each; the model answers a slice number. The montage range comes from the volume's geometry (tasks.tumor.analysis).
- agent: the case's four volumes with volume_info / view_slice / view_montage / measure and a typed submit(slice).

Scoring: distance in mm between the picked and the true slice (|index difference| x slice thickness), and a hit
when that distance is at most HIT_TOLERANCE_MM (5 mm, or the adjacent slice when slices are thicker than 5 mm).
Fidelity per pair: the same distance between the original and the defaced pick, and whether they agree within the
tolerance and exactly. The slice thickness comes from the volume through locate(), so answers carry it.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

import numpy as np

from harness.models.scripted import call, register_scripted, step_number
from harness.models.types import Message
from harness.core.errors import HarnessError
from harness.core.parsing import parse_answer
from harness.imaging.io import load_volume
from harness.agent.tools import Tool, Toolbox
from tasks import register_task
from tasks.base import Metric, ModelInput, Task, TruthField
from tasks.common import image_array, prompt_messages, render_views, text_of
from tasks.tumor.analysis import (analyse, axial_count, brain_montage, read_tile_layout,
                                 slice_geometry, stack_from_images, tool_montages)
from tasks.tumor.phantom import PHANTOMS, slice_areas
from tasks.tumor.vocabulary import BRAIN_MASK_ROLE, ROLE_NAMES, ROLES

HIT_TOLERANCE_MM = 5.0
SINGLE_ROLES = ("flair", "t2", "t1", "t1c")  # T1 beside T1c: enhancement is what is brighter after contrast

ANSWER_SCHEMA = {
    "type": "object",
    "properties": {
        "slice": {"type": "integer", "minimum": 0, "description": "0-based axial slice index"},
        "reason": {"type": "string"},
        "slice_mm": {"type": "number"},
        "slice_thickness_mm": {"type": "number", "exclusiveMinimum": 0},
    },
    "required": ["slice"],
}
FALLBACKS = {"slice": r"(?:slice|#)\s*(?:number|index|no\.?)?\s*[:=#]?\s*(\d{1,4})\b"}


def tolerance_mm(thickness: float) -> float:
    return max(HIT_TOLERANCE_MM, thickness)


@register_task
class TumorSliceTask(Task):
    name = "tumor-slice"
    version = "1"
    title = "Representative tumour slice"
    description = ("Pick the axial slice with the largest tumour (FLAIR/T2 abnormality and enhancing tumour) on a "
                   "brain tumour MR; scored by the distance in mm to the ground-truth slice.")
    roles, brain_mask_role = ROLES, BRAIN_MASK_ROLE
    truth_fields = (
        TruthField("best_slice", "integer", "axial slice with the largest tumour area (any label > 0)", required=True,
                   minimum=0, from_mask="seg"),
        TruthField("best_slice_mm", "number", "world z of that slice centre"),
        TruthField("areas_mm2", "list", "tumour area per axial slice (index = slice)"),
        TruthField("enhancing_areas_mm2", "list", "enhancing-tumour area per axial slice"),
        TruthField("tumour_volume_ml", "number", "whole tumour volume"),
        TruthField("enhancing_volume_ml", "number", "enhancing tumour volume"),
    )
    phantoms = PHANTOMS
    modes = ("single", "agent")
    default_mode = "single"
    baseline = "scripted:tumor-slice"
    answer_schema = ANSWER_SCHEMA
    accuracy_metrics = (
        Metric("hit", f"picked slice within {HIT_TOLERANCE_MM:g} mm of the ground-truth slice (at least the adjacent slice)", True, "binary"),
        Metric("distance_mm", "distance between the picked and the ground-truth slice", False, "continuous", "mm"),
    )
    fidelity_metrics = (
        Metric("pick_distance_mm", "distance between the original and the defaced pick", False, "continuous", "mm"),
        Metric("pick_agree", f"original and defaced picks within {HIT_TOLERANCE_MM:g} mm of each other", True, "binary"),
        Metric("same_slice", "original and defaced picks are the same slice", True, "binary"),
    )

    def complete_truth(self, truth: dict) -> dict:
        """Without best_slice, compute it from the tumour segmentation (mask "seg", BraTS labels: 1 necrosis /
        non-enhancing core, 2 oedema, 3 or 4 enhancing) on the canonical grid."""
        if truth.get("best_slice") not in (None, ""):
            return truth
        seg_path = (truth.get("masks") or {}).get("seg")
        if not seg_path:
            raise ValueError("no best_slice and no segmentation (mask 'seg') to compute it from")
        try:
            return {**truth, **segmentation_truth(seg_path)}
        except (HarnessError, ValueError) as exc:
            raise ValueError(f"segmentation: {exc}") from None

    def headline(self, truth) -> str:
        return f"best slice {truth['best_slice']}"

    def build_input(self, case, volumes: Mapping[str, Any], mode: str) -> ModelInput:
        montage = brain_montage(volumes["flair"])
        n = volumes["flair"].shape[2]
        if mode == "agent":
            toolbox = Toolbox({r: volumes[r] for r in ROLES}, submit=Tool.from_function(_submit_slice(volumes["flair"]), name="submit", submits=True))
            messages = prompt_messages("tumor-slice/agent_system.j2", "tumor-slice/agent_user.j2",
                                       n_slices=n, roles=ROLES, role_names=ROLE_NAMES, tolerance_mm=HIT_TOLERANCE_MM)
            return ModelInput(messages, toolbox)
        if mode != "single":
            raise ValueError(f"tumor-slice has no mode {mode!r}")
        views = [(r, montage.spec(), f"{r} axial montage") for r in SINGLE_ROLES]
        images, keys = render_views(volumes, views)
        messages = prompt_messages(None, "tumor-slice/single.j2", images, montage=montage, roles=SINGLE_ROLES,
                                   role_names=ROLE_NAMES, n_slices=n, tolerance_mm=HIT_TOLERANCE_MM)
        return ModelInput(messages, None, keys)

    def parse(self, answer: Any):
        if isinstance(answer, dict):  # the agent's typed submit
            answer = json.dumps(answer)
        return parse_answer(answer if answer is None or isinstance(answer, (str, bytes)) else str(answer), ANSWER_SCHEMA, fallbacks=FALLBACKS)

    def locate(self, answer: dict, volumes: Mapping[str, Any]) -> dict:
        vol = volumes["flair"]
        if not 0 <= answer["slice"] < vol.shape[2]:
            return {**answer, "out_of_range": True}
        return {k: v for k, v in answer.items() if k != "out_of_range"} | slice_geometry(vol, answer["slice"])

    def score(self, answer: dict, truth: dict) -> dict:
        thickness = answer.get("slice_thickness_mm")
        if answer.get("out_of_range") or thickness is None:
            return {"hit": 0.0, "distance_mm": None}  # a slice the volume does not have is a miss
        dist = abs(int(answer["slice"]) - int(truth["best_slice"])) * float(thickness)
        return {"hit": float(dist <= tolerance_mm(thickness) + 1e-6), "distance_mm": round(dist, 3)}

    def compare(self, original: dict, defaced: dict) -> dict:
        thickness = original.get("slice_thickness_mm") or defaced.get("slice_thickness_mm")
        same = float(int(original["slice"]) == int(defaced["slice"]))
        if thickness is None:
            return {"pick_distance_mm": None, "pick_agree": None, "same_slice": same}
        dist = abs(int(original["slice"]) - int(defaced["slice"])) * float(thickness)
        return {"pick_distance_mm": round(dist, 3), "pick_agree": float(dist <= tolerance_mm(thickness) + 1e-6), "same_slice": same}

    def agreement(self, pairs: Sequence[tuple[dict, dict]]) -> dict:
        """Agreement of the picks over the cases: exact and within-tolerance rates, and the slice shift's spread."""
        if not pairs:
            return {}
        rows = [self.compare(o, d) for o, d in pairs]
        dists = [r["pick_distance_mm"] for r in rows if r["pick_distance_mm"] is not None]
        return {"n": len(rows), "same_slice_rate": float(np.mean([r["same_slice"] for r in rows])),
                "within_tolerance_rate": float(np.mean([r["pick_agree"] for r in rows if r["pick_agree"] is not None])) if dists else None,
                "max_pick_distance_mm": max(dists) if dists else None, "tolerance_mm": HIT_TOLERANCE_MM}


def segmentation_truth(seg_path) -> dict:
    """best_slice and per-slice areas from a tumour label map."""
    seg = load_volume(seg_path, modality="MR")
    labels = np.rint(seg.data).astype(np.int16)
    areas = slice_areas(labels, seg.spacing)
    if areas.max() <= 0:
        raise ValueError("segmentation is empty")
    enhancing = np.isin(labels, (3, 4)).sum(axis=(0, 1)) * seg.spacing[0] * seg.spacing[1]
    return {"best_slice": int(np.argmax(areas)), "areas_mm2": [round(float(a), 1) for a in areas],
            "enhancing_areas_mm2": [round(float(a), 1) for a in enhancing]}


def _submit_slice(volume):
    n = volume.shape[2]

    def submit(slice: int, reason: str = "") -> dict:
        """Submit the axial slice with the largest tumour. This ends the task; call it once, when you are sure.

        Args:
            slice: 0-based axial slice index (as shown on the images, #N).
            reason: One sentence on why this slice.
        """
        from harness.agent.tools import ToolError

        if not 0 <= slice < n:
            raise ToolError(f"slice {slice} is outside the axial range 0..{n - 1}")
        return {"slice": slice, "reason": reason}

    return submit


# --- scripted baseline ------------------------------------------------------------------------------------------

def _images_by_role(messages: Sequence[Message], roles: Sequence[str]) -> tuple[dict, list[int], int, int] | None:
    """The montages of the first user message, one per role in the order the prompt lists them."""
    user = next(m for m in messages if m.role == "user")
    layout = read_tile_layout(text_of(user))
    images = [image_array(p) for p in user.images]
    if layout is None or len(images) != len(roles):
        return None
    indices, rows, cols = layout
    return dict(zip(roles, images)), indices, rows, cols


def pick_slice(images: dict, indices: list[int], rows: int, cols: int) -> int:
    """The tile with the largest abnormal area (FLAIR/T2-bright tissue plus enhancing lesions with their cores)."""
    findings = analyse(stack_from_images(images, len(indices), rows, cols))
    return indices[int(np.argmax(findings.abnormal_area))]


@register_scripted("tumor-slice", code=(__name__, "tasks.tumor.analysis"))
def _baseline(spec):
    """Single mode: analyse the FLAIR/T2/T1c montages it is shown. Agent mode: a coarse FLAIR+T2+T1c montage over
    the whole axial range, then a fine one (every slice) around the best coarse tile, then submit."""

    def policy(messages, tools):
        names = {t.name for t in tools}
        if "view_montage" not in names and "submit" not in names:
            got = _images_by_role(messages, SINGLE_ROLES)
            if got is None:
                return "I cannot read the montage layout from the prompt."  # recorded as unparsable
            best = pick_slice(*got)
            return f'{{"slice": {best}, "reason": "largest FLAIR/T2-bright and enhancing area"}}'
        return _agent_step(messages)

    return policy


def _agent_step(messages: Sequence[Message]):
    step = step_number(messages)
    montages = tool_montages(messages)
    if step == 0:
        return call("volume_info", step, volume="flair")
    n = axial_count(messages)
    if step == 1:
        stride = max(1, -(-n // 16))
        return [call("view_montage", step, i, plane="axial", start=0, stop=n - 1, step=stride, volume=r) for i, r in enumerate(SINGLE_ROLES)]
    if step == 2:
        coarse = {role: (img, idx, rows, cols) for role, img, idx, rows, cols in montages[:4]}
        idx, rows, cols = coarse["flair"][1:]
        best = pick_slice({r: v[0] for r, v in coarse.items()}, idx, rows, cols)
        stride = idx[1] - idx[0] if len(idx) > 1 else 1
        lo, hi = max(0, best - stride), best + stride
        hi = min(hi, lo + 15, n - 1)
        return [call("view_montage", step, i, plane="axial", start=lo, stop=hi, step=1, volume=r) for i, r in enumerate(SINGLE_ROLES)]
    fine = {role: (img, idx, rows, cols) for role, img, idx, rows, cols in montages[4:8]}
    if len(fine) < len(SINGLE_ROLES):
        return "The montages did not come back; I cannot pick a slice."  # no answer: the sample fails honestly
    idx, rows, cols = fine["flair"][1:]
    best = pick_slice({r: v[0] for r, v in fine.items()}, idx, rows, cols)
    return call("submit", step, slice=best, reason="largest FLAIR/T2-bright and enhancing area on the fine montage")
