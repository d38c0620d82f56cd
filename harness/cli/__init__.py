"""The `harness` command line. Each command group lives in its own module; this one wires them together.

Errors a user can act on (HarnessError) are printed as one line on stderr with exit code 1, never as a traceback.
"""

from __future__ import annotations

import sys
import warnings

import typer

from harness import __version__
from harness.core.errors import HarnessError, HarnessWarning

app = typer.Typer(
    name="harness",
    help="Measure what facial de-identification (defacing) does to AI results on head MRI and CT.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool):
    if value:
        typer.echo(f"harness {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
):
    """Measure what facial de-identification (defacing) does to AI results on head MRI and CT."""


def _register() -> None:
    from harness.cli import cache, data, deface, defacers, eval, leaderboard, models, privacy, runs, view, volumes

    eval.register(app)
    volumes.register(app)
    deface.register(app)
    defacers.register(app)
    data.register(app)
    runs.register(app)
    models.register(app)
    leaderboard.register(app)
    view.register(app)
    privacy.register(app)
    cache.register(app)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr)


def main() -> None:
    _register()
    warnings.showwarning = _show_warning
    warnings.simplefilter("always", HarnessWarning)
    try:
        app()
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
