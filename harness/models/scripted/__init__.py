"""Scripted baselines (`scripted:NAME`): deterministic policies that answer through the same tools as a model.

A policy is a function (messages, tools) -> a Reply, a text, a ToolCall or a list of ToolCalls. It must depend only
on its inputs so a baseline is reproducible. A baseline is declared next to its task with

    @register_scripted("nph-evans", code=("tasks.nph_evans.task", "tasks.nph_evans.analysis"))
    def nph_baseline(spec) -> Policy: ...

and the registered factory receives the ModelSpec and returns the policy. The registry imports this package and
`tasks` (and the modules of plug-ins' `harness.tasks` entry points) before it answers, so every baseline is listed
whichever modules happened to be imported first.

Every baseline has a revision: a hash of its code (the source files of the `code` modules, default the factory's
own module, then the extra `files`, e.g. a template it reads). The revision enters sample ids and response-cache
keys, so a changed baseline never replays an older one's cached answers. The backend that runs baselines is
harness.models.backends.scripted.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import sys
from pathlib import Path
from typing import Callable, Sequence

from harness.core.registry import Registry, RegistryError
from harness.models.types import Message, ModelConfigError, Reply, ToolCall, ToolSpec

Policy = Callable[[list[Message], list[ToolSpec]], "Reply | str | ToolCall | Sequence[ToolCall]"]
PolicyFactory = Callable[..., Policy]

scripted_baselines: Registry[PolicyFactory] = Registry(
    "scripted baseline", packages=("harness.models.scripted", "tasks"), import_groups=("harness.tasks",)
)


def register_scripted(name: str, *, code: Sequence[str] = (), files: Sequence[Path | str] = ()):
    """Decorator: register a policy factory as the baseline `name`, with the revision of its code.

    code: module names whose source files the revision hashes (default: the factory's own module).
    files: further files it depends on (relative paths are relative to the factory's module).
    """

    def deco(factory: PolicyFactory) -> PolicyFactory:
        factory.revision = code_revision(factory, code, files)
        scripted_baselines.add(name, factory, getattr(factory, "__module__", None) or "?")
        return factory

    return deco


def code_revision(factory: PolicyFactory, code: Sequence[str] = (), files: Sequence[Path | str] = ()) -> str:
    """"code-" and 12 hex digits of the sha256 of the files' bytes, in order."""
    home = sys.modules.get(factory.__module__)
    base = Path(home.__file__).parent if getattr(home, "__file__", None) else Path.cwd()
    h = hashlib.sha256()
    if code:
        sources = [_module_source(module) for module in code]
    elif getattr(home, "__file__", None):
        sources = [Path(home.__file__)]
    else:
        sources = []  # a notebook or an interactive session: the factory's own source is all there is
        try:
            h.update(inspect.getsource(factory).encode())
        except (OSError, TypeError):
            raise RegistryError(f"cannot hash the code of {factory!r}: its module has no source file; name it with code=(...)") from None
    for path in [*sources, *(base / f for f in files)]:
        try:
            h.update(path.read_bytes())
        except OSError as exc:
            raise RegistryError(f"cannot hash {path} for the revision of {factory!r}: {exc.strerror or exc}") from None
    return "code-" + h.hexdigest()[:12]


def _module_source(name: str) -> Path:
    module = sys.modules.get(name)
    origin = getattr(module, "__file__", None)
    if origin is None:
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec is not None and spec.has_location else None
    if origin is None or not origin.endswith(".py"):
        raise RegistryError(f"module {name!r} has no Python source file to hash")
    return Path(origin)


def scripted_names() -> list[str]:
    return scripted_baselines.names()


def scripted_factory(name: str) -> PolicyFactory:
    if name not in scripted_baselines:
        raise ModelConfigError(f"unknown scripted baseline {name!r}; registered: {', '.join(scripted_names()) or 'none'}")
    return scripted_baselines.get(name)


def scripted_revision(name: str) -> str | None:
    """The registered baseline's revision, for sample ids and cache keys (None for a name nobody registered)."""
    if name not in scripted_baselines:
        return None
    revision = getattr(scripted_baselines.get(name), "revision", None)
    return str(revision) if revision else None


# --- what policies are written with --------------------------------------------------------------------------------

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


__all__ = [
    "Policy", "PolicyFactory", "call", "code_revision", "register_scripted", "scripted_baselines", "scripted_factory",
    "scripted_names", "scripted_revision", "step_number", "steps_policy",
]
