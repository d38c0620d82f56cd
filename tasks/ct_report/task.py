"""ct-report: write the FINDINGS and IMPRESSION of an emergency non-contrast head CT.

Input (role "ct", Hounsfield units): in single mode two montages of the same 16 axial slices (brain window 40/80
and bone window 600/2800) from the skull base region to the high convexity, at fixed fractions of the scan's
axial range - so the original and every defaced volume of a case show exactly the same slices; in agent mode the
model browses the volume with the tools (views, windows, measurements) and submits the two sections.

Answer: {"findings": str, "impression": str} (JSON, fenced or embedded JSON, a plain-text report with FINDINGS: /
IMPRESSION: headings, or the agent's submit tool).

Metrics against the reference report (harness.scoring.text / findings):
- findings_f1 (all labels) and findings_f1_intracranial / _skull / _extracranial: finding-level F1 of the
  negation-aware head-CT labeler, per group - extracranial findings (sinuses, orbits, scalp) lie where defacers
  cut, so that group is where defacing should show;
- rougeL (ROUGE-L F1) and bertscore (BERTScore F1; model and layer in the task identity, so runs with another
  model never share a leaderboard).
Fidelity (per pair): the same metrics between the defaced report (candidate) and the original report (reference).
Agreement (per model x defacer): per label, how often the two reports make the same call, and Cohen's kappa.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any, Mapping, Sequence

from harness.models.scripted import register_scripted, step_number, call
from harness.models.types import Message
from harness.core.parsing import parse_answer, validate, ParseResult
from harness.core.prompts import PROMPTS_DIR, render_prompt
from harness.imaging.render import RenderSpec, Slices
from harness.scoring.findings import LABELER_VERSION, lexicon_hash
from harness.scoring.text import DEFAULT_BERTSCORE_MODEL_ID
from harness.agent.tools import Tool, Toolbox
from tasks import register_task
from tasks.base import Metric, ModelInput, Task, TruthField
from tasks.common import image_array, prompt_messages, render_views, shown_images, split_tiles, text_of
from tasks.ct_report.phantom import PHANTOMS
from tasks.ct_report.vocabulary import FINDING_KEYS

PROMPTS = "ct-report"
# 16 axial slices at these fractions of the scan's axial range: maxillary sinuses and orbits to the high convexity
SLICE_FRACTIONS = tuple(round(0.16 + i * (0.90 - 0.16) / 15, 4) for i in range(16))
GRID = (4, 4)
TILE_PX = 256
AGENT_IMAGE_PX = 1024  # agent images: 1024 px views, 256 px montage tiles (4 columns)
BERTSCORE_LAYERS = 6
GROUPS = ("intracranial", "skull", "extracranial")

ANSWER_SCHEMA = {
    "type": "object",
    "properties": {
        "findings": {"type": "string", "minLength": 1, "description": "the FINDINGS section"},
        "impression": {"type": "string", "minLength": 1, "description": "the IMPRESSION section"},
    },
    "required": ["findings", "impression"],
}
# a plain-text report: a FINDINGS heading, then an IMPRESSION heading (any case, markdown allowed around them);
# a heading ends with a colon or a line break, so "impression" inside a sentence is not a heading
def _heading(name: str) -> str:
    return r"(?:^|\n)[#>*\s]*" + name + r"\s*\**\s*(?::|\n)\**\s*"


FALLBACKS = {
    "findings": re.compile(_heading("FINDINGS") + r"(.+?)\s*(?=" + _heading("IMPRESSION") + r"|\Z)", re.I | re.S),
    "impression": re.compile(_heading("IMPRESSION") + r"(.+?)\s*\Z", re.I | re.S),
}


def _metric_set(prefix_description: str) -> tuple[Metric, ...]:
    return (
        Metric("findings_f1", f"{prefix_description}: finding-level F1 over all head-CT labels (negation-aware labeler)", True),
        Metric("findings_f1_intracranial", f"{prefix_description}: finding-level F1, intracranial labels (haemorrhage, shift, hydrocephalus, infarct)", True, group="intracranial"),
        Metric("findings_f1_skull", f"{prefix_description}: finding-level F1, skull fracture", True, group="skull"),
        Metric("findings_f1_extracranial", f"{prefix_description}: finding-level F1, extracranial labels (sinuses, orbits, scalp, facial fracture) - where defacers cut", True, group="extracranial"),
        Metric("rougeL", f"{prefix_description}: ROUGE-L F1 of the report text", True),
        Metric("bertscore", f"{prefix_description}: BERTScore F1 ({DEFAULT_BERTSCORE_MODEL_ID}, layer {BERTSCORE_LAYERS}, no rescaling)", True),
    )


def report_text(answer: Mapping[str, Any]) -> str:
    """The text scored for an answer: findings, then impression."""
    return f"{str(answer.get('findings', '')).strip()}\n{str(answer.get('impression', '')).strip()}".strip()


def reference_text(truth: Mapping[str, Any]) -> str:
    """The reference report without its technique line, to match what the model is asked to write."""
    findings, impression = truth.get("report_findings"), truth.get("report_impression")
    if isinstance(findings, str) and isinstance(impression, str) and (findings.strip() or impression.strip()):
        return f"{findings.strip()}\n{impression.strip()}".strip()
    text = str(truth.get("report", ""))
    text = re.sub(r"(?im)^\s*TECHNIQUE:.*$", "", text)
    return re.sub(r"(?im)^\s*(FINDINGS|IMPRESSION)\s*:\s*", "", text).strip()


# --- text metrics (cached on disk by content; missing values computed in one batch) --------------------------------

def text_scores_many(pairs: Sequence[tuple[str, str]]) -> list[dict[str, float | None]]:
    """All six metrics of each (candidate, reference) report pair; BERTScore and ROUGE-L batched and cached."""
    from harness.scoring.cache import cached_text_scores
    from harness.scoring.findings import compare_findings

    candidates, references = [c for c, _ in pairs], [r for _, r in pairs]
    rouge = cached_text_scores("rougeL", candidates, references) if pairs else []
    bert = cached_text_scores("bertscore", candidates, references) if pairs else []
    out = []
    for (candidate, reference), r, b in zip(pairs, rouge, bert):
        groups = compare_findings(candidate, reference).groups
        scores = {"findings_f1": groups["all"].f1, **{f"findings_f1_{g}": groups[g].f1 for g in GROUPS},
                  "rougeL": r, "bertscore": b}
        out.append({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in scores.items()})
    return out


def text_scores(candidate: str, reference: str) -> dict[str, float | None]:
    """All six metrics of a candidate report against a reference report."""
    return text_scores_many([(candidate, reference)])[0]


def _prompts_hash() -> str:
    h = hashlib.sha256()
    for path in sorted((PROMPTS_DIR / PROMPTS).glob("*.j2")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def single_views() -> list[tuple[str, RenderSpec, str]]:
    slices = Slices("fraction", SLICE_FRACTIONS)
    return [
        ("ct", RenderSpec(plane="axial", slices=slices, window="brain", size=TILE_PX, montage=GRID, labels=True), "brain window 40/80"),
        ("ct", RenderSpec(plane="axial", slices=slices, window="bone", size=TILE_PX, montage=GRID, labels=True), "bone window 600/2800"),
    ]


def submit_report(findings: str, impression: str) -> dict:
    """Submit the report. This ends the task; call it once, when the report is complete.

    Args:
        findings: The FINDINGS section: scalp and skull, extra-axial spaces, brain parenchyma, ventricles, midline, posterior fossa, sinuses, mastoids and orbits, with pertinent negatives.
        impression: The IMPRESSION section: the main findings, most urgent first, or that there is no acute abnormality.
    """
    return {"findings": findings, "impression": impression}


@register_task
class CtReportTask(Task):
    name = "ct-report"
    version = "1"
    title = "ED head CT report"
    description = ("Write the FINDINGS and IMPRESSION of an emergency non-contrast head CT (brain and bone windows); "
                   "scored by finding-level F1 (intracranial, skull and extracranial findings apart), ROUGE-L and BERTScore.")
    roles = ("ct",)  # a DICOM series folder or a NIfTI file (a case may also carry "ct_nifti", the same scan as NIfTI)
    truth_fields = (
        TruthField("report", "text", "the reference report (FINDINGS / IMPRESSION)", required=True),
        TruthField("report_findings", "text", "its FINDINGS section"),
        TruthField("report_impression", "text", "its IMPRESSION section"),
        TruthField("findings", "object", "finding -> true/false over " + ", ".join(FINDING_KEYS)
                   + "; a flat table may give one true/false column per finding instead"),
        TruthField("intracranial", "list", "[{type, side, max_thickness_mm | volume_ml | ...}]"),
        TruthField("extracranial", "list", "the same for sinus disease, orbital findings, scalp haematoma"),
        TruthField("midline_shift_mm", "number", "midline shift"),
        TruthField("normal", "boolean", "no finding at all"),
    )
    phantoms = PHANTOMS
    modes = ("single", "agent")
    default_mode = "single"
    baseline = "scripted:ct-report"
    answer_schema = ANSWER_SCHEMA
    accuracy_metrics = _metric_set("vs the reference report")
    fidelity_metrics = _metric_set("defaced vs original report")

    def identity(self) -> dict:
        return {"task": self.name, "version": self.version, "prompts": _prompts_hash(),
                "render": [spec.key for _, spec, _ in single_views()],
                "bertscore": {"model": DEFAULT_BERTSCORE_MODEL_ID, "num_layers": BERTSCORE_LAYERS, "rescaled": False},
                "findings_labeler": (f"harness.scoring.findings v{LABELER_VERSION} (uncertain = positive; "
                                     f"lexicon {lexicon_hash()})")}

    def truth_from_columns(self, columns) -> dict:
        """Also one true/false column per finding label (iph, sdh, ..., scalp_haematoma), as tables of reports have."""
        truth = super().truth_from_columns(columns)
        flag = TruthField("finding", "boolean", "")
        findings = {}
        for key in FINDING_KEYS:
            raw = columns.get(key)
            if raw is None or str(raw).strip() == "":
                continue
            value = flag.from_column(raw)
            if not isinstance(value, bool):
                raise ValueError(f"finding {key!r} must be true/false, got {raw!r}")
            findings[key] = value
        if findings:
            truth.setdefault("findings", findings)
        return truth

    def check_truth(self, truth) -> tuple[dict, list[str]]:
        truth, problems = super().check_truth(truth)
        findings = truth.get("findings")
        if findings is not None and not any(p.startswith("missing ground truth") for p in problems):
            if not isinstance(findings, dict):
                problems.append("findings must be an object of finding -> true/false")
            else:
                unknown = sorted(set(findings) - set(FINDING_KEYS))
                if unknown:
                    problems.append(f"unknown finding keys {unknown}; known: {', '.join(FINDING_KEYS)}")
        return truth, problems

    def headline(self, truth) -> str:
        impression = truth.get("report_impression") or truth["report"].split("IMPRESSION:")[-1]
        return " ".join(impression.split())[:70]

    def build_input(self, case, volumes: Mapping[str, Any], mode: str) -> ModelInput:
        volume = volumes["ct"]
        if volume.modality != "CT":
            from harness.core.errors import HarnessError

            raise HarnessError(f"case {case.id}: ct-report needs a CT volume in Hounsfield units, got {volume.modality}")
        if mode == "single":
            parts, keys = render_views(volumes, single_views())
            tile_w, tile_h = parts[0].width // GRID[1], parts[0].height // GRID[0]
            ni, nj, _ = volume.shape
            si, sj, _ = volume.spacing
            mm_per_px = max(ni * si / tile_w, nj * sj / tile_h)
            messages = prompt_messages(f"{PROMPTS}/system.j2", f"{PROMPTS}/single.j2", parts, rows=GRID[0], cols=GRID[1],
                                       n_slices=len(SLICE_FRACTIONS), tile_w=tile_w, tile_h=tile_h,
                                       mm_per_px=round(mm_per_px, 3))
            return ModelInput(messages, None, keys)
        if mode == "agent":
            toolbox = Toolbox(volumes, image_size=AGENT_IMAGE_PX, submit=Tool.from_function(submit_report, name="submit", submits=True))
            messages = [Message.system(render_prompt(f"{PROMPTS}/agent_system.j2")),
                        Message.user(render_prompt(f"{PROMPTS}/agent_user.j2", case_volume="ct"))]
            return ModelInput(messages, toolbox, [])
        raise ValueError(f"ct-report has no mode {mode!r}")

    def parse(self, answer: Any) -> ParseResult:
        if isinstance(answer, Mapping):  # the agent's submit tool
            value, error = validate(dict(answer), ANSWER_SCHEMA)
            return ParseResult(True, value, None, "submit") if error is None else ParseResult(False, None, error, "unparsable")
        return parse_answer(answer, ANSWER_SCHEMA, fallbacks=FALLBACKS)

    def score(self, answer: dict, truth: dict) -> dict[str, float | None]:
        return text_scores(report_text(answer), reference_text(truth))

    def compare(self, original: dict, defaced: dict) -> dict[str, float | None]:
        return text_scores(report_text(defaced), report_text(original))

    def compare_many(self, pairs: Sequence[tuple[dict, dict]]) -> list[dict[str, float | None]]:
        return text_scores_many([(report_text(d), report_text(o)) for o, d in pairs])

    def agreement(self, pairs: Sequence[tuple[dict, dict]]) -> dict[str, Any]:
        """Per label: how often the original and defaced reports make the same call (positive = present or hedged),
        and Cohen's kappa where both calls vary; per group: share of pairs with identical calls on every label."""
        from harness.scoring.findings import PRESENT, UNCERTAIN, finding_labels, label_report
        from harness.scoring.stats import cohen_kappa

        labels = finding_labels()
        calls = [(label_report(report_text(o)).states, label_report(report_text(d)).states) for o, d in pairs]
        positive = lambda s: s in (PRESENT, UNCERTAIN)  # noqa: E731
        per_label = {}
        for label, group in labels.items():
            a = [positive(o[label]) for o, _ in calls]
            b = [positive(d[label]) for _, d in calls]
            if not any(a) and not any(b):
                continue  # never called: nothing to agree on
            k = cohen_kappa([str(x) for x in a], [str(x) for x in b])
            per_label[label] = {"group": group, "agreement": sum(x == y for x, y in zip(a, b)) / len(a),
                                "original_positive": sum(a), "defaced_positive": sum(b),
                                "kappa": k.kappa if k.kappa is not None and math.isfinite(k.kappa) else None}
        same = {}
        for g in GROUPS:
            names = [lab for lab, grp in labels.items() if grp == g]
            same[g] = sum(all(positive(o[n]) == positive(d[n]) for n in names) for o, d in calls) / len(calls) if calls else None
        return {"identical_calls": same, "labels": per_label, "n_pairs": len(calls)}


# --- the scripted baseline ----------------------------------------------------------------------------------------

def _write_report(facts: dict) -> dict:
    text = render_prompt(f"{PROMPTS}/baseline_report.j2", **facts)
    findings, _, impression = text.partition("IMPRESSION:")
    findings = re.sub(r"^\s*FINDINGS:\s*", "", findings).strip()
    findings = "\n".join(line for line in findings.splitlines() if line.strip())
    impression = "\n".join(line for line in impression.strip().splitlines() if line.strip())
    return {"findings": findings, "impression": impression}


def read_report(brain_png, bone_png, rows: int, cols: int, mm_per_px: float) -> dict:
    """The baseline's report from a brain-window and a bone-window montage of the same slices."""
    from tasks.ct_report import detect as ct_detect

    brain = split_tiles(image_array(brain_png), rows, cols)
    bone = split_tiles(image_array(bone_png), rows, cols)
    n = len(brain)
    tiles = [ct_detect.analyse_tile(b, k, mm_per_px, i, i / max(n - 1, 1)) for i, (b, k) in enumerate(zip(brain, bone))]
    return _write_report(ct_detect.case_facts(tiles))


_NUM = r"(\d+(?:\.\d+)?)"


def _single_policy(messages, tools):
    user = next(m for m in messages if m.role == "user")
    text = text_of(user)
    grid = re.search(r"(\d+)\s*rows?\s*(?:x|by|and)\s*(\d+)\s*columns?", text, re.I)
    mm = re.search(_NUM + r"\s*mm per pixel", text, re.I)
    images = shown_images([user])
    if not grid or not mm or len(images) < 2:
        return json.dumps({"findings": "The images could not be read.", "impression": "Non-diagnostic."})
    report = read_report(images[0], images[1], int(grid.group(1)), int(grid.group(2)), float(mm.group(1)))
    return json.dumps(report)


def _agent_policy(messages, tools):
    """volume_info -> brain-window montage -> bone-window montage of the same slices -> submit."""
    step = step_number(messages)
    tool_texts = [text_of(m) for m in messages if m.role == "tool"]
    if step == 0:
        return call("volume_info", 0)
    info = tool_texts[0] if tool_texts else ""
    axial = re.search(r"axial:\s*(\d+)\s*slices", info)
    n = int(axial.group(1)) if axial else 1
    start, stop = round(SLICE_FRACTIONS[0] * (n - 1)), round(SLICE_FRACTIONS[-1] * (n - 1))
    stride = max(1, math.ceil((stop - start + 1) / len(SLICE_FRACTIONS)))
    if step in (1, 2):
        window = "brain" if step == 1 else "bone"
        return call("view_montage", step, plane="axial", start=start, stop=stop, step=stride, window=window)
    images = shown_images(messages)
    count = len(range(start, stop + 1, stride))
    cols = math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    voxels = re.search(r"voxels:\s*(\d+)\s*x\s*(\d+)\s*x\s*(\d+)", info)
    spacing = re.search(r"spacing:\s*" + _NUM + r"\s*x\s*" + _NUM + r"\s*x\s*" + _NUM, info)
    if len(images) < 2 or not voxels or not spacing:
        return call("submit", step, findings="The images could not be read.", impression="Non-diagnostic.")
    brain, bone = images[-2], images[-1]
    tile_w, tile_h = brain.width / cols, brain.height / rows
    mm_per_px = max(int(voxels.group(1)) * float(spacing.group(1)) / tile_w, int(voxels.group(2)) * float(spacing.group(2)) / tile_h)
    report = read_report(brain, bone, rows, cols, mm_per_px)
    return call("submit", step, **report)


@register_scripted("ct-report", code=(__name__, "tasks.ct_report.detect"),
                   files=(PROMPTS_DIR / PROMPTS / "baseline_report.j2",))
def _scripted_ct_report(spec):
    """Single mode answers with JSON text; agent mode (tools offered) looks at both windows, then submits."""

    def policy(messages, tools):
        return _agent_policy(messages, tools) if tools else _single_policy(messages, tools)

    return policy
