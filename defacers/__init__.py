"""Defacers: `get(name, **params)` -> a Defacer whose `deface(volume)` returns a DefacedVolume.

Every defacer registers itself where it is defined (`@register_defacer`); other packages add theirs through the
`harness.defacers` entry-point group. Built in: original (identity), quickshear, deface, reface, deepdefacer (a
published network, run with its weights), and adapters for
installed tools (external:pydeface, external:mri_reface, external:afni_refacer, external:quickshear-cli,
external:cmd), and precomputed:NAME (volumes defaced elsewhere, given by the cohort).
`parse_defacer_spec("quickshear(buffer_mm=5)")` reads a spec as users type it; `deface_cached(defacer, volume,
cache_dir)` is the runner's entry point (`defaced_volume` when only the volume is needed: it reads nothing when the
render cache already holds what a sample shows).
"""

from __future__ import annotations

from defacers.base import DefacedVolume, Defacer, DefacerError, DefacerInputError, DefacerOutput
from defacers.cache import cached_record, deface_cached, defaced_volume
from defacers.registry import ENTRY_POINT_GROUP, UnknownDefacerError, defacer_registry, get, names, register_defacer
from defacers.spec import parse_defacer_spec

__all__ = [
    "get",
    "names",
    "deface_cached",
    "cached_record",
    "defaced_volume",
    "parse_defacer_spec",
    "defacer_registry",
    "register_defacer",
    "ENTRY_POINT_GROUP",
    "Defacer",
    "DefacerOutput",
    "DefacedVolume",
    "DefacerError",
    "DefacerInputError",
    "UnknownDefacerError",
]
