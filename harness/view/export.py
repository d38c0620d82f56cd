"""`harness view --out DIR`: the view's pages and images written as static files, with the view marker."""

from __future__ import annotations

from pathlib import Path

from harness.core.errors import HarnessError
from harness.core.files import atomic_write_bytes
from harness.store.run_store import MANIFEST
from harness.view.marker import MARKER_TEXT, VIEW_MARKER
from harness.view.pages import View

LEADERBOARD_INDEX = "leaderboard.json"  # what `harness leaderboard build` writes at a leaderboard's top


def write_static(view: View, out: Path) -> int:
    """Write every page and image of `view` under `out` (a new or empty folder outside run folders and leaderboards);
    returns the number of files written. An image that cannot be re-rendered is left out (its page says why)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise HarnessError(f"{out}: must be a new or empty folder")
    resolved = out.resolve()
    for folder in (resolved, *resolved.parents):
        for name, what in ((MANIFEST, "a run folder"), (LEADERBOARD_INDEX, "a leaderboard")):
            if (folder / name).is_file():
                raise HarnessError(f"{out}: inside {what} ({folder}); a view holds patient images and lives outside "
                                   "run folders and leaderboards")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / VIEW_MARKER, MARKER_TEXT.encode())
    written = 1
    for path in view.paths():
        found = view.get(path)
        if found is not None:
            atomic_write_bytes(out / path, found[1])
            written += 1
    return written
