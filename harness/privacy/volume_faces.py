"""The attack on one volume: render its face in several views, find and embed a face in each; cached by content.

An original and every defaced copy of it are rendered in the ORIGINAL's pose (one template fit per case, which the
defacers did anyway): the camera is the same whatever a defacer did to the face, and a face a defacer removed
cannot move the camera somewhere it finds a face. Originals get every view (the frontal gallery view and the
probe views of the positive control); defaced volumes the probe views. The gallery view is enrolled (any HOG
candidate is a face); a probe view's face is detected only if it convinces the detectors (face_models.HOG_SURE),
and an unsure candidate is still embedded and matched.

Cache (local only: embeddings are biometric templates, never copied to a run folder or a leaderboard):
    <cache>/face-poses/<key>.json    the original's pose, or why it shows no face
    <cache>/face-attack/<key>.json   per view: detector, score, 128-D embedding (or no face in view, with why)
keyed by the original's content hash, the defacer's identity, the render recipe and the attack's identity, so the
runner answers a finished (case, defacer) from the file's remembered hash without reading any volume.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from defacers.registration import REG_VERSION
from defacers.template import pydeface_template
from harness.core.files import atomic_write_text
from harness.core.hashing import content_key
from harness.core.volume import Volume
from harness.imaging.face_render import FACE_RENDER_VERSION, GALLERY_VIEW, PROBE_VIEWS, VIEWS, FacePose, render_faces
from harness.privacy.face_models import Finding, attack_identity, face_models
from harness.privacy.pose import NoFaceInView, face_pose

# 2: findings are computed in the pose as cached (rounded), also when the pose was fitted just before; layout 1
# rendered a first run in the unrounded pose, so its entries depended on whether the pose was cached (up to 0.03 in
# embedding distance on the pydeface head).
LAYOUT = 2
POSE_LAYOUT = 1
ORIGINAL = "original"
PROBE_NAMES = frozenset(v.name for v in PROBE_VIEWS)


@dataclass(frozen=True)
class VolumeFaces:
    """The attack's findings on one volume: per view name a Finding, or the reason no face was in view."""

    findings: dict[str, Finding]
    no_face: str | None = None
    seconds: float = 0.0
    from_cache: bool = False

    @property
    def embeddings(self) -> list[tuple[float, ...]]:
        return [f.embedding for name, f in sorted(self.findings.items()) if f.embedding is not None]

    @property
    def probes(self) -> list[Finding]:
        """The findings of the probe views (every view but the gallery's), in view-name order."""
        return [f for name, f in sorted(self.findings.items()) if name in PROBE_NAMES]

    def as_dict(self) -> dict:
        return {"no_face": self.no_face, "seconds": round(self.seconds, 3),
                "views": {name: f.as_dict() for name, f in sorted(self.findings.items())}}

    @classmethod
    def from_dict(cls, d: dict) -> "VolumeFaces":
        views = d.get("views")
        if not isinstance(views, dict):
            raise ValueError("no views")
        no_face = d.get("no_face")
        return cls({str(k): Finding.from_dict(v) for k, v in views.items()},
                   str(no_face) if no_face is not None else None, float(d.get("seconds", 0.0)), True)


def _pose_key(original_hash: str) -> str:
    return content_key(kind="face-pose", layout=POSE_LAYOUT, volume=original_hash, registration=REG_VERSION,
                       template=pydeface_template().key)


def pose_cached(original: Volume, cache_dir) -> FacePose:
    """face_pose(original), remembered under cache_dir; raises NoFaceInView (also remembered). A fresh fit is returned
    as it is stored (rounded), so what is rendered in it never depends on whether the pose was cached."""
    path = Path(cache_dir) / "face-poses" / f"{_pose_key(original.content_hash)}.json"
    try:
        doc = json.loads(path.read_text())
        if doc.get("no_face"):
            raise NoFaceInView(str(doc["no_face"]))
        return _pose_from(doc)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        pose = face_pose(original)
    except NoFaceInView as exc:
        atomic_write_text(path, json.dumps({"no_face": str(exc)}))
        raise
    doc = {"pose": pose.as_dict()}
    atomic_write_text(path, json.dumps(doc))
    return _pose_from(doc)


def _pose_from(doc: dict) -> FacePose:
    return FacePose(*(tuple(float(v) for v in doc["pose"][k]) for k in ("anchor", "right", "anterior", "superior")))


def attack_key(original_hash: str, defacer_identity: dict) -> str:
    views = VIEWS if defacer_identity.get("name") == ORIGINAL else PROBE_VIEWS
    return content_key(kind="face-attack", layout=LAYOUT, volume=original_hash, defacer=defacer_identity,
                       render=FACE_RENDER_VERSION, views=[v.name for v in views], attack=attack_identity())


def _path(original_hash: str, defacer_identity: dict, cache_dir) -> Path:
    return Path(cache_dir) / "face-attack" / f"{attack_key(original_hash, defacer_identity)}.json"


def cached_faces(original_hash: str, defacer_identity: dict, cache_dir) -> VolumeFaces | None:
    try:
        return VolumeFaces.from_dict(json.loads(_path(original_hash, defacer_identity, cache_dir).read_text()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # missing or damaged: computed again and overwritten


def attack_volume(original: Volume, probe: Volume, defacer_identity: dict, cache_dir) -> VolumeFaces:
    """The findings on `probe` (the original itself, or a defaced copy of it, on its grid), cached by content."""
    hit = cached_faces(original.content_hash, defacer_identity, cache_dir)
    if hit is not None:
        return hit
    start = time.perf_counter()
    try:
        pose = pose_cached(original, cache_dir)
    except NoFaceInView as exc:
        faces = VolumeFaces({}, str(exc))
    else:
        if probe.shape != original.shape:
            raise NoFaceInView(f"no face in view: the defaced volume's grid {probe.shape} differs from the "
                               f"original's {original.shape}, so the original's pose does not apply")
        views = VIEWS if defacer_identity.get("name") == ORIGINAL else PROBE_VIEWS
        models = face_models()
        findings = {r.view.name: models.find(r.image, enrol=r.view == GALLERY_VIEW)
                    for r in render_faces(probe, pose, views)}
        faces = VolumeFaces(findings, None, time.perf_counter() - start)
    atomic_write_text(_path(original.content_hash, defacer_identity, cache_dir), json.dumps(faces.as_dict()))
    return faces
