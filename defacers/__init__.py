"""Defacers: `get(name, **params)` -> a Defacer whose `deface(volume)` returns a DefacedVolume.

Names: original (identity), quickshear, deface, reface, and external:<tool> adapters (pydeface, mri_reface,
afni_refacer, quickshear-cli, cmd). `deface_cached(defacer, volume, cache_dir)` is the runner's entry point.
"""

from __future__ import annotations

from defacers.base import DefacedVolume, Defacer, DefacerError, DefacerOutput
from defacers.cache import deface_cached
from defacers.deface import Deface
from defacers.external import EXTERNAL_TOOLS, external_defacer
from defacers.original import Original
from defacers.quickshear import Quickshear
from defacers.reface import Reface

NATIVE = {cls.name: cls for cls in (Original, Quickshear, Deface, Reface)}


def names() -> list[str]:
    return list(NATIVE) + [f"external:{tool}" for tool in EXTERNAL_TOOLS]


def get(name: str, **params) -> Defacer:
    """The defacer called `name`, configured by `params` (they become part of its identity and cache key)."""
    if name in NATIVE:
        return NATIVE[name](**params)
    if name.startswith("external:"):
        return external_defacer(name.split(":", 1)[1], **params)
    raise DefacerError(f"unknown defacer {name!r}; known: {', '.join(names())}")


__all__ = ["get", "names", "deface_cached", "Defacer", "DefacerOutput", "DefacedVolume", "DefacerError"]
