"""Re-identification over a cohort: rank every probe's person among the gallery of original faces.

Identity is the case (two volumes of one case, a T1 and a FLAIR, are one person). Gallery: the frontal render of
each original volume whose face was detected. Probes: each defaced volume's probe views; the positive control is
the originals' own probe views (other yaws, other light). A probe's distance to a person is the smallest distance
between any of its detected views and any of that person's gallery faces; its rank is one plus the number of other
people strictly closer. Per condition:
- n: probes with a face in view (a volume whose original shows no face - no head, a skull-stripped brain, a field
  of view that ends above the face - is listed under no_face with the reason, never counted as re-identified or
  as private; so is a volume the defacer refused);
- detected: share of the n probes with a face the detectors are sure of in any view (face_models.HOG_SURE);
- rank1 / rank5: share of the probes whose own person is in the gallery (n_ranked) that rank it first / in the
  top five, over every face candidate of its views, sure or not (an attacker tries them all); a probe with no
  candidate is not identified; bootstrap 95 % CIs over those probes;
- same_person: share of n_ranked probes within dlib's 0.6 of their own person's gallery face;
- chance_rank1: 1 / number of people in the gallery (what a blind guess scores).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from harness.imaging.face_render import GALLERY_VIEW
from harness.privacy.face_models import SAME_PERSON_DISTANCE, attack_identity
from harness.scoring.stats.bootstrap import bootstrap_ci

if TYPE_CHECKING:  # the statistics are also read by the leaderboard, which needs no renderer or registration
    from harness.privacy.volume_faces import VolumeFaces

RANKS = (1, 5)


@dataclass(frozen=True)
class Subject:
    """One volume of the cohort: its person (the case id) and a label saying which volume it is."""

    person: str
    label: str  # "case/role"


def probe_embeddings(faces: "VolumeFaces") -> np.ndarray:
    rows = [f.embedding for f in faces.probes if f.embedding is not None]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 128)


class Gallery:
    def __init__(self, originals: dict[Subject, "VolumeFaces"]):
        people, rows = [], []
        for subject, faces in originals.items():
            found = faces.findings.get(GALLERY_VIEW.name)
            if faces.no_face is None and found is not None and found.embedding is not None:
                people.append(subject.person)
                rows.append(found.embedding)
        self.people = sorted(set(people))
        self._owner = np.array([self.people.index(p) for p in people], dtype=int)
        self._faces = np.asarray(rows, dtype=np.float64).reshape(-1, 128)

    def distances(self, embeddings: np.ndarray) -> np.ndarray:
        """Per gallery person, the smallest distance from any of the embeddings to any of their faces (inf: none)."""
        out = np.full(len(self.people), np.inf)
        if len(embeddings) and len(self._faces):
            d = np.linalg.norm(embeddings[:, None, :] - self._faces[None, :, :], axis=-1).min(axis=0)
            np.minimum.at(out, self._owner, d)
        return out

    def rank(self, person: str, embeddings: np.ndarray) -> tuple[int | None, float]:
        """(rank of `person` among the gallery's people, distance to them); rank None when no face was found."""
        d = self.distances(embeddings)
        own = d[self.people.index(person)]
        if not np.isfinite(own):
            return None, float("inf")
        return 1 + int(np.sum(d < own)), float(own)


def _rate(hits: list[bool]) -> dict:
    """A share with its bootstrap 95 % CI over probes (None when there are none)."""
    if not hits:
        return {"value": None, "ci": [None, None]}
    res = bootstrap_ci(np.asarray(hits, dtype=float), np.mean, seed=0)
    ci = [None if not np.isfinite(v) else round(float(v), 4) for v in (res.low, res.high)]
    return {"value": round(float(res.estimate), 4), "ci": ci}


def probe_outcomes(gallery: Gallery, probes: dict[Subject, "VolumeFaces | str"]) -> list[dict]:
    """One record per probe (what a run folder keeps: no embedding, no image): its label and person, why it had no
    face in view (a refusal or a no-face original), whether a face was found, its person's rank and distance."""
    out = []
    for subject, faces in probes.items():
        rec = {"label": subject.label, "person": subject.person, "no_face": None, "detected": False,
               "in_gallery": subject.person in gallery.people, "rank": None, "distance": None,
               "gallery_people": len(gallery.people)}
        reason = faces if isinstance(faces, str) else faces.no_face
        if reason:
            rec["no_face"] = reason
        else:
            embeddings = probe_embeddings(faces)
            rec["detected"] = any(f.detected for f in faces.probes)
            if rec["in_gallery"]:
                rank, distance = gallery.rank(subject.person, embeddings)
                rec["rank"], rec["distance"] = rank, (None if rank is None else round(distance, 4))
        out.append(rec)
    return out


def summarize_outcomes(outcomes: list[dict]) -> dict:
    """The scores of one condition from its probe records (see the module doc)."""
    seen = [o for o in outcomes if not o.get("no_face")]
    ranked = [o for o in seen if o.get("in_gallery")]
    ranks = [o.get("rank") for o in ranked]
    out = {"n": len(seen), "detected": round(float(np.mean([bool(o.get("detected")) for o in seen])), 4) if seen else None,
           "n_ranked": len(ranked)}
    for k in RANKS:
        rate = _rate([r is not None and r <= k for r in ranks])
        out[f"rank{k}"], out[f"rank{k}_ci"] = rate["value"], rate["ci"]
    same = [o.get("distance") is not None and o["distance"] < SAME_PERSON_DISTANCE for o in ranked]
    out["same_person"] = round(float(np.mean(same)), 4) if same else None
    people = max((int(o.get("gallery_people") or 0) for o in outcomes), default=0)
    out["chance_rank1"] = round(1.0 / people, 4) if people else None
    out["no_face"] = dict(sorted((o["label"], o["no_face"]) for o in outcomes if o.get("no_face")))
    return out


def score_condition(gallery: Gallery, probes: dict[Subject, "VolumeFaces | str"]) -> dict:
    """Scores of one condition: probes map a subject to its findings, or to why it was not probed (a refusal)."""
    return summarize_outcomes(probe_outcomes(gallery, probes))


def condition_outcomes(originals: dict[Subject, "VolumeFaces"], defaced: dict[str, dict[Subject, "VolumeFaces | str"]]) -> dict[str, list[dict]]:
    """Probe records per condition, the originals' positive control under "original"."""
    gallery = Gallery(originals)
    # a volume whose original shows no face has no face in view under any defacer either
    unseen = {s: f.no_face for s, f in originals.items() if f.no_face}
    out = {"original": probe_outcomes(gallery, originals)}
    for name, probes in defaced.items():
        out[name] = probe_outcomes(gallery, {s: unseen.get(s, p) for s, p in probes.items()})
    return out


def reidentification_report(originals: dict[Subject, "VolumeFaces"], defaced: dict[str, dict[Subject, "VolumeFaces | str"]]) -> dict:
    """The whole attack as one JSON-ready object: originals (gallery detection, positive control) and per defacer."""
    outcomes = condition_outcomes(originals, defaced)
    control = summarize_outcomes(outcomes.pop("original"))
    shown = [f for s, f in originals.items() if f.no_face is None]
    gallery_found = [f.findings.get(GALLERY_VIEW.name) is not None and f.findings[GALLERY_VIEW.name].detected for f in shown]
    return {
        "attack": attack_identity(),
        "originals": {"n": len(shown), "detected": round(float(np.mean(gallery_found)), 4) if gallery_found else None,
                      "gallery_people": len(Gallery(originals).people),
                      "control_rank1": control["rank1"], "control_rank1_ci": control["rank1_ci"],
                      "control_same_person": control["same_person"], "no_face": control["no_face"]},
        "defacers": {name: summarize_outcomes(records) for name, records in outcomes.items()},
    }
