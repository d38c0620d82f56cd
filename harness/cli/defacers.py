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


def _print_table(infos: list[DefacerInfo]) -> None:
    """The defacer table: family, modalities, where it runs, and what benchmarks/defacers.py measured."""
    from defacers.catalog import measured, not_measured, table

    figures = measured()
    rows = table(infos, figures)
    widths = {key: max(len(key), *(len(row[key]) for row in rows)) for key in rows[0]}
    typer.echo("  ".join(f"{key:<{widths[key]}}" for key in widths).rstrip())
    for row in rows:
        typer.echo("  ".join(f"{value:<{widths[key]}}" for key, value in row.items()).rstrip())
    if not figures:
        typer.echo("(no measured figures: run python benchmarks/defacers.py --write)")
        return
    typer.echo(f"measured {figures.get('measured_on', '?')} on {figures.get('machine', '?')} by {figures.get('command', '?')}; "
               "s/scan: one whole call incl. QC, fastest run; QC: brain voxels changed (worst volume), face region changed (mean)")
    for name, why in not_measured(figures).items():
        typer.echo(f"  {name}: not measured - {why}")


def list_defacers():
    """List every defacer: name, version, parameters (with defaults), where it comes from, and whether an external tool's program is installed (with the install hint when not); then the defacer table: family, modalities, where it runs, seconds per scan and QC on the sample cohorts, as benchmarks/defacers.py measured them.

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
    typer.echo("precomputed:NAME shows volumes defaced elsewhere, given per case by the cohort (a manifest's \"defaced\" field, "
               "ROLE@NAME columns, or BIDS derivatives/NAME/)\n")
    _print_table(infos)


def register(app: typer.Typer) -> None:
    app.command("defacers")(list_defacers)
