"""Sample-cohort generation: seconds per case and MB per case for each task (full resolution unless --scale).

    python benchmarks/cohorts.py [--n 4] [--scale 1.0] [--tasks nph-evans,tumor-dx,ct-report]

Prints one line per task: seconds per case (mean, min, max), MB on disk per case, peak resident memory so far.
The derived anatomy is loaded (or derived, ~20 s once) before timing starts.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

from harness.phantoms.anatomy import load_atlas
from harness.data.sample_cohort import write_case


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--tasks", default="nph-evans,tumor-dx,ct-report")
    args = parser.parse_args()
    started = time.perf_counter()
    atlas = load_atlas()
    print(f"anatomy: {atlas.source} {atlas.t1.shape} loaded in {time.perf_counter() - started:.1f} s")
    for task in args.tasks.split(","):
        out = Path(tempfile.mkdtemp(prefix="cohort-bench-"))
        try:
            times = []
            for i in range(args.n):
                t = time.perf_counter()
                write_case(task, 0, i, out, atlas, resolution_scale=args.scale)
                times.append(time.perf_counter() - t)
            size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 1e6
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"{task:<12} {sum(times) / len(times):6.1f} s/case (min {min(times):.1f}, max {max(times):.1f})  "
                  f"{size / args.n:6.1f} MB/case  peak RSS {rss:.0f} MB  (n={args.n}, scale={args.scale})")
        finally:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
