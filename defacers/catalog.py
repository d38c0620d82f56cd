"""What `harness defacers` shows: every registered defacer with its version, parameters, origin and readiness."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from defacers.external import ExternalTool
from defacers.registry import defacer_registry
from harness.core.registry import Entry

NO_DEFAULT = inspect.Parameter.empty


@dataclass(frozen=True)
class DefacerInfo:
    name: str
    version: str  # "" when only the defacer it makes knows (a plug-in's factory function)
    parameters: dict[str, object]  # name -> default (NO_DEFAULT: none known)
    open_ended: bool  # takes further KEY=VALUE parameters beyond the named ones
    origin: str  # the defining module, or the plug-in distribution and its entry point
    built_in: bool
    program: str | None  # the external program it runs ("" when its `command` parameter names it); None: native
    missing: str | None  # for a tool: what to install before it can run; None when it can


def describe(entry: Entry) -> DefacerInfo:
    obj = entry.obj
    if isinstance(obj, type):  # a Defacer subclass
        parameters = obj.parameters()
        named, open_ended = parameters or {}, parameters is None
    elif isinstance(obj, ExternalTool):
        named, open_ended = obj.parameters(), True  # other KEY=VALUE fill {KEY} in its command
    else:  # a plug-in's factory function
        named, open_ended = _from_signature(obj)
    tool = obj if isinstance(obj, ExternalTool) else None
    return DefacerInfo(
        name=entry.name,
        version=str(getattr(obj, "version", "") or ""),
        parameters=named,
        open_ended=open_ended,
        origin=entry.origin,
        built_in=entry.built_in,
        program=tool.executable if tool is not None else None,
        missing=tool.missing() if tool is not None else None,
    )


def catalog() -> list[DefacerInfo]:
    return [describe(entry) for entry in defacer_registry.entries()]


def _from_signature(factory) -> tuple[dict[str, object], bool]:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # a callable without a readable signature: say it takes anything
        return {}, True
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    named = {p.name: p.default for p in signature.parameters.values() if p.kind in kinds}
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    return named, open_ended
