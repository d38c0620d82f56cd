"""Re-identification over a cohort: rank every probe's person among the gallery of original faces.

Identity is the case (two volumes of one case, a T1 and a FLAIR, are one person). Gallery: the frontal render of
each original volume whose face was detected. Probes: each defaced volume's probe views; the positive control is
the originals' own probe views (other yaws, other light). A probe's distance to a person is the smallest distance
between any of its detected views and any of that person's gallery faces; its rank is one plus the number of other
people strictly closer. Per condition:
- n: probes with a face in view (a volume whose original shows no face - no head, a skull-stripped brain, a field
  of view that ends above the face - is listed under no_face with the reason, never counted as re-identified or
  as private; so is a volume the defacer refused);
- detected: share of the n probes with a face found in any view;
- rank1 / rank5: share of the probes whose own person is in the gallery (n_ranked) that rank it first / in the
  top five; a probe with no face found is not identified; bootstrap 95 % CIs over those probes;
- same_person: share of n_ranked probes within dlib's 0.6 of their own person's gallery face;
- chance_rank1: 1 / number of people in the gallery (what a blind guess scores).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.imaging.face_render import GALLERY_VIEW, PROBE_VIEWS
from harness.privacy.face_models import SAME_PERSON_DISTANCE, attack_identity
from harness.privacy.volume_faces import VolumeFaces
from harness.scoring.stats.bootstrap import bootstrap_ci

RANKS = (1, 5)


@dataclass(frozen=True)
class Subject:
    """One volume of the cohort: its person (the case id) and a label saying which volume it is."""

    person: str
    label: str  # "case/role"


def _probe_embeddings(faces: VolumeFaces) -> np.ndarray:
    probe_names = {v.name for v in PROBE_VIEWS}
    rows = [f.embedding for name, f in sorted(faces.findings.items()) if name in probe_names and f.embedding is not None]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 128)


class Gallery:
    def __init__(self, originals: dict[Subject, VolumeFaces]):
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


def score_condition(gallery: Gallery, probes: dict[Subject, VolumeFaces | str]) -> dict:
    """Scores of one condition: probes map a subject to its findings, or to why it was not probed (a refusal)."""
    no_face = {s.label: p for s, p in probes.items() if isinstance(p, str)}
    no_face.update({s.label: p.no_face for s, p in probes.items() if not isinstance(p, str) and p.no_face})
    seen = {s: p for s, p in probes.items() if not isinstance(p, str) and not p.no_face}
    detected = [bool(len(_probe_embeddings(p))) for p in seen.values()]
    ranks, same = [], []
    for subject, faces in seen.items():
        if subject.person not in gallery.people:
            continue
        rank, distance = gallery.rank(subject.person, _probe_embeddings(faces))
        ranks.append(rank)
        same.append(distance < SAME_PERSON_DISTANCE)
    out = {"n": len(seen), "detected": round(float(np.mean(detected)), 4) if detected else None,
           "n_ranked": len(ranks)}
    for k in RANKS:
        rate = _rate([r is not None and r <= k for r in ranks])
        out[f"rank{k}"], out[f"rank{k}_ci"] = rate["value"], rate["ci"]
    out["same_person"] = round(float(np.mean(same)), 4) if same else None
    out["chance_rank1"] = round(1.0 / len(gallery.people), 4) if gallery.people else None
    out["no_face"] = dict(sorted(no_face.items()))
    return out


def reidentification_report(originals: dict[Subject, VolumeFaces], defaced: dict[str, dict[Subject, VolumeFaces | str]]) -> dict:
    """The whole attack as one JSON-ready object: originals (gallery detection, positive control) and per defacer."""
    gallery = Gallery(originals)
    # a volume whose original shows no face has no face in view under any defacer either
    unseen = {s: f.no_face for s, f in originals.items() if f.no_face}
    defaced = {name: {s: unseen.get(s, p) for s, p in probes.items()} for name, probes in defaced.items()}
    control = score_condition(gallery, originals)
    shown = [f for s, f in originals.items() if f.no_face is None]
    gallery_found = [f.findings.get(GALLERY_VIEW.name) is not None and f.findings[GALLERY_VIEW.name].detected for f in shown]
    return {
        "attack": attack_identity(),
        "originals": {"n": len(shown), "detected": round(float(np.mean(gallery_found)), 4) if gallery_found else None,
                      "gallery_people": len(gallery.people),
                      "control_rank1": control["rank1"], "control_rank1_ci": control["rank1_ci"],
                      "control_same_person": control["same_person"], "no_face": control["no_face"]},
        "defacers": {name: score_condition(gallery, probes) for name, probes in defaced.items()},
    }
