"""ct-report phantoms: non-contrast head CT in Hounsfield units with drawn findings and an ED-style reference report.

Intracranial findings: intraparenchymal, subdural, epidural, subarachnoid and intraventricular haemorrhage, midline
shift (from the mass effect, measured), hydrocephalus, chronic infarct, skull fracture. Extracranial findings
(where defacers cut): sinus disease, periorbital soft-tissue swelling, scalp haematoma. Each finding is painted as
labels in output space, so its size and side are measured on exactly the voxels written. The report text comes
from Jinja templates in harness/data/templates/ (several phrasings per sentence, picked by the case's seed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from scipy import ndimage as ndi

from harness.phantoms import anatomy as A
from harness.phantoms.generator import PhantomGenerator
from tasks.nph_evans import phantom as nph
from harness.phantoms import head as P
from tasks.ct_report.vocabulary import EXTRACRANIAL_FINDINGS, FINDING_KEYS, INTRACRANIAL_FINDINGS

FINDING_NAMES = {
    "iph": "intraparenchymal haemorrhage",
    "sdh": "subdural haematoma",
    "edh": "epidural haematoma",
    "sah": "subarachnoid haemorrhage",
    "ivh": "intraventricular haemorrhage",
    "midline_shift": "midline shift",
    "hydrocephalus": "hydrocephalus",
    "chronic_infarct": "chronic infarct",
    "skull_fracture": "skull fracture",
    "sinus_disease": "paranasal sinus disease",
    "orbital": "periorbital soft-tissue swelling",
    "scalp_haematoma": "scalp haematoma",
}
MIDLINE_SHIFT_MM = 3.0  # shifts below this are not reported (and not labelled) as midline shift

FRACTURE, SAH_BLOOD = 19, 20
HU = np.zeros(32, np.float32)
HU[:] = 40.0
HU[A.BACKGROUND] = -1000
HU[A.SCALP] = 45
HU[A.BONE] = 1350
HU[A.CSF] = 6
HU[A.VENTRICLE] = HU[A.FRONTAL_HORN] = 5
HU[A.GM] = 37
HU[A.WM] = 29
HU[A.EYE] = 12
HU[A.AIR] = -920
HU[P.OEDEMA] = 20
HU[P.BLOOD] = 68
HU[SAH_BLOOD] = 55
HU[P.INFARCT] = 9
HU[P.SINUS_FLUID] = 22
HU[P.SWELLING] = 52
HU[FRACTURE] = 35

TEMPLATES = Path(__file__).parent


def _side(head: P.Head, x: float) -> str:
    com_x = ndi.center_of_mass(np.isin(head.labels, P.INTRACRANIAL_LABELS))[0]
    return "right" if x > com_x else "left"  # RAS: +x is towards the patient's right


def _intracranial_depth(head: P.Head):
    ic = np.isin(head.labels, P.INTRACRANIAL_LABELS)
    return ic, ndi.distance_transform_edt(ic, sampling=head.spacing)


def _convexity_point(head: P.Head, rng, side: int | None = None):
    """A point on the inner skull surface over the upper convexity (optionally on one side: +1 right, -1 left)."""
    ic, depth = _intracranial_depth(head)
    com = np.array(ndi.center_of_mass(ic))
    idx = np.argwhere(ic & (depth <= head.surface_mm()))
    up = idx[:, 2] > com[2] - 5 / head.spacing[2]
    lateral = np.abs(idx[:, 0] - com[0]) * head.spacing[0] > 25
    ok = up & lateral
    if side is not None:
        ok &= (idx[:, 0] > com[0]) if side > 0 else (idx[:, 0] < com[0])
    idx = idx[ok]
    return idx[rng.integers(len(idx))].astype(float), com


def _shift(head: P.Head, centre, strength_mm: float, sigma_mm: float) -> float:
    """Apply a mass effect and return the resulting left-right displacement of the midline (mm)."""
    ic = np.isin(head.labels, P.INTRACRANIAL_LABELS)
    com = np.array(ndi.center_of_mass(ic))
    vent = np.isin(head.labels, (A.VENTRICLE, A.FRONTAL_HORN))
    septum = np.array(ndi.center_of_mass(vent)) if vent.any() else com
    septum[0] = com[0]
    disp = P.radial_pull(head.labels.shape, centre, head.spacing, strength_mm, sigma_mm)
    s = tuple(int(round(v)) for v in np.clip(septum, 0, np.array(head.labels.shape) - 1))
    shift = abs(float(np.broadcast_to(disp[0], head.labels.shape)[s])) * head.spacing[0]
    P.pull_head(head, disp)
    return shift


def _sdh(head, rng, facts):
    side = int(rng.choice([-1, 1]))
    anchor, com = _convexity_point(head, rng, side)
    thickness = float(rng.uniform(5, 14))
    facts["shift"] = max(facts.get("shift", 0.0), _shift(head, anchor, thickness * 1.1, 50.0))
    ic, depth = _intracranial_depth(head)
    region = P.blob(head.labels.shape, anchor, head.spacing, (45, 60, 45), rng, roughness=0.1)
    crescent = ic & region & (depth <= thickness * (1 - 0.5 * _dist_frac(head, anchor, 60)))
    head.labels[crescent] = P.BLOOD
    return {"type": "sdh", "side": _side(head, anchor[0]), "max_thickness_mm": _thickness(head, crescent), "acuity": "acute"}


def _dist_frac(head, anchor, scale_mm):
    sp = np.asarray(head.spacing, np.float32)
    grids = [(np.arange(n, dtype=np.float32) - a) * s for n, a, s in zip(head.labels.shape, anchor, sp)]
    X, Y, Z = np.meshgrid(*grids, indexing="ij", sparse=True)
    return np.clip(np.sqrt(X**2 + Y**2 + Z**2) / scale_mm, 0, 1)


def _thickness(head, mask) -> float:
    """Maximal thickness of an extra-axial collection: the deepest collection voxel below the inner skull."""
    if not mask.any():
        return 0.0
    ic = np.isin(head.labels, P.INTRACRANIAL_LABELS)
    depth = ndi.distance_transform_edt(ic, sampling=head.spacing)
    return round(float(depth[mask].max()), 1)


def _edh(head, rng, facts):
    anchor, com = _convexity_point(head, rng)
    thickness = float(rng.uniform(7, 16))
    inward = (com - anchor) * np.array(head.spacing)
    inward /= np.linalg.norm(inward)
    facts["shift"] = max(facts.get("shift", 0.0), _shift(head, anchor + inward * 10 / np.array(head.spacing), thickness * 0.7, 28.0))
    ic, depth = _intracranial_depth(head)
    # a biconvex lens: voxels close to the inner skull, thickest at the anchor, thinning to nothing ~34 mm away
    lens = P.blob(head.labels.shape, anchor, head.spacing, (32, 32, 32), rng, roughness=0.05) & ic & (depth <= thickness * (1 - _dist_frac(head, anchor, 34) ** 2))
    head.labels[lens] = P.BLOOD
    facts["fracture_at"] = anchor
    return {"type": "edh", "side": _side(head, anchor[0]), "max_thickness_mm": _thickness(head, lens), "acuity": "acute"}


def _iph(head, rng, facts):
    ic, depth = _intracranial_depth(head)
    com = np.array(ndi.center_of_mass(ic))
    ok = np.isin(head.labels, (A.GM, A.WM)) & (depth > 20)
    zs = np.arange(head.labels.shape[2])[None, None, :]
    ok &= zs > com[2]
    idx = np.argwhere(ok)
    centre = idx[rng.integers(len(idx))].astype(float)
    r = float(rng.uniform(7, 20))
    if r > 11:
        facts["shift"] = max(facts.get("shift", 0.0), _shift(head, centre, r * 0.45, r * 1.8))
    clot = P.blob(head.labels.shape, centre, head.spacing, r * rng.uniform(0.8, 1.2, 3), rng, roughness=0.15)
    rim = ndi.binary_dilation(clot, iterations=max(1, int(round(3 / head.spacing[0])))) & ~clot
    brain = np.isin(head.labels, (A.GM, A.WM, A.CSF))
    head.labels[rim & brain] = P.OEDEMA
    head.labels[clot & (brain | (head.labels == P.OEDEMA))] = P.BLOOD
    vol = float((head.labels == P.BLOOD)[clot].sum() * head.voxel_mm() / 1000)
    side = _side(head, centre[0])
    return {"type": "iph", "side": side, "volume_ml": round(vol, 1), "location": _lobe(head, centre)}


def _lobe(head, centre) -> str:
    ic = np.isin(head.labels, P.INTRACRANIAL_LABELS)
    ext = np.argwhere(ic)
    lo, hi = ext.min(0), ext.max(0)
    fy = (centre[1] - lo[1]) / max(hi[1] - lo[1], 1)
    fz = (centre[2] - lo[2]) / max(hi[2] - lo[2], 1)
    fx = abs(centre[0] - (lo[0] + hi[0]) / 2) / max((hi[0] - lo[0]) / 2, 1)
    if fx < 0.3 and 0.35 < fy < 0.65:
        return "basal ganglia"
    if fy > 0.6:
        return "frontal lobe"
    if fy < 0.25:
        return "occipital lobe"
    return "temporal lobe" if fz < 0.45 else "parietal lobe"


def _sah(head, rng, facts):
    ic, depth = _intracranial_depth(head)
    com = np.array(ndi.center_of_mass(ic))
    side = int(rng.choice([-1, 1]))
    # around a Sylvian fissure / the basal cisterns: lateral-inferior of the centre
    centre = com + np.array([side * rng.uniform(20, 45) / head.spacing[0], rng.uniform(-5, 15) / head.spacing[1], rng.uniform(-15, 5) / head.spacing[2]])
    region = P.blob(head.labels.shape, centre, head.spacing, (40, 45, 35), rng, roughness=0.15)
    sulcal = (head.labels == A.CSF) & region & (depth > 1.0)
    head.labels[sulcal] = SAH_BLOOD
    return {"type": "sah", "side": _side(head, centre[0]), "distribution": "sylvian fissure and adjacent sulci"}


def _ivh(head, rng, facts):
    vent = np.isin(head.labels, (A.VENTRICLE, A.FRONTAL_HORN))
    idx = np.argwhere(vent)
    ymin, ymax = idx[:, 1].min(), idx[:, 1].max()
    cut = ymin + rng.uniform(0.25, 0.45) * (ymax - ymin)
    ys = np.arange(head.labels.shape[1])[None, :, None]
    blood = vent & (ys <= cut)  # dependent: layers in the occipital horns of a supine patient
    head.labels[blood] = P.BLOOD
    return {"type": "ivh", "side": "bilateral", "location": "occipital horns"}


def _hydrocephalus(head, rng, facts):
    nph.enlarge_ventricles(head, float(rng.uniform(0.33, 0.40)))
    er = nph.evans_ratio(head.labels == A.FRONTAL_HORN, np.isin(head.labels, P.INTRACRANIAL_LABELS), head.spacing)
    return {"type": "hydrocephalus", "evans_ratio": round(er["evans_ratio"], 3)}


def _infarct(head, rng, facts):
    anchor, com = _convexity_point(head, rng)
    inward = (com - anchor) * np.array(head.spacing)
    length = float(np.linalg.norm(inward))
    direction = inward / length
    sp = np.asarray(head.spacing, np.float32)
    grids = [(np.arange(n, dtype=np.float32) - a) * s for n, a, s in zip(head.labels.shape, anchor, sp)]
    X, Y, Z = np.meshgrid(*grids, indexing="ij", sparse=True)
    along = X * direction[0] + Y * direction[1] + Z * direction[2]
    r2 = X**2 + Y**2 + Z**2
    across = np.sqrt(np.maximum(r2 - along**2, 0))
    depth = float(rng.uniform(25, 40))
    half_angle = np.deg2rad(rng.uniform(14, 24))
    wedge = (along > -2) & (along < depth) & (across < (along + 6) * np.tan(half_angle))
    wedge &= np.isin(head.labels, (A.GM, A.WM, A.CSF))
    head.labels[wedge] = P.INFARCT
    return {"type": "chronic_infarct", "side": _side(head, anchor[0]), "location": _lobe(head, anchor + direction * 15 / sp)}


def _fracture(head, rng, facts):
    anchor = facts.get("fracture_at")
    if anchor is None:
        anchor, _ = _convexity_point(head, rng)
    sp = np.asarray(head.spacing, np.float32)
    normal = rng.standard_normal(3)
    normal /= np.linalg.norm(normal)
    grids = [(np.arange(n, dtype=np.float32) - a) * s for n, a, s in zip(head.labels.shape, anchor, sp)]
    X, Y, Z = np.meshgrid(*grids, indexing="ij", sparse=True)
    plane = np.abs(X * normal[0] + Y * normal[1] + Z * normal[2]) < max(1.2, float(sp.max()) * 0.6)
    near = (X**2 + Y**2 + Z**2) < float(rng.uniform(18, 30)) ** 2
    line = plane & near & (head.labels == A.BONE)
    facts["fracture_at"] = anchor
    head.labels[line] = FRACTURE
    return {"type": "skull_fracture", "side": _side(head, anchor[0]), "displaced": False}


def _sinus(head, rng, facts):
    air = head.labels == A.AIR
    idx = np.argwhere(air)
    com = idx.mean(0)
    side = int(rng.choice([-1, 1]))
    sel = (idx[:, 0] - com[0]) * side > 6 / head.spacing[0]
    idx = idx[sel]
    zmin, zmax = idx[:, 2].min(), idx[:, 2].max()
    level = zmin + rng.uniform(0.25, 0.6) * (zmax - zmin)
    xs = np.arange(head.labels.shape[0])[:, None, None]
    zs = np.arange(head.labels.shape[2])[None, None, :]
    fluid = air & ((xs - com[0]) * side > 6 / head.spacing[0]) & (zs <= level)
    head.labels[fluid] = P.SINUS_FLUID
    return {"type": "sinus_disease", "side": "right" if side > 0 else "left", "location": "maxillary sinus", "detail": "air-fluid level"}


def _orbital(head, rng, facts):
    eyes = head.labels == A.EYE
    lab, n = ndi.label(eyes)
    if n == 0:
        raise RuntimeError("no eyes in this head")
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    pick = int(rng.choice(np.argsort(sizes)[::-1][: min(2, n)]))
    c = np.array(ndi.center_of_mass(lab == pick))
    front = c + np.array([0, 14 / head.spacing[1], 0])
    swell = P.blob(head.labels.shape, front, head.spacing, (16, 9, 13), rng, roughness=0.1)
    swell &= np.isin(head.labels, (A.BACKGROUND, A.SCALP))
    head.labels[swell] = P.SWELLING
    return {"type": "orbital", "side": _side(head, c[0]), "detail": "preseptal soft-tissue swelling"}


def _scalp(head, rng, facts):
    anchor, com = _convexity_point(head, rng)
    if facts.get("fracture_at") is not None:  # a scalp haematoma sits over the fracture when there is one
        anchor = facts["fracture_at"]
    outward = (anchor - com) * np.array(head.spacing)
    outward /= np.linalg.norm(outward)
    centre = anchor + outward * 12 / np.array(head.spacing)
    r = float(rng.uniform(18, 30))
    swell = P.blob(head.labels.shape, centre, head.spacing, (r, r, r * 0.8), rng, roughness=0.1)
    swell &= np.isin(head.labels, (A.BACKGROUND, A.SCALP))
    head.labels[swell] = P.SWELLING
    return {"type": "scalp_haematoma", "side": _side(head, anchor[0]), "location": _lobe(head, anchor).split()[0] + " scalp"}


PAINTERS = {"sdh": _sdh, "edh": _edh, "iph": _iph, "sah": _sah, "ivh": _ivh, "hydrocephalus": _hydrocephalus,
            "chronic_infarct": _infarct, "skull_fracture": _fracture, "sinus_disease": _sinus, "orbital": _orbital,
            "scalp_haematoma": _scalp}
PRIMARY = ("normal", "iph", "sdh", "edh", "sah", "ivh", "hydrocephalus", "chronic_infarct")


def draw_findings(rng: np.random.Generator, primary: str | None = None) -> list[str]:
    """Which findings one case gets, in painting order (mass effects first, fractures after the haematoma)."""
    primary = primary or str(rng.choice(PRIMARY))
    keys = [] if primary == "normal" else [primary]
    if primary == "edh" or (primary in ("sdh", "normal") and rng.random() < 0.2):
        keys.append("skull_fracture")
    if primary == "iph" and rng.random() < 0.4:
        keys.append("ivh")
    for k in EXTRACRANIAL_FINDINGS:
        if rng.random() < 0.3:
            keys.append(k)
    if "skull_fracture" in keys and "scalp_haematoma" not in keys and rng.random() < 0.6:
        keys.append("scalp_haematoma")
    return keys


def synthesize_ct(head: P.Head, rng: np.random.Generator) -> np.ndarray:
    """HU image: label values with partial volume, the skin where the template has it (head.skin), fat in the scalp (from the template texture), bone density
    variation, quantum noise; integer HU clipped to -1024..3071 like a scanner."""
    lut = HU.copy()
    sigma = [0.8 / s for s in head.spacing]
    labels, tissue = P.skin(head)
    img = P.partial_volume(labels, lut, sigma)
    img = HU[A.BACKGROUND] + (img - HU[A.BACKGROUND]) * tissue
    scalp = head.labels == A.SCALP
    fat = np.clip((head.texture - 0.75) / 0.35, 0, 1)  # bright on T1 = fat
    img[scalp] -= 140 * fat[scalp]
    bone = head.labels == A.BONE
    density = P.smooth_field(rng, head.labels.shape, (6, 6, 6), 1.0)
    img[bone] += (350 * density[bone] - 150 * np.clip(0.5 - head.texture[bone], 0, 1))
    brain = np.isin(head.labels, (A.GM, A.WM))
    img[brain] += 4 * (head.texture[brain] - 0.7)
    noise = ndi.gaussian_filter(rng.standard_normal(img.shape, dtype=np.float32), 0.6) * float(rng.uniform(5, 9))
    img += noise
    return np.clip(np.round(img), -1024, 3071).astype(np.int16)


def make_case(atlas: A.Atlas, rng: np.random.Generator, *, primary: str | None = None, resolution_scale: float = 1.0) -> dict:
    # CT is acquired in thin axial slices or reconstructed thick: both occur.
    spacing = (0.9, 0.9, float(rng.choice([1.0, 2.5, 5.0]))) if rng.random() < 0.5 else None
    head = P.make_head(atlas, rng, spacing, resolution_scale=resolution_scale)
    keys = draw_findings(rng, primary)
    facts: dict = {}
    found = []
    for key in keys:
        found.append(PAINTERS[key](head, rng, facts))
    shift = round(float(facts.get("shift", 0.0)), 1)
    if shift >= MIDLINE_SHIFT_MM:
        toward = "left" if any(f.get("side") == "right" for f in found if f["type"] in ("sdh", "edh", "iph")) else "right"
        found.append({"type": "midline_shift", "shift_mm": shift, "direction": toward})
    image = synthesize_ct(head, rng)
    labels = {k: any(f["type"] == k for f in found) for k in FINDING_KEYS}
    truth = {
        "findings": {k: v for k, v in labels.items()},
        "intracranial": [f for f in found if f["type"] in INTRACRANIAL_FINDINGS],
        "extracranial": [f for f in found if f["type"] in EXTRACRANIAL_FINDINGS],
        "midline_shift_mm": shift,
        "normal": not any(labels.values()),
    }
    truth.update(reference_report(truth, rng))
    return {"head": head, "images": {"ct": image}, "masks": {}, "truth": truth, "facts": {}}


_env = None


def _environment() -> Environment:
    global _env
    if _env is None:
        _env = Environment(loader=FileSystemLoader(str(TEMPLATES)), undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False)
    return _env


def reference_report(truth: dict, rng: np.random.Generator) -> dict:
    """FINDINGS / IMPRESSION text for the drawn findings, with phrasing varied by the case's generator."""
    picks = [int(v) for v in rng.integers(0, 1000, 40)]
    context = {"f": {f["type"]: f for f in truth["intracranial"] + truth["extracranial"]}, "labels": truth["findings"],
               "pick": picks, "normal": truth["normal"], "names": FINDING_NAMES}
    text = _environment().get_template("reference_report.j2").render(**context)
    text = "\n".join(line.rstrip() for line in text.splitlines())
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    text = text.strip() + "\n"
    findings, _, impression = text.partition("IMPRESSION:")
    return {"report": text, "report_findings": findings.replace("FINDINGS:", "").strip(), "report_impression": impression.strip()}


class HeadCtPhantoms(PhantomGenerator):
    """Non-contrast head CTs (HU, DICOM series) with one primary finding per case, extracranial findings at random,
    and an ED-style reference report."""

    name = "ct-report"
    version = "1"
    seed_stream = 3
    default_n = 12
    tasks = ("ct-report",)
    classes = PRIMARY

    def make_case(self, atlas, rng, index, *, resolution_scale=1.0) -> dict:
        return make_case(atlas, rng, primary=self.class_of(index), resolution_scale=resolution_scale)

    def meta_for(self, index: int, made: dict) -> dict:
        return {"primary_finding": self.class_of(index)}


PHANTOMS = HeadCtPhantoms()
