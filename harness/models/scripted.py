"""Scripted baselines (`scripted:NAME`): deterministic policies that answer through the same tools as a model.

A policy is a function (messages, tools) -> a Reply, a text, a ToolCall or a list of ToolCalls. It must depend only
on its inputs so a baseline is reproducible. Tasks register theirs with @register_scripted("name"); a registered
factory receives the ModelSpec and returns the policy. The backend that runs them is harness.models.backends.scripted.
"""

from __future__ import annotations

import json
from typing import Callable, Sequence

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


def scripted_factory(name: str) -> Callable[..., Policy]:
    if name not in _REGISTRY:
        raise ModelConfigError(f"unknown scripted baseline {name!r}; registered: {', '.join(scripted_names()) or 'none'}")
    return _REGISTRY[name]


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
