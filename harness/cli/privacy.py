"""`harness faces` (face renders of a volume, to look at) and `harness privacy` (the re-identification attack)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from harness.core.errors import HarnessError

FACES_HELP = """Write photo-like renders of a head volume's face (frontal, +-15 and +-30 degrees of yaw) for a person to look at.

The renders show a face: keep them local (they never belong in a run folder, a leaderboard or a published folder).
With --defacer the defaced volume is rendered, in the original's pose, as the re-identification attack sees it.
"""

PRIVACY_HELP = """Re-identification attack: can a face-recognition model match defaced volumes to their originals?

Renders every volume's face, detects (dlib HOG; the CNN where HOG is not sure), aligns (5 landmarks) and embeds
(ResNet, 128-D) it; the gallery is the originals' frontal faces, the probes each defacer's outputs, and a positive
control the originals seen again from other angles and light. Per defacer: face detection rate (faces the
detectors are sure of), rank-1 and rank-5 identification over every face candidate with bootstrap 95 % CIs, and the
share within dlib's 0.6 same-person distance. The attack uses no ground truth. Results are cached by content: a
second run reads them back.
"""


def _refuse_shared_folder(out: Path) -> None:
    """Face renders never go into a run folder or a leaderboard folder (both are made to be shared)."""
    from harness.store.run_store import MANIFEST, SAMPLES
    from leaderboard.built_files import BUILD_FILE

    for folder in (out.resolve(), *out.resolve().parents):
        if (folder / MANIFEST).is_file() and (folder / SAMPLES).is_file():
            raise HarnessError(f"{out}: inside the run folder {folder}; face renders never go into a run folder")
        if (folder / BUILD_FILE).is_file():
            raise HarnessError(f"{out}: inside the leaderboard folder {folder}; face renders are never published")


def faces_cmd(
    volume: Path = typer.Argument(..., help="A NIfTI file, a DICOM file, or a folder of DICOM files."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the PNGs (created)."),
    defacer: Optional[str] = typer.Option(None, "--defacer", "-d", help="Render the volume defaced by this defacer (e.g. reface) instead of the original."),
    modality: Optional[str] = typer.Option(None, help="Override the modality: MR or CT."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Reuse/keep defaced volumes here (default ~/.cache/harness)."),
):
    import defacers
    from harness.core.config import default_cache_dir
    from harness.core.files import atomic_write_bytes
    from harness.imaging.face_render import VIEWS, render_faces
    from harness.imaging.io import load_volume
    from harness.privacy.pose import face_pose

    _refuse_shared_folder(out)
    original = load_volume(volume, modality=modality)
    try:
        pose = face_pose(original)
    except HarnessError as exc:
        raise HarnessError(f"{volume}: {exc}") from None
    shown = original
    if defacer is not None:
        from harness.cli.deface import defacer_from_options

        try:
            shown = defacers.deface_cached(defacer_from_options(defacer, []), original, cache_dir or default_cache_dir()).volume
        except HarnessError as exc:
            raise HarnessError(f"{volume}: {exc}") from None
    out.mkdir(parents=True, exist_ok=True)
    stem = volume.name.split(".")[0] + (f"-{defacer}" if defacer else "")
    for r in render_faces(shown, pose, VIEWS):
        path = out / f"{stem}-{r.view.name}.png"
        atomic_write_bytes(path, r.png())
        typer.echo(f"wrote {path}")


def privacy_cmd(
    defacer: List[str] = typer.Option(..., "--defacer", "-d", help="Defacer to attack (repeatable), e.g. reface; `harness defacers` lists them."),
    cohort: Optional[str] = typer.Option(None, "--cohort", help="Cohort source (manifest, BIDS, DICOM or UPENN folder, Hugging Face dataset). Default: the built-in sample cohort."),
    task: Optional[str] = typer.Option(None, "--task", "-t", help="Use the volumes this task reads (default: every volume role of every task's cohort)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Use at most N cases per task."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Cache for cohorts, defaced volumes and attack results (default ~/.cache/harness)."),
):
    import sys

    from harness.core.config import default_cache_dir
    from harness.privacy.cohort_attack import attack_cohort, cohort_items

    cache = cache_dir or default_cache_dir()
    items = cohort_items(cohort, task, limit=limit, cache_dir=cache)
    if not items:
        raise HarnessError(f"{cohort or 'the sample cohort'}: no volumes to attack")
    report = attack_cohort(items, list(dict.fromkeys(defacer)), cache,
                           progress=None if as_json else (lambda line: print(line, file=sys.stderr)))
    if as_json:
        typer.echo(json.dumps(report, indent=1))
        return
    from harness.privacy.report_text import report_lines

    for line in report_lines(report):
        typer.echo(line)


def register(app: typer.Typer) -> None:
    app.command("faces", help=FACES_HELP)(faces_cmd)
    app.command("privacy", help=PRIVACY_HELP)(privacy_cmd)
