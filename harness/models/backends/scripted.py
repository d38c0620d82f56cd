"""`scripted:NAME`: runs a registered scripted baseline (harness.models.scripted) as a model, through the same
tools, cache and transcripts as a real one."""

from __future__ import annotations

import asyncio
import time

from harness.models.backends import register_backend
from harness.models.base import ChatModel
from harness.models.scripted import Policy, scripted_factory, scripted_revision
from harness.models.types import Reply, ToolCall


def _to_reply(out) -> Reply:
    if isinstance(out, Reply):
        return out
    if isinstance(out, str):
        return Reply(text=out, finish_reason="stop")
    calls = (out,) if isinstance(out, ToolCall) else tuple(out)
    if not all(isinstance(c, ToolCall) for c in calls):
        raise TypeError(f"a scripted policy returned {type(out).__name__}; expected Reply, str or ToolCall(s)")
    return Reply(text="", tool_calls=calls, finish_reason="tool_calls")


@register_backend
class ScriptedModel(ChatModel):
    name = "scripted"
    description = "deterministic baselines that call the same tools as a model (listed below)"

    @classmethod
    def default_revision(cls, model: str) -> str | None:
        # The baseline's code hash: in sample ids and response-cache keys, so a changed baseline gets new sample ids
        # and a warm cache never answers with an older baseline's replies.
        return scripted_revision(model)

    def __init__(self, spec, cache=None, *, policy: Policy | None = None):
        super().__init__(spec, cache)
        self.policy = policy if policy is not None else scripted_factory(spec.model)(spec)

    @property
    def native_tools(self) -> bool:
        return True  # a policy returns ToolCall objects: there is no text to parse

    async def _complete(self, messages, tools, sampling) -> Reply:
        t0 = time.perf_counter()
        # In a thread: a baseline's image analysis would otherwise block the event loop (and every other sample).
        out = await asyncio.to_thread(self.policy, list(messages), list(tools))
        reply = _to_reply(out)
        return Reply(**{**reply.__dict__, "latency_s": time.perf_counter() - t0})
