"""Masks and label maps as small JSON values, so that an answer carries its segmentation and a Dice can be computed
from two answers alone (an answer is all Task.compare() sees, and the leaderboard recomputes it from run folders).

Both forms store the volume shape, the bounding box of the labelled voxels (origin, size) and the box's voxels in C
order, zlib-compressed and base64-encoded: a mask as packed bits, a label map as little-endian uint16. Decoding
checks everything (answers are untrusted): a malformed value raises MaskFormatError.
"""

from __future__ import annotations

import base64
import zlib

import numpy as np

MASK_FORMAT = "bbox-packbits-zlib-base64/1"
LABELS_FORMAT = "bbox-uint16le-zlib-base64/1"
MAX_VOXELS = 2**31


class MaskFormatError(ValueError):
    pass


def _encode(array: np.ndarray, fmt: str, payload_of) -> dict:
    idx = np.argwhere(array)
    if idx.size == 0:
        origin, size, payload = [0, 0, 0], [0, 0, 0], b""
    else:
        lo, hi = idx.min(axis=0), idx.max(axis=0) + 1
        origin, size = lo.tolist(), (hi - lo).tolist()
        payload = zlib.compress(payload_of(array[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]), 9)
    return {"format": fmt, "shape": list(array.shape), "origin": origin, "size": size,
            "voxels": int(np.count_nonzero(array)), "data": base64.b64encode(payload).decode("ascii")}


def _decode(doc, fmt: str, dtype, bytes_for, values_of) -> np.ndarray:
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise MaskFormatError(f"not a {fmt} value")
    try:
        shape = tuple(int(v) for v in doc["shape"])
        origin = tuple(int(v) for v in doc["origin"])
        size = tuple(int(v) for v in doc["size"])
        if len(shape) != 3 or len(origin) != 3 or len(size) != 3 or min(shape) < 1 or min(origin) < 0 or min(size) < 0:
            raise MaskFormatError("shape, origin and size must be three non-negative integers")
        if any(o + s > n for o, s, n in zip(origin, size, shape)) or int(np.prod(shape)) > MAX_VOXELS:
            raise MaskFormatError("the box does not fit the shape")
        out = np.zeros(shape, dtype=dtype)
        count = int(np.prod(size))
        if count:
            expected = bytes_for(count)
            raw = zlib.decompress(base64.b64decode(doc["data"], validate=True), bufsize=expected + 1)
            if len(raw) != expected:  # a short payload would be padded with zeros
                raise MaskFormatError("the data does not fill the box")
            out[origin[0]:origin[0] + size[0], origin[1]:origin[1] + size[1],
                origin[2]:origin[2] + size[2]] = values_of(raw, count).reshape(size)
        return out
    except (KeyError, TypeError, ValueError, zlib.error) as exc:
        if isinstance(exc, MaskFormatError):
            raise
        raise MaskFormatError(f"malformed {fmt} value: {exc}") from None


def encode_mask(mask: np.ndarray) -> dict:
    """A boolean mask as JSON (a few kB for a ventricle mask)."""
    return _encode(np.asarray(mask, dtype=bool), MASK_FORMAT, lambda crop: np.packbits(crop.ravel()).tobytes())


def decode_mask(doc) -> np.ndarray:
    return _decode(doc, MASK_FORMAT, bool, lambda n: (n + 7) // 8,
                   lambda raw, n: np.unpackbits(np.frombuffer(raw, dtype=np.uint8), count=n).astype(bool))


def encode_labels(labels: np.ndarray) -> dict:
    """An integer label map (labels 0..65535, 0 = background) as JSON."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() > np.iinfo(np.uint16).max):
        raise ValueError("label values must lie in 0..65535")
    return _encode(labels, LABELS_FORMAT, lambda crop: crop.astype("<u2").tobytes())


def decode_labels(doc) -> np.ndarray:
    return _decode(doc, LABELS_FORMAT, np.int32, lambda n: 2 * n,
                   lambda raw, n: np.frombuffer(raw, dtype="<u2").astype(np.int32))


def mask_dice(a: dict, b: dict) -> float | None:
    """Dice of two encoded masks on the same grid; None when either is missing or malformed or the grids differ."""
    try:
        ma, mb = decode_mask(a), decode_mask(b)
    except MaskFormatError:
        return None
    if ma.shape != mb.shape:
        return None
    total = int(ma.sum()) + int(mb.sum())
    return 2.0 * int((ma & mb).sum()) / total if total else 1.0


def abbreviated(value):
    """`value` (an answer) with each encoded mask or label map's payload replaced by a note of its size, for a person
    to read (a label map's payload runs to tens of kB); everything else as it is."""
    if isinstance(value, dict):
        if value.get("format") in (MASK_FORMAT, LABELS_FORMAT) and isinstance(value.get("data"), str):
            kind = "mask" if value["format"] == MASK_FORMAT else "label map"
            return {**value, "data": f"[{len(value['data']):,} characters of encoded {kind} voxels, not shown]"}
        return {k: abbreviated(v) for k, v in value.items()}
    if isinstance(value, list):
        return [abbreviated(v) for v in value]
    return value
