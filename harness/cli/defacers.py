"""`harness defacers`: every defacer this installation knows, built-in and plug-in, and what each takes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from defacers.catalog import DefacerInfo


def _parameter(name: str, default) -> str:
    from defacers.catalog import NO_DEFAULT

    if default is NO_DEFAULT:
        return name
    return f"{name} (optional)" if default is None else f"{name}={default}"


def _parameters(info: DefacerInfo) -> str:
    named = [_parameter(name, default) for name, default in info.parameters.items()]
    if info.open_ended:
        named.append("other KEY=VALUE fill {KEY} in the command" if info.program is not None else "any KEY=VALUE")
    return ", ".join(named) or "none"


def _program(info: DefacerInfo) -> str:
    if not info.program:
        return "the program its command= names"
    return f"{info.program} (installed)" if info.missing is None else f"{info.program} - cannot run here: {info.missing}"


def _origin(info: DefacerInfo) -> str:
    return f"built-in ({info.origin})" if info.built_in else info.origin


def list_defacers():
    """List every defacer: name, version, parameters (with defaults), where it comes from, and whether an external tool's program is installed (with the install hint when not).

    Use a name with --defacer in `harness deface` and `harness eval`; parameters go in brackets: --defacer "quickshear(buffer_mm=5)".

    The version is part of every cache key: results made by another version are recomputed, not reused.

    Other packages add defacers through the `harness.defacers` entry-point group; they are listed with the distribution they come from.
    """
    from defacers.catalog import catalog  # on use: it loads every defacer, which `harness --help` should not wait for
    from defacers.registry import ENTRY_POINT_GROUP, names

    order = {name: i for i, name in enumerate(names())}
    infos = sorted(catalog(), key=lambda info: order.get(info.name, len(order)))
    width = max(len(info.name) for info in infos)
    for info in infos:
        typer.echo(f"{info.name:<{width}}  {info.version or '(set by the defacer it makes)'}")
        indent = " " * (width + 2)
        typer.echo(f"{indent}parameters: {_parameters(info)}")
        typer.echo(f"{indent}from: {_origin(info)}")
        if info.program is not None:
            typer.echo(f"{indent}runs: {_program(info)}")
    typer.echo(f"\nplug-ins register under the {ENTRY_POINT_GROUP!r} entry-point group; parameters go in brackets: NAME(key=value, ...)")


def register(app: typer.Typer) -> None:
    app.command("defacers")(list_defacers)
