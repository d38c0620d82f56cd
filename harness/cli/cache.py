"""`harness cache` and `harness cache clear`: what the local cache holds, and removing kinds of it."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from harness.core.cache_folders import BY_NAME, KINDS, clear, human, usage
from harness.core.config import default_cache_dir
from harness.core.errors import HarnessError

CACHE_DIR_HELP = "The cache folder (default ~/.cache/harness)."
cache_app = typer.Typer(help="What the local cache holds (sizes, which kinds show faces), and clearing kinds of it.")


@cache_app.callback(invoke_without_command=True)
def show(ctx: typer.Context, cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help=CACHE_DIR_HELP)):
    """List what the cache holds: per kind the files, the size and whether it shows faces or holds face embeddings."""
    if ctx.invoked_subcommand is not None:
        return
    folder = cache_dir or default_cache_dir()
    found = usage(folder)
    if not found:
        typer.echo(f"{folder}: empty")
        return
    table = Table(title=str(folder))
    for col, justify in (("kind", "left"), ("files", "right"), ("size", "right"), ("faces", "left"), ("holds", "left")):
        table.add_column(col, justify=justify)
    for u in found:
        if u.kind is None:
            table.add_row(u.path.name, str(u.files), human(u.bytes), "?", "not written by the harness (left alone)")
        else:
            table.add_row(u.kind.name, str(u.files), human(u.bytes), "yes" if u.kind.faces else "", u.kind.holds)
    Console().print(table)
    faces = sum(u.bytes for u in found if u.kind is not None and u.kind.faces)
    typer.echo(f"total {human(sum(u.bytes for u in found))}; showing faces or face embeddings: {human(faces)} "
               "(harness cache clear --faces removes those)")


@cache_app.command("clear")
def clear_cmd(
    kinds: Optional[List[str]] = typer.Argument(None, metavar="KIND", help="Kinds to remove (as `harness cache` names them)."),
    faces: bool = typer.Option(False, "--faces", help="Every kind that shows faces or holds face embeddings."),
    everything: bool = typer.Option(False, "--all", help="Every kind the harness writes (the salts of published ids too)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before removing."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help=CACHE_DIR_HELP),
):
    """Remove kinds of the cache. What a run needs is made again when it runs (defacing and model calls cost time,
    so do not clear in the middle of a study); `harness view` of earlier runs needs their defaced volumes and renders.
    Nothing the harness did not write is touched."""
    unknown = [k for k in kinds or [] if k not in BY_NAME]
    if unknown:
        raise HarnessError(f"unknown cache kind {', '.join(unknown)}: known are {', '.join(BY_NAME)}")
    chosen = [k for k in KINDS if everything or (faces and k.faces) or k.name in (kinds or [])]
    if not chosen:
        raise HarnessError("name the kinds to remove (see `harness cache`), or --faces, or --all")
    folder = cache_dir or default_cache_dir()
    present = {u.kind.name: u for u in usage(folder) if u.kind is not None}
    targets = [k for k in chosen if k.name in present]
    if not targets:
        typer.echo(f"{folder}: nothing of {', '.join(k.name for k in chosen)} to remove")
        return
    listing = ", ".join(f"{k.name} ({human(present[k.name].bytes)})" for k in targets)
    if not yes and not typer.confirm(f"remove from {folder}: {listing}?"):
        raise typer.Exit(1)
    clear(folder, targets)
    typer.echo(f"removed {listing}: {human(sum(present[k.name].bytes for k in targets))} freed")


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app, name="cache")
