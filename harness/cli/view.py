"""`harness view RUN [RUN ...]`: what each model saw and said, served on 127.0.0.1 or written as a static copy."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def view_cmd(
    runs: list[Path] = typer.Argument(..., help="Run directories, or folders of them (the --out folder of harness eval)."),
    port: int = typer.Option(0, "--port", min=0, max=65535, help="Port on 127.0.0.1 (default: a free one, printed)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write a static copy of the selected samples to this "
                                                                  "new folder instead of serving them."),
    task: Optional[str] = typer.Option(None, "--task", help="Only samples of this task."),
    defacer: Optional[str] = typer.Option(None, "--defacer", help="Only samples of this condition (a defacer as given "
                                                                  "to harness eval, or original); pairs bring their original."),
    model: Optional[str] = typer.Option(None, "--model", help="Only samples of this model."),
    mode: Optional[str] = typer.Option(None, "--mode", help="Only samples of this mode."),
    status: Optional[str] = typer.Option(None, "--status", help="Only samples with this status: ok, unparsable, failed."),
    changed: bool = typer.Option(False, "--changed", help="Only pairs whose answer changed after defacing."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="The harness cache (cohorts, defaced volumes) "
                                                                        "the runs used; default ~/.cache/harness."),
):
    """Pages of what each model saw and said: the run's grid and failures, every sample (its images re-rendered from
    the volumes and checked against their sha256, the transcript, answers, scores) and every original/defaced pair.
    They show patient images: served on 127.0.0.1 only, and `--out` copies are refused by leaderboard publish."""
    from harness.core.config import default_cache_dir
    from harness.core.errors import HarnessError
    from harness.store.run_store import expand_run_dirs
    from harness.view.catalog import STATUSES, Selection, load_runs
    from harness.view.images import ImageSource
    from harness.view.pages import View

    if status is not None and status not in STATUSES:
        raise HarnessError(f"--status must be one of {', '.join(STATUSES)}, not {status!r}")
    run_dirs = expand_run_dirs(runs)
    selection = Selection(task=task, defacer=defacer, model=model, mode=mode, status=status, changed=changed)
    view = View(load_runs(run_dirs), ImageSource(cache_dir or default_cache_dir()), selection)
    if out is not None:
        from harness.view.export import write_static

        written = write_static(view, out)
        typer.echo(f"{written} files in {out} (contains patient images: keep it on this machine)")
        typer.echo(f"open {out / 'index.html'}")
        return
    from harness.view.server import make_server

    server = make_server(view, port)
    host, bound = server.server_address[:2]
    typer.echo(f"serving {len(view.runs)} run(s) on http://{host}:{bound}/ (contains patient images: this machine "
               "only); Ctrl-C stops")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def register(app: typer.Typer) -> None:
    app.command("view")(view_cmd)
