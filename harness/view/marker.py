"""The file that marks a folder written by `harness view --out`: it holds patient images, so publishing refuses it."""

from __future__ import annotations

from pathlib import Path

VIEW_MARKER = "HARNESS-VIEW-PATIENT-IMAGES.txt"
MARKER_TEXT = ("This folder was written by `harness view --out`. It contains face-bearing patient images and is for\n"
               "the local machine only: do not publish, share or upload it. `harness leaderboard publish` refuses it.\n")


def view_markers(folder: Path) -> list[Path]:
    """The view markers in `folder` or anywhere below it (a view copied into a leaderboard folder counts)."""
    folder = Path(folder)
    return sorted(folder.rglob(VIEW_MARKER)) if folder.is_dir() else []
