"""What every statistic here shares: JSON-safe results, paired-array checks, NaN as \"nothing to estimate\"."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

import numpy as np

NAN = float("nan")


def json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (np.floating,)):
        return json_safe(float(obj))
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


class Result:
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: NaN/inf -> None, tuples -> lists, numpy scalars -> Python numbers."""
        return json_safe(asdict(self))  # type: ignore[arg-type]


def as_float_array(values: Iterable[float], name: str) -> np.ndarray:
    arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one value per case (1-D), got shape {arr.shape}")
    return arr


def paired_arrays(a: Iterable[float], b: Iterable[float]) -> tuple[np.ndarray, np.ndarray]:
    x, y = as_float_array(a, "original"), as_float_array(b, "defaced")
    if x.shape != y.shape:
        raise ValueError(f"paired inputs differ in length: {x.size} original vs {y.size} defaced cases")
    return x, y


def nonfinite_reason(*arrays: np.ndarray) -> str | None:
    for arr in arrays:
        if arr.size and not np.all(np.isfinite(arr)):
            return "input contains NaN or infinite values; drop failed/unparsable cases before pairing"
    return None
