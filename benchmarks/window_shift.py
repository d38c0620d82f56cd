"""How much defacing moves the MR auto window: the window of each original volume vs the same volume defaced.

    python -m benchmarks.window_shift VOLUME [VOLUME ...] [--defacers deface,reface] [--cache-dir DIR]

For each volume and defacer prints the MR auto window (centre/width) of the original and the defaced volume and the
shift of each end (low, high) as a percentage of the original's width (an image's grey levels move by about that
much), plus the seconds the auto window took. Defaced volumes come from the defacer cache (computed when missing).
"""

from __future__ import annotations

import argparse
import time

import defacers
from harness.core.config import default_cache_dir
from harness.imaging.io import load_volume
from harness.imaging.render import resolve_window


def ends(window: tuple[float, float]) -> tuple[float, float]:
    centre, width = window
    return centre - width / 2, centre + width / 2


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("volumes", nargs="+")
    parser.add_argument("--defacers", default="deface,reface")
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args()
    cache = args.cache_dir or default_cache_dir()
    worst = 0.0
    for path in args.volumes:
        original = load_volume(path)
        start = time.perf_counter()
        window = resolve_window(original, "auto")
        seconds = time.perf_counter() - start
        lo, hi = ends(window)
        print(f"{path}: original window {window[0]:.1f}/{window[1]:.1f} ({seconds:.2f} s)")
        for name in args.defacers.split(","):
            defaced = defacers.deface_cached(defacers.get(name), original, cache).volume
            d_window = resolve_window(defaced, "auto")
            d_lo, d_hi = ends(d_window)
            shift = [100 * (d_lo - lo) / window[1], 100 * (d_hi - hi) / window[1]]
            worst = max(worst, *map(abs, shift))
            print(f"  {name:<12} {d_window[0]:.1f}/{d_window[1]:.1f}  low {shift[0]:+.2f} %  high {shift[1]:+.2f} % of the width")
    print(f"largest shift of either end: {worst:.2f} % of the original's width")


if __name__ == "__main__":
    main()
