"""nph-evans: the Evans ratio of a T1 head MR (maximal frontal-horn width / inner-skull width on the same axial slice)
and whether it suggests ventricular enlargement as in normal-pressure hydrocephalus (ER > 0.3).

Routes (modes):
- direct: segmentation (tasks.nph_evans.analysis.segment_evans) - no model; the answer also carries the ventricle mask,
  compactly encoded, so the pair's fidelity includes the Dice of the original and defaced ventricle masks.
- labels: the Evans ratio of a label map's lateral ventricles - the cohort's FreeSurfer / SLANT / any label maps, one
  per condition (manifest `labels`, as seg-fidelity reads them), or else the harness's own tissue segmentation
  (tasks.seg_fidelity.labelmaps) - with the inner-skull width measured on the T1 at the widest frontal horns. No
  model; on the board it sits beside the VLM routes and direct, so a FreeSurfer user sees all three.
- agent (default): the model finds the level with view_slice/view_montage, measures the frontal horns and the inner
  skull with `measure`, and submits widths in mm and the ratio through a typed submit tool.
- single: one axial montage around the expected frontal-horn level, chosen from the head's geometry (75-105 mm below
  the vertex), never from ground truth; the model estimates the ratio and says NPH yes/no.

Why agent is the default: it is the route a VLM is evaluated on that still yields millimetres (what a report states),
and its scripted baseline does real measurement through the same tools (it finds the level on a montage, reads the
slices, measures with `measure`), so `harness eval --task nph-evans --defacer reface` exercises the toolbox and shows
how defacing moves a tool-using reader. "direct" would ignore a --model given on the command line (the runner puts the
algorithm in the model column), so it is opt-in with --mode direct.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Mapping, Sequence

import numpy as np

from harness.imaging import render_cache
from harness.imaging.brainmask import head_mask
from harness.models.scripted import call, register_scripted, step_number
from harness.models.types import Message
from harness.core.parsing import parse_answer
from harness.imaging.render import RenderSpec, Slices
from harness.scoring.stats import bland_altman, cohen_kappa, complete_pairs, icc
from harness.agent.tools import Tool, Toolbox
from tasks import register_task
from tasks.base import Metric, ModelInput, Task, TruthField
from tasks.common import image_array, prompt_messages, render_views, shown_images, split_tiles
from tasks.nph_evans.phantom import PHANTOMS
from harness.imaging.compact import encode_mask, mask_dice
from tasks.nph_evans.analysis import NPH_THRESHOLD, evans_of_ventricles, head_region, read_axial_image, segment_evans
from tasks.seg_fidelity.labelmaps import case_label_map

ICC_FORM = "ICC(2,1)"  # absolute agreement: a systematic shift introduced by defacing lowers it
MONTAGE_BELOW_VERTEX_MM = (75.0, 105.0)  # where the frontal horns lie in adult heads (measured from the scalp vertex)
MONTAGE_TILES = 9
MONTAGE_VERSION = 1  # bump when the montage's slice choice changes (it is cached by volume content)
MONTAGE_TILE_PX = 320
WIDE_SKULL_FRACTION = 0.85


def _nph_of(answer: Mapping) -> bool:
    """The answer's NPH call; when the model gave only a ratio, the clinical threshold decides."""
    nph = answer.get("nph")
    return bool(nph) if isinstance(nph, bool) else float(answer["evans_ratio"]) > NPH_THRESHOLD


def submit_evans(evans_ratio: float, frontal_horn_width_mm: float, inner_skull_width_mm: float, slice_index: int,
                 nph: bool) -> dict:
    """Submit your measurement. This ends the task; call it once, when you are sure.

    Args:
        evans_ratio: Maximal frontal-horn width divided by the inner-skull width on the same axial slice.
        frontal_horn_width_mm: Maximal left-right width of the frontal horns, in mm (from measure).
        inner_skull_width_mm: Maximal left-right inner-skull width on that slice, in mm (from measure).
        slice_index: The axial slice index you measured on.
        nph: True if the ventricles are enlarged as in normal-pressure hydrocephalus (Evans ratio above 0.3).
    """
    return {"evans_ratio": evans_ratio, "frontal_horn_width_mm": frontal_horn_width_mm,
            "inner_skull_width_mm": inner_skull_width_mm, "slice_index": slice_index, "nph": nph}


@register_task
class NphEvansTask(Task):
    name = "nph-evans"
    version = "1"
    title = "Evans ratio and NPH (T1 MR)"
    description = ("Maximal frontal-horn width / inner-skull width on the same axial slice of a T1 head MR, and "
                   "ventricular enlargement as in NPH (Evans ratio > 0.3).")
    roles = ("t1",)
    truth_fields = (
        TruthField("evans_ratio", "number", "max frontal-horn left-right width / inner-skull width on the same axial slice",
                   required=True, bounds=(0.05, 1.0)),
        TruthField("frontal_horn_width_mm", "number", "that frontal-horn width (whole voxels: max index - min index + 1, x voxel size)"),
        TruthField("inner_skull_width_mm", "number", "inner-skull left-right width on that slice"),
        TruthField("slice_index", "integer", "the axial slice (third array axis of the canonical volume) with the widest frontal horns", minimum=0),
    )
    phantoms = PHANTOMS
    modes = ("agent", "single", "direct", "labels")
    direct_modes = ("direct", "labels")
    default_mode = "agent"
    baseline = "scripted:nph-evans"
    answer_schema = {
        "type": "object",
        "properties": {
            "evans_ratio": {"type": "number", "exclusiveMinimum": 0, "maximum": 1.5},
            "nph": {"type": "boolean"},
            "frontal_horn_width_mm": {"type": "number", "exclusiveMinimum": 0, "maximum": 300},
            "inner_skull_width_mm": {"type": "number", "exclusiveMinimum": 0, "maximum": 300},
            "slice_index": {"type": "integer", "minimum": 0},
            "ventricle_mask": {"type": "object"},
        },
        "required": ["evans_ratio"],
    }
    fallbacks = {
        "evans_ratio": r"evans(?:'s)?\s+(?:ratio|index)\s*(?:is|=|:|of|was)?\s*(?:about|approximately|~)?\s*([0-9]*\.[0-9]+)",
        "nph": r"\bnph\b\s*(?:[:=]|\bis\b)?\s*\b(yes|no|true|false)\b",
    }
    accuracy_metrics = (
        Metric("er_abs_error", "|Evans ratio - ground truth|", higher_is_better=False),
        Metric("nph_correct", "NPH call (ER > 0.3) matches the ground truth", higher_is_better=True, kind="binary"),
    )
    fidelity_metrics = (
        Metric("er_abs_diff", "|Evans ratio defaced - original|", higher_is_better=False),
        Metric("nph_agree", "same NPH call on the defaced and original volume", higher_is_better=True),
        Metric("ventricle_dice", "Dice of the ventricle masks, defaced vs original (direct and labels routes)", higher_is_better=True),
    )

    def headline(self, truth) -> str:
        return f"Evans ratio {truth['evans_ratio']:.3f}"

    # --- inputs -------------------------------------------------------------------------------------------------
    def build_input(self, case, volumes: Mapping[str, Any], mode: str) -> ModelInput:
        t1 = volumes["t1"]
        if mode == "single":
            indices = montage_slices(t1)
            cols = math.ceil(math.sqrt(len(indices)))
            rows = math.ceil(len(indices) / cols)
            spec = RenderSpec(plane="axial", slices=Slices("index", tuple(indices)), size=MONTAGE_TILE_PX,
                              montage=(rows, cols), labels=True)
            images, keys = render_views(volumes, [("t1", spec, "t1 axial montage")])
            fov_mm = max(t1.shape[0] * t1.spacing[0], t1.shape[1] * t1.spacing[1])
            messages = prompt_messages(None, "nph-evans/single.j2", images, n=len(indices), rows=rows, cols=cols,
                                       indices=indices, threshold=NPH_THRESHOLD,
                                       mm_per_pixel=f"{fov_mm / MONTAGE_TILE_PX:.3g}")
            return ModelInput(messages, None, keys)
        if mode == "agent":
            toolbox = Toolbox(volumes, submit=Tool.from_function(submit_evans, name="submit", submits=True))
            messages = prompt_messages("nph-evans/agent_system.j2", "nph-evans/agent_user.j2", threshold=NPH_THRESHOLD)
            return ModelInput(messages, toolbox, [])
        raise ValueError(f"nph-evans builds model input for single and agent modes, not {mode!r}")

    # --- answers ------------------------------------------------------------------------------------------------
    def parse(self, answer: Any):
        if isinstance(answer, dict):  # what the typed submit tool returned
            answer = json.dumps(answer)
        return parse_answer(answer, self.answer_schema, fallbacks=self.fallbacks)

    def score(self, answer: dict, truth: dict) -> dict[str, float | None]:
        er, true_er = float(answer["evans_ratio"]), float(truth["evans_ratio"])
        return {"er_abs_error": abs(er - true_er), "nph_correct": float(_nph_of(answer) == (true_er > NPH_THRESHOLD))}

    def compare(self, original: dict, defaced: dict) -> dict[str, float | None]:
        out = {"er_abs_diff": abs(float(defaced["evans_ratio"]) - float(original["evans_ratio"])),
               "nph_agree": float(_nph_of(original) == _nph_of(defaced)), "ventricle_dice": None}
        if "ventricle_mask" in original and "ventricle_mask" in defaced:
            out["ventricle_dice"] = mask_dice(original["ventricle_mask"], defaced["ventricle_mask"])
        return out

    def agreement(self, pairs: Sequence[tuple[dict, dict]]) -> dict[str, Any]:
        o, d, _ = complete_pairs([p[0].get("evans_ratio") for p in pairs], [p[1].get("evans_ratio") for p in pairs])
        ba = bland_altman([float(v) for v in o], [float(v) for v in d])
        with np.errstate(divide="ignore", invalid="ignore"):  # identical pairs: the ICC result says so in `reason`
            ic = icc(np.column_stack([np.asarray(o, float), np.asarray(d, float)]) if o else np.zeros((0, 2)), form=ICC_FORM)
        k = cohen_kappa([_nph_of(a) for a, _ in pairs], [_nph_of(b) for _, b in pairs], labels=[False, True])
        return {"n_pairs": len(pairs), "evans_ratio_bland_altman": ba.to_dict(), "evans_ratio_icc": ic.to_dict(),
                "nph_kappa": k.to_dict()}

    # --- the segmentation route ---------------------------------------------------------------------------------
    def solve_direct(self, case, volumes: Mapping[str, Any], condition: str = "original", mode: str = "direct") -> dict:
        t1 = volumes["t1"]
        source = {}
        if mode == "labels":
            got = case_label_map(case, t1, condition)
            seg = evans_of_ventricles(t1, np.isin(got.labels, got.table.lateral_ventricles))
            source = {"source": got.source, **({"qc": got.qc} if got.qc else {})}
        else:
            seg = segment_evans(t1)
        if seg.evans_ratio is None:
            # Recorded as unparsable with the reason: the algorithm gave no measurement, which is not a wrong answer.
            return {"error": seg.reason, **source}
        return {"evans_ratio": round(seg.evans_ratio, 4), "nph": seg.evans_ratio > NPH_THRESHOLD,
                "frontal_horn_width_mm": round(seg.frontal_horn_width_mm, 2),
                "inner_skull_width_mm": round(seg.inner_skull_width_mm, 2), "slice_index": seg.slice_index,
                "ventricle_mask": encode_mask(seg.ventricles), **source}


def montage_slices(volume) -> list[int]:
    """MONTAGE_TILES axial slices spread over 75-105 mm below the top of the head (from the head mask, i.e. the
    volume's geometry - never from ground truth), clipped to the volume. Kept with the render cache."""
    return render_cache.remembered(volume, "nph-evans-montage-slices", MONTAGE_VERSION, _montage_slices)


def _montage_slices(volume) -> list[int]:
    head = head_mask(volume)
    zs = np.nonzero(head.any(axis=(0, 1)))[0]
    nz = volume.shape[2]
    top = int(zs.max()) if zs.size else nz - 1
    sz = volume.spacing[2]
    lo, hi = MONTAGE_BELOW_VERTEX_MM
    positions = np.linspace(top - hi / sz, top - lo / sz, MONTAGE_TILES)
    return sorted({int(np.clip(round(p), 0, nz - 1)) for p in positions})


# --- the scripted baseline ------------------------------------------------------------------------------------------

def _best_reading(readings):
    """(index, reading) of the widest frontal horns among readings with a ratio, on slices through the wide part of
    the skull (the horns lie there; near the vertex or the skull base sulci and cisterns can look like horns);
    None if no reading has a ratio."""
    usable = [(i, r) for i, r in enumerate(readings) if r.ratio is not None]
    if not usable:
        return None
    widest = max(r.skull_width for _, r in usable)
    usable = [(i, r) for i, r in usable if r.skull_width >= WIDE_SKULL_FRACTION * widest]
    return max(usable, key=lambda ir: (ir[1].horn_width, -ir[0]))


def _single_answer(messages: list[Message]) -> str:
    text = "\n".join(m.text for m in messages if m.role == "user")
    m = re.search(r"(\d+)\s+rows?\s*x\s*(\d+)\s+columns?", text)
    images = shown_images(messages)
    if not m or not images:
        return "I cannot read the montage layout."
    rows, cols = int(m.group(1)), int(m.group(2))
    scale = re.search(r"([\d.]+)\s*mm per pixel", text)
    mm = float(scale.group(1)) if scale else None
    readings = [read_axial_image(t, mm) for t in split_tiles(image_array(images[-1]), rows, cols)]
    best = _best_reading(readings)
    if best is None:
        return "I could not find the frontal horns on these slices."
    er = round(float(best[1].ratio), 3)
    return json.dumps({"evans_ratio": er, "nph": er > NPH_THRESHOLD, "tile": best[0] + 1})


_MONTAGE_TEXT = re.compile(r"montage .*?: \d+ slices \(([\d, ]+)\)")
_SLICE_TEXT = re.compile(r"axial slice (\d+) .*?, (\d+)x(\d+) pixels, ([\d.]+) mm per pixel")
_DISTANCE = re.compile(r"distance ([\d.]+) mm")


def _montage_mm_per_px(info: list[Message], tile_width_px: float) -> float | None:
    """Millimetres per montage pixel from volume_info's voxel counts and spacing (axial tiles span x left-right)."""
    if not info:
        return None
    vox = re.search(r"voxels: (\d+) x (\d+) x (\d+)", info[-1].text)
    sp = re.search(r"spacing: ([\d.]+) x ([\d.]+) x ([\d.]+) mm", info[-1].text)
    if not vox or not sp or tile_width_px <= 0:
        return None
    return int(vox.group(1)) * float(sp.group(1)) / tile_width_px


def _axial_spacing(info: list[Message]) -> float | None:
    sp = re.search(r"spacing: [\d.]+ x [\d.]+ x ([\d.]+) mm", info[-1].text) if info else None
    return float(sp.group(1)) if sp else None


def _tool_messages(messages, name: str) -> list[Message]:
    return [m for m in messages if m.role == "tool" and m.name == name]


def _horn_band(messages: list[Message]):
    """From the whole-range montage: (tile indices, tile readings, slices between tiles, lowest and highest slice
    index of the frontal-horn band) or None. The horns lie 75-105 mm below the vertex (read off the mid-sagittal
    view; slice thickness and count from volume_info); the band gets a 10 mm margin."""
    montages = _tool_messages(messages, "view_montage")
    m = _MONTAGE_TEXT.search(montages[-1].text) if montages else None
    if not m or not montages[-1].images:
        return None
    indices = [int(v) for v in m.group(1).split(",")]
    cols = math.ceil(math.sqrt(len(indices)))
    rows = math.ceil(len(indices) / cols)
    sheet = image_array(montages[-1].images[0])
    info = _tool_messages(messages, "volume_info")
    mm = _montage_mm_per_px(info, sheet.shape[1] / cols)
    tiles = split_tiles(sheet, rows, cols, len(indices))
    readings = [read_axial_image(t, mm) for t in tiles]
    step_between = indices[1] - indices[0] if len(indices) > 1 else 1
    sz = _axial_spacing(info)
    top = _vertex_index(messages)
    if top is None or not sz:
        return indices, readings, step_between, indices[0], indices[-1] + step_between
    lo_mm, hi_mm = MONTAGE_BELOW_VERTEX_MM
    vox = re.search(r"voxels: \d+ x \d+ x (\d+)", info[-1].text)
    last = int(vox.group(1)) - 1 if vox else indices[-1]
    lo = max(0, int(math.floor(top - (hi_mm + 10) / sz)))
    hi = min(last, int(math.ceil(top - (lo_mm - 10) / sz)))
    return indices, readings, step_between, lo, hi


def _vertex_index(messages: list[Message]) -> float | None:
    """The axial index of the top of the head, read off the mid-sagittal view (superior at the top; the image's
    rows span the volume's axial range linearly, see harness.agent.tools.pixel_to_voxel)."""
    views = [m for m in _tool_messages(messages, "view_slice") if "sagittal slice" in m.text and m.images]
    info = _tool_messages(messages, "volume_info")
    vox = re.search(r"voxels: (\d+) x (\d+) x (\d+)", info[-1].text) if info else None
    if not views or not vox:
        return None
    pixels = image_array(views[-1].images[0])
    lit = pixels[pixels > 0]
    if lit.size == 0:
        return None
    head = head_region(pixels.T / max(float(np.percentile(lit, 90)), 1.0))  # (x, y) like the readers
    rows = np.nonzero(head.any(axis=0))[0]
    if rows.size == 0:
        return None
    nk = int(vox.group(3))
    r = (rows[0] + 0.5) * nk / pixels.shape[0] - 0.5
    return nk - 1 - r


def _agent_step(messages: list[Message], tools) -> Any:
    """Montage of the whole axial range -> the tile with the widest frontal horns -> every slice around it ->
    measure the horns and the inner skull on the best slice -> submit. Each stage reads only what it was shown."""
    step = step_number(messages)
    montages = _tool_messages(messages, "view_montage")
    slices = _tool_messages(messages, "view_slice")
    measures = _tool_messages(messages, "measure")
    if not montages:
        return [call("volume_info", step, 0), call("view_montage", step, 1, plane="axial")]
    if not slices:
        vox = re.search(r"voxels: (\d+) x", _tool_messages(messages, "volume_info")[-1].text)
        return call("view_slice", step, plane="sagittal", index=int(vox.group(1)) // 2 if vox else 0)
    band = _horn_band(messages)
    slices = [m for m in slices if "axial slice" in m.text]
    if not slices:
        if band is None:
            return "I could not read the montage."  # no answer: the sample fails with the agent's reason
        indices, readings, step_between, lo, hi = band
        candidates = [(k, r) for k, r in zip(indices, readings) if lo <= k <= hi] or list(zip(indices, readings))
        best = _best_reading([r for _, r in candidates])
        centre = candidates[best[0]][0] if best else candidates[len(candidates) // 2][0]
        stride = max(1, round(step_between / 4))
        picks = sorted({k for k in (centre + d * stride for d in range(-5, 6)) if lo <= k <= hi} or {centre})
        return [call("view_slice", step, i, plane="axial", index=int(k)) for i, k in enumerate(picks)]
    if not measures:
        seen = []
        for msg in slices:
            m = _SLICE_TEXT.search(msg.text)
            if m and msg.images:
                seen.append((int(m.group(1)), read_axial_image(image_array(msg.images[0]), float(m.group(4)))))
        best = _best_reading([r for _, r in seen])
        if best is None:
            return "I could not find the frontal horns."
        k, reading = seen[best[0]]
        hl, hr, hy = reading.horns
        sl, sr, sy = reading.skull
        return [call("measure", step, 0, plane="axial", index=k, points=[[hl, hy], [hr, hy]]),
                call("measure", step, 1, plane="axial", index=k, points=[[sl, sy], [sr, sy]])]
    dists = [float(m.group(1)) for m in (_DISTANCE.search(x.text) for x in measures[-2:]) if m]
    k_match = re.search(r"axial slice (\d+)", measures[-1].text)
    if len(dists) != 2 or not k_match or dists[1] <= 0:
        return "The measurements failed."
    horn, skull = dists
    er = round(horn / skull, 4)
    return call("submit", step, evans_ratio=er, frontal_horn_width_mm=horn, inner_skull_width_mm=skull,
                slice_index=int(k_match.group(1)), nph=er > NPH_THRESHOLD)


@register_scripted("nph-evans", code=(__name__, "tasks.nph_evans.analysis"))
def _scripted_nph(spec):
    """Reads what it is shown: the montage (single mode) or the tool images (agent mode)."""

    def policy(messages, tools):
        if any(t.name == "measure" for t in tools):
            return _agent_step(messages, tools)
        return _single_answer(messages)

    return policy
