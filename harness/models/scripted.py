"""Scripted baselines (`scripted:NAME`): deterministic policies that answer through the same tools as a model.

A policy is a function (messages, tools) -> a Reply, a text, a ToolCall or a list of ToolCalls. It must depend only
on its inputs so a baseline is reproducible. Tasks register theirs with @register_scripted("name"); a registered
factory receives the ModelSpec and returns the policy.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from typing import Callable, Sequence

from harness.models.base import ChatModel
from harness.models.types import Message, ModelConfigError, Reply, ToolCall, ToolSpec

Policy = Callable[[list[Message], list[ToolSpec]], "Reply | str | ToolCall | Sequence[ToolCall]"]
_REGISTRY: dict[str, Callable[..., Policy]] = {}


def register_scripted(name: str):
    def deco(factory):
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ModelConfigError(f"scripted baseline {name!r} is registered twice")
        _REGISTRY[name] = factory
        return factory

    return deco


def scripted_revision(name: str) -> str | None:
    """The revision a registered baseline declares (a hash of its code), for sample ids and cache keys."""
    revision = getattr(_REGISTRY.get(name), "revision", None)
    return str(revision) if revision else None


def scripted_names() -> list[str]:
    return sorted(_REGISTRY)


def step_number(messages: Sequence[Message]) -> int:
    """How many assistant turns came before: the policy's position in its script."""
    return sum(1 for m in messages if m.role == "assistant")


def call(name: str, step: int, index: int = 0, /, **arguments) -> ToolCall:
    return ToolCall(f"call_s{step}_{index}", name, arguments, json.dumps(arguments, sort_keys=True))


def steps_policy(steps: Sequence) -> Policy:
    """Reply with steps[n] at the n-th assistant turn (the last step repeats): the simplest scripted agent."""
    if not steps:
        raise ModelConfigError("a scripted policy needs at least one step")

    def policy(messages, tools):
        return steps[min(step_number(messages), len(steps) - 1)]

    return policy


def _to_reply(out, step: int) -> Reply:
    if isinstance(out, Reply):
        return out
    if isinstance(out, str):
        return Reply(text=out, finish_reason="stop")
    calls = (out,) if isinstance(out, ToolCall) else tuple(out)
    if not all(isinstance(c, ToolCall) for c in calls):
        raise TypeError(f"a scripted policy returned {type(out).__name__}; expected Reply, str or ToolCall(s)")
    return Reply(text="", tool_calls=calls, finish_reason="tool_calls")


class ScriptedModel(ChatModel):
    def __init__(self, spec, cache=None, *, policy: Policy | None = None):
        super().__init__(spec, cache)
        if policy is None:
            if spec.model not in _REGISTRY:
                known = ", ".join(scripted_names()) or "none"
                raise ModelConfigError(f"unknown scripted baseline {spec.model!r}; registered: {known}")
            factory = _REGISTRY[spec.model]
            # A baseline whose code can change declares a revision (e.g. a hash of its code): it goes into the
            # response cache keys, so a warm cache never answers with an older baseline's replies.
            if spec.revision is None and getattr(factory, "revision", None):
                spec = replace(spec, revision=str(factory.revision))
                self.spec = spec
            policy = factory(spec)
        self.policy = policy

    @property
    def native_tools(self) -> bool:
        return True

    async def _complete(self, messages, tools, sampling) -> Reply:
        t0 = time.perf_counter()
        # In a thread: a baseline's image analysis would otherwise block the event loop (and every other sample).
        out = await asyncio.to_thread(self.policy, list(messages), list(tools))
        reply = _to_reply(out, step_number(messages))
        return Reply(**{**reply.__dict__, "latency_s": time.perf_counter() - t0})


@register_scripted("inspect-then-submit")
def _inspect_then_submit(spec) -> Policy:
    """Generic baseline: look at the volume's geometry, one axial montage, then submit "unknown"."""
    return steps_policy(
        [
            call("volume_info", 0),
            call("view_montage", 1, plane="axial"),
            call("submit", 2, answer="unknown"),
        ]
    )
