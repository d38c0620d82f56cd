"""The contract of a phantom generator: how a task family makes the cases of its built-in sample cohort.

A generator lives with its task (tasks/<task>/phantom.py) and is declared on the Task class (`phantoms = ...`);
harness.data.sample_cohort writes and caches what it makes. Tasks that read the same phantoms (tumor-slice and
tumor-dx) share one generator: one set of files, one manifest row per task.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np


class PhantomGenerator(ABC):
    name: str  # case id prefix and cache folder name, e.g. "tumor" -> tumor-s0-003
    version: str  # bump whenever generated cases change, so cached cohorts are rebuilt
    seed_stream: int  # this generator's random stream; fixed forever, so case i never changes
    default_n: int  # cases of the built-in cohort
    tasks: tuple[str, ...]  # the tasks that read these phantoms: one manifest row per case for each
    classes: tuple[str, ...] = ()  # pathology classes cycled over case indices (heads alternate per full cycle)

    def rng(self, seed: int, index: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([seed, self.seed_stream, index]))

    def class_of(self, index: int) -> str | None:
        return self.classes[index % len(self.classes)] if self.classes else None

    def atlas_for(self, index: int, atlases: list):
        """Heads alternate per full cycle of the classes, so every class appears on every head."""
        return atlases[(index // max(1, len(self.classes))) % len(atlases)]

    @abstractmethod
    def make_case(self, atlas, rng: np.random.Generator, index: int, *, resolution_scale: float = 1.0) -> dict:
        """{"head": harness.phantoms.head.Head, "images": {role: array}, "masks": {name: bool array},
        "truth": {...} measured on the label maps, "facts": {...} extra case metadata}."""

    def truth_for(self, task: str, truth: dict) -> dict:
        """The part of a case's truth that `task`'s manifest row carries (default: all of it)."""
        return truth

    def meta_for(self, index: int, made: dict) -> dict[str, Any]:
        """Extra metadata of case `index` (e.g. its lesion class)."""
        return {}
