"""One Sample: the outcome of one (task, case, condition, model, mode) work item, as stored in samples.jsonl.

A sample is read back from disk by later versions of harness, so `from_dict` checks types defensively and keeps
keys it does not know in `extra` (written back unchanged) instead of failing on files from newer versions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

REFERENCE = "original"  # the condition every defaced sample is paired with (the identity defacer)
STATUSES = ("ok", "unparsable", "failed")
# A sample with one of these statuses is finished: a model gave an answer (parsable or not). Only "failed"
# (timeout, refusal, unreadable volume, ...) may be retried, and only when the user asks.
DONE_STATUSES = frozenset({"ok", "unparsable"})


class SampleFormatError(ValueError):
    """A stored sample record does not have the expected shape; the message names the field."""


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Sample:
    sample_id: str
    task: str
    case_id: str
    condition: str  # defacer name; "original" for the reference condition
    model: str  # model spec string as the user gave it
    mode: str = "agent"  # "agent" | "single" | other modes tasks define
    status: str = "ok"  # "ok" | "unparsable" | "failed"
    defacer: dict = field(default_factory=dict)  # defacer identity (name, version, params)
    answer: Any = None  # parsed JSON answer, None when unparsable or failed
    error: dict | None = None  # {"kind": ..., "message": ...} or None
    scores: dict = field(default_factory=dict)  # metric -> number (None when a metric is undefined)
    timings: dict = field(default_factory=dict)  # stage -> seconds
    tokens: dict = field(default_factory=dict)  # {"prompt": n, "completion": n}
    transcript: list = field(default_factory=list)  # messages; images as {"sha256", "render_spec"}, never bytes
    cache_keys: dict = field(default_factory=dict)  # {"volume", "render", "request", ...}
    created_at: str = field(default_factory=utc_now)
    ran_on: dict = field(default_factory=dict)  # part ("render", "solve", "score") -> node, host, seconds: cluster jobs
    extra: dict = field(default_factory=dict)  # keys written by newer versions, kept as they are

    def __post_init__(self):
        if self.status not in STATUSES:
            raise SampleFormatError(f"status must be one of {', '.join(STATUSES)}, not {self.status!r}")
        if self.error is not None and not isinstance(self.error, dict):
            raise SampleFormatError("error must be a {kind, message} object or null")

    @property
    def done(self) -> bool:
        return self.status in DONE_STATUSES

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        if not self.ran_on:
            del out["ran_on"]  # written only by cluster runs: a local run's lines are as before
        out["scores"] = {str(k): _finite_or_none(v) for k, v in self.scores.items()}
        out["timings"] = {str(k): _finite_or_none(v) for k, v in self.timings.items()}
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out

    @classmethod
    def from_dict(cls, data: Any) -> "Sample":
        if not isinstance(data, dict):
            raise SampleFormatError(f"a sample must be a JSON object, not {type(data).__name__}")
        kwargs: dict = {}
        for name, expected in _FIELD_TYPES.items():
            if name not in data:
                if name in _REQUIRED:
                    raise SampleFormatError(f"missing field {name!r}")
                continue
            value = data[name]
            if expected is not None and value is not None and not isinstance(value, expected):
                raise SampleFormatError(f"field {name!r} must be {_type_name(expected)}, not {type(value).__name__}")
            if value is None and name in _NOT_NULL:
                raise SampleFormatError(f"field {name!r} must not be null")
            kwargs[name] = value
        kwargs["extra"] = {k: v for k, v in data.items() if k not in _FIELD_TYPES}
        return cls(**kwargs)


_FIELD_TYPES: dict[str, Any] = {
    "sample_id": str,
    "task": str,
    "case_id": str,
    "condition": str,
    "model": str,
    "mode": str,
    "status": str,
    "defacer": dict,
    "answer": None,
    "error": dict,
    "scores": dict,
    "timings": dict,
    "tokens": dict,
    "transcript": list,
    "cache_keys": dict,
    "ran_on": dict,
    "created_at": str,
}
_REQUIRED = {"sample_id", "task", "case_id", "condition", "model", "status"}
_NOT_NULL = _REQUIRED | {"mode", "defacer", "scores", "timings", "tokens", "transcript", "cache_keys", "created_at"}


def _type_name(t) -> str:
    return {str: "a string", dict: "an object", list: "a list"}.get(t, str(t))


def _finite_or_none(value):
    if value is None or isinstance(value, bool):
        return value
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN; an undefined metric is stored as null
    return value


def find_image_bytes(obj, path: str = "transcript") -> str | None:
    """Where `obj` holds image bytes (bytes or a data: URL), or None. Transcripts must reference images by hash."""
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return path
    if isinstance(obj, str):
        return path if obj.startswith("data:") and ";base64," in obj[:100] else None
    if isinstance(obj, dict):
        for key, value in obj.items():
            found = find_image_bytes(value, f"{path}.{key}")
            if found:
                return found
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            found = find_image_bytes(value, f"{path}[{i}]")
            if found:
                return found
    return None
