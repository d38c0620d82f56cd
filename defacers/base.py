"""The Defacer contract: `deface(volume) -> DefacedVolume`, with an identity that goes into every cache key."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from harness.core.errors import HarnessError
from harness.core.volume import Volume


class DefacerError(HarnessError):
    """A defacer could not run or refused its input."""


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


class Defacer:
    """Base class: subclasses set `name` and `version` and implement `_deface`."""

    name: str = ""
    version: str = ""
    accepts: tuple[str, ...] | None = ()  # parameter names this defacer takes (None: any, e.g. external tools)

    def __init__(self, **params):
        unknown = sorted(set(params) - set(self.accepts)) if self.accepts is not None else []
        if unknown:
            takes = ", ".join(self.accepts) if self.accepts else "no parameters"
            raise DefacerError(f"defacer {self.name!r} does not take {', '.join(unknown)} (it takes {takes})")
        self.params = dict(params)

    @property
    def identity(self) -> dict:
        return {"name": self.name, "version": self.version, "params": dict(sorted(self.params.items()))}

    def deface(self, volume: Volume) -> DefacedVolume:
        start = time.perf_counter()
        result = self._deface(volume)
        result.timings.setdefault("total", time.perf_counter() - start)
        if result.volume.shape != volume.shape or not np.allclose(result.volume.affine, volume.affine):
            raise DefacerError(f"{self.name} changed the volume's geometry; this is a bug in the defacer")
        return result

    def _deface(self, volume: Volume) -> DefacedVolume:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in sorted(self.params.items()))
        return f"{type(self).__name__}({params})" if params else f"{type(self).__name__}()"


def air_value(volume: Volume) -> float:
    """What removed voxels become: -1000 HU (air) for CT, the volume's minimum (usually 0) for MR."""
    lo, hi = volume.intensity_range
    if volume.modality == "CT":
        return float(np.clip(-1000.0, lo, hi))
    return lo


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
