"""`harness leaderboard build RUNS... --out DIR` and `harness leaderboard publish DIR --to PATH_OR_REPO`."""

from __future__ import annotations

from pathlib import Path

import typer

leaderboard_app = typer.Typer(help="Build a leaderboard from runs (tables, plots, static site) and publish it.",
                              no_args_is_help=True)


@leaderboard_app.command("build")
def build_cmd(
    runs: list[Path] = typer.Argument(..., help="Run directories, or folders of them (the --out folder of harness eval)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write the leaderboard to (replaced if it holds one)."),
    separate: bool = typer.Option(False, "--separate", help="Put runs that are not comparable on separate boards "
                                                            "instead of refusing."),
):
    """Aggregate runs into per-task tables (CSV, JSON, Parquet, Markdown), plots and a static HTML site."""
    from harness.store.run_store import expand_run_dirs
    from leaderboard import build

    result = build(expand_run_dirs(runs), out, separate=separate)
    typer.echo(f"{len(result.boards)} board(s) ({', '.join(result.boards)}) in {result.seconds:.1f} s")
    typer.echo(f"open {result.out_dir / 'index.html'}")


@leaderboard_app.command("publish")
def publish_cmd(
    site: Path = typer.Argument(..., help="A folder made by `harness leaderboard build`."),
    to: str = typer.Option(..., "--to", help="A folder path, or hf://owner/name for a Hugging Face dataset repo."),
    staging: Path = typer.Option(None, "--staging", help="Where to write the dataset-repo upload folder."),
    dry_run: bool = typer.Option(False, "--dry-run", help="For hf://: write the upload folder, do not upload."),
):
    """Copy the site and data to a folder, or upload them (Parquet + dataset card + site) to a dataset repo.
    Only what `build` made is published, unchanged and no links (build.json lists every file with its hash), and it
    is scanned first: no case ids of the runs, local paths, secrets or images of original data."""
    from leaderboard import publish

    folder = publish(site, to, staging=staging, dry_run=dry_run)
    if to.startswith("hf://"):
        typer.echo(f"upload folder: {folder}" + ("" if dry_run else f"\nuploaded to {to}"))
    else:
        typer.echo(f"published to {folder}")


def register(app: typer.Typer) -> None:
    app.add_typer(leaderboard_app, name="leaderboard")
