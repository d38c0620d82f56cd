"""The one model protocol, and the shared path every backend's requests take:
image limits -> tool protocol -> response cache -> backend -> text tool-call parsing -> cache."""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar, Protocol, Sequence, runtime_checkable

from harness.models.images import apply_image_limits
from harness.models.response_cache import ResponseCache, request_key
from harness.models.spec import ModelSpec
from harness.models.types import Message, Reply, Sampling, ToolSpec
from harness.models.wire import parse_text_tool_calls, with_tool_protocol


@runtime_checkable
class Model(Protocol):
    spec: ModelSpec

    async def chat(self, messages: Sequence[Message], tools: Sequence[ToolSpec] = (), sampling: Sampling = Sampling()) -> Reply: ...

    async def aclose(self) -> None: ...


class ChatModel:
    """Base class of the backends. Subclasses implement `_complete` (one request, their own retries) and declare,
    as class attributes, what the rest of harness needs to know about them; harness.models.backends registers them.
    """

    name: ClassVar[str] = ""  # the BACKEND of a BACKEND:MODEL spec
    description: ClassVar[str] = ""  # one line for `harness models`
    default_base_url: ClassVar[str | None] = None
    default_key_env: ClassVar[str | None] = None  # the environment variable that holds the API key, if any
    needs_base_url: ClassVar[bool] = False  # a spec without a base URL is an error
    takes_base_url: ClassVar[bool] = False  # --base-url applies (it talks to a server)
    servable: ClassVar[bool] = False  # --serve can start its server (the profile's serve_command)
    # What a spec's native_tools=None means. It enters response-cache keys (ModelSpec.uses_native_tools).
    native_tools_default: ClassVar[bool] = False

    @classmethod
    def default_revision(cls, model: str) -> str | None:
        """The revision a spec of this backend gets when none is configured (it enters sample ids and cache keys)."""
        return None

    def __init__(self, spec: ModelSpec, cache: ResponseCache | None = None):
        self.spec = spec
        self.cache = cache
        self.backend_calls = 0  # requests that reached the backend (cache hits excluded)

    @property
    def native_tools(self) -> bool:
        return self.spec.uses_native_tools

    async def chat(self, messages: Sequence[Message], tools: Sequence[ToolSpec] = (), sampling: Sampling = Sampling()) -> Reply:
        msgs, notes = apply_image_limits(list(messages), self.spec.max_images, self.spec.max_pixels)
        tools = list(tools)
        text_protocol = bool(tools) and not self.native_tools
        if text_protocol:
            msgs = with_tool_protocol(msgs, tools)
        key = None
        if self.cache is not None and self.cache.wants(sampling):
            key = request_key(self.spec, msgs, tools, sampling)
            hit = self.cache.get(key)
            if hit is not None:
                return hit
        self.backend_calls += 1
        reply = await self._complete(msgs, [] if text_protocol else tools, sampling)
        if text_protocol:
            reply = replace(reply, tool_calls=parse_text_tool_calls(reply.text))
        if notes:
            reply = replace(reply, image_adjustments=tuple(notes))
        if key is not None:
            self.cache.put(key, self.spec.model, reply)
        return reply

    async def _complete(self, messages: list[Message], tools: list[ToolSpec], sampling: Sampling) -> Reply:
        raise NotImplementedError

    async def aclose(self) -> None:
        pass

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()
