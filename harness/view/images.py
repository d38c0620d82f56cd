"""The images a model saw, made again from the volumes and checked against the sha256 the transcript stored.

A transcript image reference holds the image's sha256 and, since `harness view` exists, how it was made: the case
volume (role), the render spec and the image's index among the spec's images. The volume is the run's cohort case,
defaced through the defacer cache when the sample's condition is a defacer (nothing is defaced here: a volume
missing from the cache is reported, not computed). Renders come from the render cache when it holds them (content-
addressed by volume and spec, so a hit is the same bytes a render gives), which spares reading the voxels. A re-rendered image whose sha256 differs from the stored one is
shown with a mismatch, never in silence; an image that cannot be made again says why.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import HarnessError
from harness.core.sample import REFERENCE, Sample
from harness.imaging.render import RenderSpec, render
from harness.imaging.render_cache import use_render_cache

MATCH, MISMATCH, UNAVAILABLE = "match", "mismatch", "unavailable"


@dataclass(frozen=True)
class ShownImage:
    """One image reference of a transcript, in the order the model was shown them."""

    number: int  # 0-based position among the sample's images
    ref: dict  # {"image_sha256", "spec_key", "width", "height", "label", ["role", "render_spec", "image"]}

    @property
    def sha256(self) -> str:
        return str(self.ref.get("image_sha256", ""))

    @property
    def label(self) -> str:
        return str(self.ref.get("label") or f"image {self.number + 1}")


@dataclass(frozen=True)
class ImageCheck:
    status: str  # MATCH | MISMATCH | UNAVAILABLE
    png: bytes | None
    detail: str  # why unavailable, or the two hashes of a mismatch

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.png).hexdigest() if self.png else ""


def shown_images(sample: Sample) -> list[ShownImage]:
    refs = []
    for entry in sample.transcript:
        if not isinstance(entry, dict):
            continue
        refs.extend(entry_images(entry))
    return [ShownImage(i, ref) for i, ref in enumerate(refs)]


def entry_images(entry: dict) -> list[dict]:
    """The image references of one transcript entry: a message's content parts (message, nudge, forced_submit) or a
    tool result's images."""
    parts = entry.get("content") if isinstance(entry.get("content"), list) else entry.get("images")
    return [p for p in (parts if isinstance(parts, list) else []) if isinstance(p, dict) and "image_sha256" in p]


class _LRU(OrderedDict):
    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def put(self, key, value):
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)
        return value

    def hit(self, key):
        if key in self:
            self.move_to_end(key)
            return self[key]
        return None


class ImageSource:
    """Re-renders transcript images of the runs' samples; volumes and renders are kept in memory (LRU), and renders
    come from the on-disk render cache under `cache_dir` where it holds them (turned on here, as the runner does)."""

    def __init__(self, cache_dir: Path, volumes: int = 8, renders: int = 1024):
        self.cache_dir = Path(cache_dir)
        use_render_cache(self.cache_dir)
        self._cohorts: dict[tuple, object] = {}
        self._volumes = _LRU(volumes)
        self._renders = _LRU(renders)
        self._checks = _LRU(renders)
        self._lock = threading.RLock()  # the HTTP server asks from several threads

    def check(self, manifest: dict, sample: Sample, image: ShownImage) -> ImageCheck:
        key = (sample.sample_id, image.number, image.sha256)
        with self._lock:
            done = self._checks.hit(key)
            if done is None:
                done = self._checks.put(key, self._check(manifest, sample, image))
            return done

    def _check(self, manifest: dict, sample: Sample, image: ShownImage) -> ImageCheck:
        ref = image.ref
        if not {"role", "render_spec"} <= set(ref):
            return ImageCheck(UNAVAILABLE, None, "the transcript does not record how this image was made "
                                                 "(a run made before harness view recorded render specs)")
        try:
            spec = RenderSpec.from_dict(ref["render_spec"])
            index = ref.get("image", 0)
            if not isinstance(index, int) or isinstance(index, bool):
                raise HarnessError(f"the transcript's image number {index!r} is not a whole number")
            volume, note = self._volume(manifest, sample, str(ref["role"]))
            images = self._render(volume, spec)
            if not 0 <= index < len(images):
                raise HarnessError(f"the render spec makes {len(images)} image(s), the transcript names number {index}")
        except HarnessError as exc:
            return ImageCheck(UNAVAILABLE, None, str(exc))
        except Exception as exc:  # a transcript is untrusted input: whatever it holds, the page is still shown
            return ImageCheck(UNAVAILABLE, None, f"cannot re-render: {type(exc).__name__}: {exc}")
        png = images[index].png
        made = hashlib.sha256(png).hexdigest()
        if made == image.sha256:
            return ImageCheck(MATCH, png, note)
        return ImageCheck(MISMATCH, png, f"the model saw sha256 {image.sha256[:16]}..., this re-render is "
                                         f"{made[:16]}...{' (' + note + ')' if note else ''}")

    def _render(self, volume, spec: RenderSpec) -> list:
        """The one place the view turns (volume, spec) into PNG bytes."""
        key = (volume.content_hash, spec.key)
        images = self._renders.hit(key)
        return images if images is not None else self._renders.put(key, render(volume, spec))

    def _volume(self, manifest: dict, sample: Sample, role: str):
        """The volume the sample's condition showed, and a note when its content differs from what the run used."""
        key = (sample.task, sample.case_id, role, sample.condition, repr(sample.defacer))
        volume = self._volumes.hit(key)
        if volume is None:
            volume = self._volumes.put(key, self._load(manifest, sample, role))
        stored = (sample.cache_keys.get("volumes") or {}).get(role) if isinstance(sample.cache_keys, dict) else None
        if stored and volume.content_hash[:len(str(stored))] != stored:
            return volume, f"the {role} volume found here differs from the one the run used ({stored})"
        return volume, ""

    def _load(self, manifest: dict, sample: Sample, role: str):
        import defacers
        from harness.data import load_cohort
        from tasks import get_task

        config = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
        source, limit = config.get("cohort"), config.get("limit")
        ckey = (sample.task, source, limit)
        if ckey not in self._cohorts:
            self._cohorts[ckey] = load_cohort(source, sample.task, limit=limit if isinstance(limit, int) else None,
                                              cache_dir=self.cache_dir)
        case = self._cohorts[ckey].case(sample.case_id)
        volume = case.load(role)
        if sample.condition == REFERENCE:
            return volume
        identity = sample.defacer if isinstance(sample.defacer, dict) else {}
        params = identity.get("params") if isinstance(identity.get("params"), dict) else {}
        # a precomputed condition's defacer names this case's own file, which the stored identity leaves out
        defacer = defacers.get(str(identity.get("name", sample.condition)), **params).for_case(case.defaced, role)
        if str(defacer.identity.get("version")) != str(identity.get("version")):
            raise HarnessError(f"the run used {defacer.name} version {identity.get('version')}, "
                               f"this machine has {defacer.identity.get('version')}")
        # the QC's brain reference (the case's T1 for the tumour tasks) is part of the defacer cache key
        reference = get_task(sample.task).brain_reference(case, role, self.cache_dir)
        reference_hash = None if reference is None else reference.content_hash
        if defacers.cached_record(defacer, volume.content_hash, self.cache_dir, reference_hash) is None:  # never deface here
            raise HarnessError(f"the {sample.condition} volume of case {sample.case_id} ({role}) is not in the "
                               f"defacer cache {self.cache_dir}; `harness eval` on this machine puts it there")
        return defacers.defaced_volume(defacer, volume, self.cache_dir, reference)
