"""Defacers: `get(name, **params)` -> a Defacer whose `deface(volume)` returns a DefacedVolume.

Every defacer registers itself where it is defined (`@register_defacer`); other packages add theirs through the
`harness.defacers` entry-point group. Built in: original (identity), quickshear, deface, reface, deepdefacer (a
published network, run with its weights), and adapters for
installed tools (external:pydeface, external:mri_reface, external:afni_refacer, external:quickshear-cli,
external:cmd). `parse_defacer_spec("quickshear(buffer_mm=5)")` reads a spec as users type it;
`deface_cached(defacer, volume, cache_dir)` is the runner's entry point.
"""

from __future__ import annotations

from defacers.base import DefacedVolume, Defacer, DefacerError, DefacerOutput
from defacers.cache import deface_cached
from defacers.registry import ENTRY_POINT_GROUP, UnknownDefacerError, defacer_registry, get, names, register_defacer
from defacers.spec import parse_defacer_spec

__all__ = [
    "get",
    "names",
    "deface_cached",
    "parse_defacer_spec",
    "defacer_registry",
    "register_defacer",
    "ENTRY_POINT_GROUP",
    "Defacer",
    "DefacerOutput",
    "DefacedVolume",
    "DefacerError",
    "UnknownDefacerError",
]
