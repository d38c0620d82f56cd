"""tumor-dx: diagnose a brain tumour MR (T1, T1c, T2, FLAIR) from the cohort's label set, with its key findings.

Modes:
- single: one numbered axial montage per contrast over the brain (the same slices as tumor-slice shows);
- agent: the four volumes with the volume tools and a typed submit(diagnosis, findings..., rationale).

Metrics per sample: `correct` (binary, diagnosis == truth; its mean is the accuracy, McNemar between conditions),
`diagnosis` (categorical: the predicted label itself, so the summary gives Cohen's kappa original vs defaced) and
`findings_match` (share of the key findings that match the truth's). Per pair: `diagnosis_agree`, `findings_agree`.
agreement() gives Cohen's kappa on the diagnosis and per-finding agreement over the pairs.

Macro-F1 over the classes is a set-level accuracy (it needs every case's prediction and truth at once): each sample
scores its one-vs-rest counts per class (`macro_f1:CLASS:tp|fp|fn`, 0 or 1), and the `macro_f1` metric (kind "set")
is computed from their sums over a condition's samples, with bootstrap CIs over cases; the truth never enters an
answer. Each key finding has its own fidelity metric (`FINDING_agree`: share of pairs that agree on it).
"""

from __future__ import annotations

import json
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from tasks.tumor.vocabulary import BRAIN_MASK_ROLE, DIAGNOSES, ROLE_NAMES, ROLES
from harness.models.scripted import call, register_scripted, step_number
from harness.core.parsing import parse_answer
from harness.scoring.stats import cohen_kappa
from harness.agent.tools import Tool, Toolbox
from tasks import register_task
from tasks.base import Metric, ModelInput, Task, TruthField
from tasks.common import image_array, prompt_messages, render_views, text_of
from tasks.tumor.analysis import (analyse, axial_count, brain_montage, Findings, read_tile_layout,
                                 stack_from_images, tool_montages)
from tasks.tumor.phantom import PHANTOMS

SINGLE_ROLES = ("t1", "t1c", "t2", "flair")
FINDING_VALUES = {
    "enhancement": ("ring", "solid", "homogeneous", "none"),
    "necrosis": (True, False),
    "oedema": ("marked", "mild", "minimal"),
    "location": ("intra-axial", "extra-axial"),
    "hemisphere": ("left", "right", "both"),
}
KEY_FINDINGS = ("enhancement", "necrosis", "oedema", "location", "lesion_count", "hemisphere")

ANSWER_SCHEMA = {
    "type": "object",
    "properties": {
        "diagnosis": {"type": "string", "enum": list(DIAGNOSES)},
        "findings": {"type": "object"},  # normalised by parse(): unknown keys or values are dropped, not fatal
        "rationale": {"type": "string"},
    },
    "required": ["diagnosis"],
}
_SYNONYMS = {"gbm": "glioblastoma", "glioblastoma multiforme": "glioblastoma", "lgg": "low-grade glioma",
             "low grade glioma": "low-grade glioma", "metastasis": "metastases", "brain metastases": "metastases",
             "metastatic disease": "metastases"}
FALLBACKS = {"diagnosis": r"\b(glioblastoma|low[- ]grade glioma|metastases|meningioma)\b"}


def normalise_findings(raw: Any) -> dict:
    """Keep the key findings whose values the task knows (case- and spelling-tolerant); drop the rest."""
    if not isinstance(raw, dict):
        return {}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        k = str(key).strip().lower().replace(" ", "_")
        k = {"edema": "oedema", "side": "hemisphere", "count": "lesion_count", "number_of_lesions": "lesion_count"}.get(k, k)
        if k == "lesion_count":
            try:
                n = int(value)
            except (TypeError, ValueError):
                continue
            if n >= 0:
                out[k] = n
            continue
        allowed = FINDING_VALUES.get(k)
        if allowed is None:
            continue
        if k == "necrosis":
            v = value if isinstance(value, bool) else {"yes": True, "no": False, "true": True, "false": False}.get(str(value).strip().lower())
        else:
            v = str(value).strip().lower().replace(" ", "-").replace("_", "-").replace("intraaxial", "intra-axial").replace("extraaxial", "extra-axial")
            v = {"moderate": "mild", "severe": "marked", "none": "minimal"}.get(v, v) if k == "oedema" else v
        if v in allowed:
            out[k] = v
    return out


def _finding_equal(key: str, a, b) -> bool:
    if key == "lesion_count":  # single vs multiple: the distinction the diagnosis turns on
        return (int(a) > 1) == (int(b) > 1)
    return a == b


def findings_match(answer: dict, reference: dict) -> float | None:
    keys = [k for k in KEY_FINDINGS if k in answer and k in reference]
    if not keys:
        return None
    return float(np.mean([_finding_equal(k, answer[k], reference[k]) for k in keys]))


MACRO_F1_KEYS = tuple(f"macro_f1:{c}:{k}" for c in DIAGNOSES for k in ("tp", "fp", "fn"))


def one_vs_rest(predicted: str, actual: str) -> dict[str, float]:
    """One sample's share of the macro-F1 counts: per class, 1.0 for a true positive, false positive or false
    negative (MACRO_F1_KEYS), else 0.0."""
    return {f"macro_f1:{c}:{k}": float(v) for c in DIAGNOSES
            for k, v in (("tp", predicted == c == actual), ("fp", predicted == c != actual), ("fn", actual == c != predicted))}


def macro_f1_of_counts(counts) -> float:
    """Macro-F1 from a (samples x MACRO_F1_KEYS) array of one-vs-rest counts: the unweighted mean of the per-class
    F1 over the classes present in the truth or the predictions."""
    tp, fp, fn = np.asarray(counts, dtype=float).reshape(len(counts), len(DIAGNOSES), 3).sum(axis=0).T
    present = (tp + fp + fn) > 0
    if not present.any():
        return float("nan")
    return float(np.mean(2 * tp[present] / (2 * tp[present] + fp[present] + fn[present])))


def macro_f1(predicted: Sequence[str], truth: Sequence[str]) -> float:
    """Macro-F1 of the predicted diagnoses against the true ones."""
    return macro_f1_of_counts([[c[k] for k in MACRO_F1_KEYS] for c in map(one_vs_rest, predicted, truth)])


@register_task
class TumorDxTask(Task):
    name = "tumor-dx"
    version = "1"
    title = "Brain tumour diagnosis"
    description = ("Diagnose a brain tumour MR (T1, T1c, T2, FLAIR) as glioblastoma, low-grade glioma, metastases or "
                   "meningioma, with the key findings (enhancement, necrosis, oedema, location, count, side).")
    roles, brain_mask_role = ROLES, BRAIN_MASK_ROLE
    truth_fields = (
        TruthField("diagnosis", "text", "the lesion class", required=True, choices=DIAGNOSES),
        TruthField("findings", "object", "enhancement (ring|solid|homogeneous|none), location (intra-axial|extra-axial), "
                   "lesion_count, hemisphere (left|right|both), lobe, necrosis, oedema (marked|mild|minimal), mass_effect, "
                   "max_diameter_mm"),
        TruthField("molecular", "object", "molecular markers where the collection has them (e.g. IDH1, MGMT)"),
        TruthField("tumour_volume_ml", "number", "whole tumour volume"),
    )
    phantoms = PHANTOMS
    modes = ("single", "agent")
    default_mode = "single"
    baseline = "scripted:tumor-dx"
    answer_schema = ANSWER_SCHEMA
    accuracy_metrics = (
        Metric("correct", "diagnosis equals the ground truth (mean = accuracy)", True, "binary"),
        Metric("diagnosis", "the predicted diagnosis (categorical: Cohen's kappa original vs defaced)", True, "categorical"),
        Metric("findings_match", "share of the key findings equal to the truth's (lesion count as single/multiple)", True, "continuous"),
        Metric("macro_f1", "macro-F1 of the diagnosis over the classes (set-level)", True, "set"),
    )
    fidelity_metrics = (
        Metric("diagnosis_agree", "original and defaced diagnoses are the same", True, "binary"),
        Metric("findings_agree", "share of the key findings equal between the original and the defaced answer", True, "continuous"),
        *(Metric(f"{key}_agree", f"original and defaced answers agree on {key.replace('_', ' ')}"
                 + (" (single vs multiple)" if key == "lesion_count" else ""), True, "binary") for key in KEY_FINDINGS),
    )

    def headline(self, truth) -> str:
        return f"diagnosis {truth['diagnosis']}"

    def build_input(self, case, volumes: Mapping[str, Any], mode: str) -> ModelInput:
        context = dict(roles=ROLES, role_names=ROLE_NAMES, diagnoses=DIAGNOSES, values=FINDING_VALUES, n_slices=volumes["flair"].shape[2])
        if mode == "agent":
            toolbox = Toolbox({r: volumes[r] for r in ROLES}, submit=Tool.from_function(submit_diagnosis, name="submit", submits=True))
            return ModelInput(prompt_messages("tumor-dx/agent_system.j2", "tumor-dx/agent_user.j2", **context), toolbox)
        if mode != "single":
            raise ValueError(f"tumor-dx has no mode {mode!r}")
        montage = brain_montage(volumes["flair"])
        images, keys = render_views(volumes, [(r, montage.spec(), f"{r} axial montage") for r in SINGLE_ROLES])
        messages = prompt_messages(None, "tumor-dx/single.j2", images, **{**context, "roles": SINGLE_ROLES}, montage=montage)
        return ModelInput(messages, None, keys)

    def parse(self, answer: Any):
        if isinstance(answer, dict):
            answer = json.dumps(answer)
        if isinstance(answer, str):
            low = answer
            for word, canonical in _SYNONYMS.items():
                low = low.replace(f'"{word}"', f'"{canonical}"').replace(f'"{word.upper()}"', f'"{canonical}"')
            answer = low
        res = parse_answer(answer if answer is None or isinstance(answer, (str, bytes)) else str(answer), ANSWER_SCHEMA, fallbacks=FALLBACKS)
        if res.ok:
            value = dict(res.value)
            value["findings"] = normalise_findings(value.get("findings"))
            res = type(res)(True, value, None, res.method)
        return res

    def score(self, answer: dict, truth: dict) -> dict:
        predicted, actual = answer["diagnosis"], truth["diagnosis"]
        return {"correct": float(predicted == actual), "diagnosis": predicted,
                "findings_match": findings_match(answer.get("findings") or {}, truth.get("findings") or {}),
                **one_vs_rest(predicted, actual)}

    def set_statistic(self, metric: str):
        if metric != "macro_f1":
            return super().set_statistic(metric)
        return MACRO_F1_KEYS, macro_f1_of_counts

    def compare(self, original: dict, defaced: dict) -> dict:
        fo, fd = original.get("findings") or {}, defaced.get("findings") or {}
        per_finding = {f"{key}_agree": float(_finding_equal(key, fo[key], fd[key])) if key in fo and key in fd else None
                       for key in KEY_FINDINGS}
        return {"diagnosis_agree": float(original["diagnosis"] == defaced["diagnosis"]),
                "findings_agree": findings_match(fo, fd), **per_finding}

    def agreement(self, pairs: Sequence[tuple[dict, dict]]) -> dict:
        """Cohen's kappa of the diagnosis over the pairs (nominal, the cohort's label set), and per key finding the
        share of pairs that agree."""
        if not pairs:
            return {}
        k = cohen_kappa([o["diagnosis"] for o, _ in pairs], [d["diagnosis"] for _, d in pairs], labels=list(DIAGNOSES))
        per_finding = {}
        for key in KEY_FINDINGS:
            both = [(o["findings"][key], d["findings"][key]) for o, d in pairs
                    if key in (o.get("findings") or {}) and key in (d.get("findings") or {})]
            if both:
                per_finding[key] = float(np.mean([_finding_equal(key, a, b) for a, b in both]))
        return {"diagnosis_kappa": k.to_dict(), "finding_agreement": per_finding, "n": len(pairs)}


def submit_diagnosis(diagnosis: Literal["glioblastoma", "low-grade glioma", "metastases", "meningioma"],
                     enhancement: Literal["ring", "solid", "homogeneous", "none"],
                     necrosis: bool,
                     oedema: Literal["marked", "mild", "minimal"],
                     location: Literal["intra-axial", "extra-axial"],
                     lesion_count: int,
                     hemisphere: Literal["left", "right", "both"],
                     rationale: str) -> dict:
    """Submit the diagnosis and the key findings. This ends the task; call it once, when you are sure.

    Args:
        diagnosis: One of glioblastoma, low-grade glioma, metastases, meningioma.
        enhancement: Enhancement pattern of the lesion(s) on T1 post-contrast.
        necrosis: Whether there is central necrosis.
        oedema: Surrounding FLAIR/T2 oedema.
        location: Intra-axial (in the brain) or extra-axial (outside it, e.g. dural-based).
        lesion_count: Number of lesions.
        hemisphere: Side of the patient the lesion(s) are in.
        rationale: Two or three sentences on why.
    """
    return {"diagnosis": diagnosis, "findings": {"enhancement": enhancement, "necrosis": necrosis, "oedema": oedema,
            "location": location, "lesion_count": lesion_count, "hemisphere": hemisphere}, "rationale": rationale}




# --- scripted baseline: a rule-based reader of the lesion it segments in the images it is shown -------------------

def read_lesion(f: Findings) -> dict:
    """Diagnosis and key findings from the segmented lesion(s), by textbook rules:
    no enhancement + T2/FLAIR-bright -> low-grade glioma; several enhancing lesions -> metastases; one enhancing
    lesion on the inner skull surface with a broad base and no necrotic ring -> meningioma; one ring-enhancing necrotic lesion with
    marked oedema -> glioblastoma; a single small solid or ring lesion with less oedema -> metastases."""
    comps = f.components
    if not comps:
        count = max(1, f.abnormal_components)
        findings = {"enhancement": "none", "necrosis": False, "oedema": "minimal", "location": "intra-axial",
                    "lesion_count": count, "hemisphere": f.side or "left"}
        why = "T2/FLAIR-bright lesion without enhancement or necrosis, little oedema"
        return {"diagnosis": "low-grade glioma", "findings": findings, "rationale": why}
    main = comps[0]
    ring = main["hole_fraction"] >= 0.08
    # extra-axial: abuts the dark skull over part of its border, lies in the outer third of the head (a deep lesion
    # next to a dark ventricle is not on the skull) and is not a necrotic ring (the glioblastoma pattern)
    extra = len(comps) == 1 and main["skull_contact"] >= 0.1 and main["min_depth"] < 0.3 and main["hole_fraction"] < 0.2
    oedema = "marked" if f.oedema_ratio >= 1.0 else "mild" if f.oedema_ratio >= 0.3 else "minimal"
    if extra:
        dx, why = "meningioma", "single extra-axial mass with a broad base on the inner skull surface, enhancing homogeneously"
        enhancement = "ring" if ring else "homogeneous"
    elif len(comps) > 1:
        dx, why = "metastases", f"{len(comps)} separate enhancing lesions with surrounding oedema"
        enhancement = "ring" if any(c["hole_fraction"] >= 0.08 for c in comps) else "solid"
    elif ring and oedema == "marked" and main["hole_fraction"] >= 0.2:
        dx, why = "glioblastoma", "single intra-axial ring-enhancing mass with central necrosis and marked oedema"
        enhancement = "ring"
    else:
        dx, why = "metastases", "single intra-axial enhancing lesion without the necrotic ring of a glioblastoma"
        enhancement = "ring" if ring else "solid"
    findings = {"enhancement": enhancement, "necrosis": bool(ring), "oedema": oedema,
                "location": "extra-axial" if extra else "intra-axial", "lesion_count": len(comps), "hemisphere": f.side or "left"}
    return {"diagnosis": dx, "findings": findings, "rationale": why}


@register_scripted("tumor-dx", code=(__name__, "tasks.tumor.analysis"))
def _baseline(spec):
    """Single mode: segment the lesion on the montages it is shown and apply read_lesion. Agent mode: a coarse
    montage of each contrast over the whole axial range, a finer one over the abnormal range, then submit."""

    def policy(messages, tools):
        names = {t.name for t in tools}
        if "submit" not in names:
            user = next(m for m in messages if m.role == "user")
            layout = read_tile_layout(text_of(user))
            if layout is None or len(user.images) != len(SINGLE_ROLES):
                return "I cannot read the montage layout from the prompt."  # recorded as unparsable
            indices, rows, cols = layout
            images = {r: image_array(p) for r, p in zip(SINGLE_ROLES, user.images)}
            return json.dumps(read_lesion(analyse(stack_from_images(images, len(indices), rows, cols))))
        return _agent_step(messages)

    return policy


def _agent_step(messages):
    step = step_number(messages)
    if step == 0:
        return call("volume_info", step, volume="flair")
    n = axial_count(messages)
    montages = tool_montages(messages)
    if step == 1:
        stride = max(1, -(-n // 16))
        return [call("view_montage", step, i, plane="axial", start=0, stop=n - 1, step=stride, volume=r) for i, r in enumerate(SINGLE_ROLES)]
    if step == 2:
        coarse = {role: img for role, img, *_ in montages[:4]}
        idx, rows, cols = montages[0][2:]
        f = analyse(stack_from_images(coarse, len(idx), rows, cols))
        hit = np.nonzero((f.abnormal_area > 0) | (f.enhancing_area > 0))[0]
        stride = idx[1] - idx[0] if len(idx) > 1 else 1
        lo, hi = (idx[hit[0]], idx[hit[-1]]) if hit.size else (idx[0], idx[-1])
        lo, hi = max(0, lo - stride), min(n - 1, hi + stride)
        fine = max(1, -(-(hi - lo + 1) // 16))
        return [call("view_montage", step, i, plane="axial", start=lo, stop=hi, step=fine, volume=r) for i, r in enumerate(SINGLE_ROLES)]
    fine = {role: img for role, img, *_ in montages[4:8]}
    if len(fine) < len(SINGLE_ROLES):
        return "The montages did not come back; I cannot read the lesion."  # no answer: the sample fails honestly
    idx, rows, cols = montages[4][2:]
    answer = read_lesion(analyse(stack_from_images(fine, len(idx), rows, cols)))
    return call("submit", step, diagnosis=answer["diagnosis"], rationale=answer["rationale"], **answer["findings"])
