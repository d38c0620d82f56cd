"""The Defacer contract: `deface(volume) -> DefacedVolume`, with an identity that goes into every cache key.

A defacer implements `_deface(volume) -> DefacerOutput`: only what it alone knows (the new voxel values, the face
region it aimed at, its registration, its own timings and QC entries). `Defacer.deface` does the rest the same way
for every defacer, built-in or plug-in: clip and round the voxels, measure QC against the brain mask of the
ORIGINAL volume, time the whole call and check the geometry. (`original`, which changes nothing, writes its trivial
record itself.)

The brain mask of a case's co-registered contrasts comes from one of them: `deface(flair, brain_reference=t1)`
measures brain damage on the FLAIR with the T1's mask: on the 8 sample tumour cases the threshold masks of T2 and
FLAIR hold 1.6-3.7x the T1's voxels and, with those of T1c, counted up to 33,144 face voxels changed by deface or
reface as brain; with the T1's mask, 0 on 7 cases (the eighth: its T1 mask itself fails, see the README).
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import numpy as np

from defacers.qc import measure as measure_qc
from harness.core.errors import HarnessError
from harness.core.volume import Volume
from harness.imaging.brainmask import brain_mask

if TYPE_CHECKING:
    from defacers.registration import Registration


# A defacer's family (how it hides the face) and where it runs, as `harness defacers` and the README table show them.
FAMILIES = ("identity", "shear", "mask", "replace", "network", "precomputed", "any")
RUNS_WHERE = ("native", "external tool", "published weights", "precomputed")


class DefacerError(HarnessError):
    """A defacer could not run or refused its input."""


class DefacerInputError(DefacerError):
    """A file the defacer reads besides the volume (a precomputed defaced volume) is missing or unreadable."""


@dataclass(frozen=True, eq=False)
class DefacedVolume:
    """The defaced copy (same shape, affine and modality as the input), the voxels it altered, QC and timings."""

    volume: Volume
    changed: np.ndarray
    qc: dict
    timings: dict = field(default_factory=dict)
    from_cache: bool = False

    def __post_init__(self):
        changed = np.asarray(self.changed, dtype=bool)
        if changed.shape != self.volume.shape:
            raise ValueError(f"changed mask shape {changed.shape} differs from the volume's {self.volume.shape}")
        changed.setflags(write=False)
        object.__setattr__(self, "changed", changed)


@dataclass(eq=False)
class DefacerOutput:
    """What `_deface` returns: what only this defacer knows. The base class turns it into a DefacedVolume."""

    data: np.ndarray  # new voxel values on the input's grid (clipped to the input's range and rounded later)
    face: np.ndarray | None  # the face region it aimed at, for the face QC measures (None: no face measures)
    registration: Registration | None = None  # the template fit, summarised in the QC record
    timings: dict = field(default_factory=dict)  # its own stages, in seconds
    qc: dict = field(default_factory=dict)  # QC entries only this defacer can tell (reface: noise_std)
    # The brain mask of the ORIGINAL volume, when the defacer needed one anyway (quickshear places its plane with
    # it): saves computing it twice. Never a mask of the defaced volume: a face cut into the frontal lobe would
    # remove those voxels from that mask too and report no brain damage.
    original_brain: np.ndarray | None = None


class Defacer:
    """Base class: subclasses set `name` and `version` and implement `_deface`."""

    name: str = ""
    version: str = ""
    accepts: tuple[str, ...] | None = ()  # parameter names this defacer takes (None: any, e.g. external tools)
    # What `harness defacers` and the README table show (FAMILIES, RUNS_WHERE); "" when a plug-in does not say.
    family: str = ""
    modalities: tuple[str, ...] = ()  # "MR", "CT": what it is meant for
    runs: str = ""
    # What one run asks of a cluster node under `--executor ray` (Ray resource requests: num_cpus, num_gpus, memory
    # in bytes); a defacer that needs a GPU or much memory says so here, so it is placed on a node that has it.
    resources: dict = {"num_cpus": 1}

    def __init__(self, **params):
        unknown = sorted(set(params) - set(self.accepts)) if self.accepts is not None else []
        if unknown:
            takes = ", ".join(self.accepts) if self.accepts else "no parameters"
            raise DefacerError(f"defacer {self.name!r} does not take {', '.join(unknown)} (it takes {takes})")
        self.params = dict(params)

    @property
    def identity(self) -> dict:
        return {"name": self.name, "version": self.version, "params": dict(sorted(self.params.items()))}

    @classmethod
    def parameters(cls) -> dict[str, object] | None:
        """The parameters it takes and their defaults (inspect.Parameter.empty: none known); None: any."""
        if cls.accepts is None:
            return None
        signature = inspect.signature(cls.__init__).parameters
        return {name: signature[name].default if name in signature else inspect.Parameter.empty for name in cls.accepts}

    def case_params(self, defaced: Mapping[str, Mapping[str, Path]], role: str) -> dict:
        """Parameters that make this defacer specific to one case volume, from the case's volumes defaced elsewhere
        ({defacer name: {role: path}}). Only `precomputed:NAME` has any: the path of its file."""
        return {}

    def for_case(self, defaced: Mapping[str, Mapping[str, Path]], role: str) -> "Defacer":
        """This defacer as it applies to one case volume: itself, or (precomputed:NAME) the one that names the case's
        own file. Every stage that needs a case's defacer asks here."""
        own = self.case_params(defaced, role)
        if not own:
            return self
        from defacers.registry import get  # the registry imports this module

        return get(self.name, **{**self.params, **own})

    def deface(self, volume: Volume, brain_reference: Volume | None = None) -> DefacedVolume:
        """The defaced volume and its QC. `brain_reference`: a volume of the same case on the same grid whose brain
        mask measures the brain voxels changed (the case's T1 for its other contrasts); None: `volume`'s own."""
        start = time.perf_counter()
        output = self._deface(volume)
        if np.shape(output.data) != volume.shape:
            raise DefacerError(f"{self.name} changed the volume's geometry; this is a bug in the defacer")
        defaced, changed = finish(volume, output.data)  # on the input's grid: the affine cannot drift
        qc_start = time.perf_counter()
        qc = self._measure(volume, defaced, changed, output, brain_reference)
        timings = {**output.timings, "qc": time.perf_counter() - qc_start, "total": time.perf_counter() - start}
        return DefacedVolume(defaced, changed, qc, timings)

    def _deface(self, volume: Volume) -> DefacerOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def _measure(self, volume: Volume, defaced: Volume, changed: np.ndarray, output: DefacerOutput,
                 brain_reference: Volume | None) -> dict:
        if brain_reference is not None and on_same_grid(brain_reference, volume):
            brain, source = brain_mask(brain_reference), "reference"
        else:
            brain = output.original_brain if output.original_brain is not None else brain_mask(volume)
            # a reference on another grid is not resampled: the mask would move with any registration error
            source = "own" if brain_reference is None else "own (the reference is on another grid)"
        record = measure_qc(volume, defaced, changed, face=output.face, brain=brain, registration=output.registration)
        record["brain_mask_from"] = source
        record["defacer"] = self.identity
        record.update(output.qc)
        return record

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in sorted(self.params.items()))
        return f"{type(self).__name__}({params})" if params else f"{type(self).__name__}()"


def air_value(volume: Volume) -> float:
    """What removed voxels become: -1000 HU (air) for CT, the volume's minimum (usually 0) for MR."""
    lo, hi = volume.intensity_range
    if volume.modality == "CT":
        return float(np.clip(-1000.0, lo, hi))
    return lo


def on_same_grid(a: Volume, b: Volume) -> bool:
    """Same shape and the same voxel-to-world mapping (to 1e-3 mm, the precision NIfTI headers keep)."""
    return a.shape == b.shape and bool(np.allclose(a.affine, b.affine, atol=1e-3))


def is_integer_valued(volume: Volume) -> bool:
    return bool(np.array_equal(volume.data, np.round(volume.data)))


def finish(volume: Volume, new_data: np.ndarray) -> tuple[Volume, np.ndarray]:
    """Clip to the input's range, keep integer inputs integer (so the saved file round-trips), find changed voxels."""
    lo, hi = volume.intensity_range
    new_data = np.clip(new_data, lo, hi).astype(np.float32)
    if is_integer_valued(volume):
        new_data = np.round(new_data)
    changed = new_data != volume.data
    return volume.with_data(new_data), changed
