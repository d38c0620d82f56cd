"""The values every model backend speaks: messages with text and images, tool specs, sampling params, replies.

Images travel as PNG bytes (from harness.imaging.render). Each image is identified by its sha256, base64-encoded at most
once per process (not per request or retry), and appears in transcripts and cache keys by hash only.
"""

from __future__ import annotations

import base64
import hashlib
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from harness.core.errors import HarnessError
from harness.core.failures import FailureKind

Role = Literal["system", "user", "assistant", "tool"]


class ModelError(HarnessError):
    """A request that did not produce a usable reply, with the FailureKind it is recorded as; the message never holds
    keys. A reason given as a string must be a FailureKind's value (a typo fails here, not in a report later)."""

    def __init__(self, reason: FailureKind | str, detail: str, *, attempts: int = 1, status: int | None = None):
        reason = FailureKind(reason)
        self.reason = reason
        self.detail = detail
        self.attempts = attempts
        self.status = status
        super().__init__(f"{reason}: {detail}" + (f" (after {attempts} attempts)" if attempts > 1 else ""))


class ModelConfigError(HarnessError):
    """A model spec, profile or config file that cannot be used."""


_DATA_URLS: "OrderedDict[str, str]" = OrderedDict()
_DATA_URL_CACHE_SIZE = 512


@dataclass(frozen=True, eq=False)
class ImagePart:
    """One PNG image in a message. `spec_key` is the render spec that made it (None for other sources)."""

    png: bytes
    sha256: str
    width: int
    height: int
    spec_key: str | None = None
    label: str | None = None  # e.g. "axial slice 90" - for transcripts, never sent instead of the image
    # How to make the image again: {"role", "render_spec" (RenderSpec.to_dict()), "image" (its index among the spec's
    # images)}. Transcripts keep it so `harness view` can re-render what the model saw; cache keys do not need it.
    source: dict | None = None

    @classmethod
    def from_png(cls, png: bytes, *, spec_key: str | None = None, label: str | None = None) -> "ImagePart":
        from PIL import Image
        import io

        with Image.open(io.BytesIO(png)) as im:
            width, height = im.size
        return cls(png, hashlib.sha256(png).hexdigest(), width, height, spec_key, label)

    @classmethod
    def from_rendered(cls, image, label: str | None = None, *, role: str | None = None, spec=None,
                      index: int = 0) -> "ImagePart":
        """From a harness.imaging.render.RenderedImage; `role` (the case volume) and `spec` (the RenderSpec, of which
        this is image number `index`) let a transcript reader render it again."""
        source = None if role is None or spec is None else {"role": role, "render_spec": spec.to_dict(), "image": index}
        return cls(image.png, image.sha256, image.width, image.height, image.spec_key, label, source)

    @property
    def data_url(self) -> str:
        url = _DATA_URLS.get(self.sha256)
        if url is None:
            url = "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")
            _DATA_URLS[self.sha256] = url
            if len(_DATA_URLS) > _DATA_URL_CACHE_SIZE:
                _DATA_URLS.popitem(last=False)
        else:
            _DATA_URLS.move_to_end(self.sha256)
        return url

    def ref(self, label: bool = True) -> dict:
        """What transcripts (with the label) and cache keys (without: it is never sent) hold instead of the bytes."""
        d = {"image_sha256": self.sha256, "spec_key": self.spec_key, "width": self.width, "height": self.height}
        if label:
            d["label"] = self.label
            if self.source is not None:
                d.update(self.source)
        return d


Part = str | ImagePart


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict | None  # None when the model's arguments were not a JSON object
    raw_arguments: str = ""
    error: str | None = None  # why the arguments could not be read

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Message:
    role: Role
    content: tuple[Part, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()  # assistant messages
    tool_call_id: str | None = None  # tool messages
    name: str | None = None  # tool messages: the tool's name

    @classmethod
    def system(cls, text: str) -> "Message":
        return cls("system", (text,))

    @classmethod
    def user(cls, *parts: Part) -> "Message":
        return cls("user", tuple(parts))

    @classmethod
    def assistant(cls, text: str = "", tool_calls=()) -> "Message":
        return cls("assistant", (text,) if text else (), tuple(tool_calls))

    @classmethod
    def tool(cls, call_id: str, name: str, *parts: Part) -> "Message":
        return cls("tool", tuple(parts), tool_call_id=call_id, name=name)

    @property
    def text(self) -> str:
        return "".join(p for p in self.content if isinstance(p, str))

    @property
    def images(self) -> list[ImagePart]:
        return [p for p in self.content if isinstance(p, ImagePart)]

    def to_record(self, labels: bool = True) -> dict:
        """JSON-ready form with image hashes instead of bytes (transcripts; cache keys use labels=False)."""
        d: dict[str, Any] = {"role": self.role, "content": [p if isinstance(p, str) else p.ref(labels) for p in self.content]}
        if self.tool_calls:
            d["tool_calls"] = [c.to_dict() for c in self.tool_calls]
        if self.tool_call_id is not None:
            d["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            d["name"] = self.name
        return d


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict  # JSON schema of the arguments object

    def to_openai(self) -> dict:
        return {"type": "function", "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.0
    max_tokens: int = 1024
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()

    @property
    def deterministic(self) -> bool:
        return self.temperature == 0 or self.seed is not None

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens)


@dataclass(frozen=True)
class Reply:
    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = field(default_factory=Usage)
    latency_s: float = 0.0
    finish_reason: str | None = None
    raw_id: str | None = None
    refusal: str | None = None
    cached: bool = False
    attempts: int = 1
    image_adjustments: tuple[str, ...] = ()  # downscaling / dropping done to respect the model's image limits

    def to_record(self) -> dict:
        d = asdict(self)
        d["tool_calls"] = [c.to_dict() for c in self.tool_calls]
        d["usage"] = {"prompt_tokens": self.usage.prompt_tokens, "completion_tokens": self.usage.completion_tokens}
        d["image_adjustments"] = list(self.image_adjustments)
        return d

    @classmethod
    def from_record(cls, d: dict) -> "Reply":
        return cls(
            text=d["text"],
            tool_calls=tuple(ToolCall(**c) for c in d.get("tool_calls", [])),
            usage=Usage(**d.get("usage", {})),
            latency_s=d.get("latency_s", 0.0),
            finish_reason=d.get("finish_reason"),
            raw_id=d.get("raw_id"),
            refusal=d.get("refusal"),
            cached=d.get("cached", False),
            attempts=d.get("attempts", 1),
            image_adjustments=tuple(d.get("image_adjustments", ())),
        )
