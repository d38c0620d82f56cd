"""Seconds and peak memory per defacer on a 1 mm whole head (Colin27 and the pydeface average head).

Each (head, defacer) runs in a fresh process so registrations are not shared and peak RSS is its own.
Targets on 2 cores: reface <= 10 s, deface <= 8 s, quickshear (with its brain mask) <= 3 s, peak <= 2 GB.

    python benchmarks/defacers.py [--repeat N]
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADS = {
    "colin27": Path("/usr/share/mricron/templates/ch2.nii.gz"),
    "pydeface-template": Path(str(importlib.resources.files("pydeface") / "data" / "mean_reg2mean.nii.gz")),
}
DEFACERS = ("original", "quickshear", "deface", "reface")


def one(head: str, name: str) -> dict:
    sys.path.insert(0, str(ROOT))
    import defacers
    from harness.imaging.io import load_volume

    volume = load_volume(HEADS[head])
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    result = defacers.get(name).deface(volume)
    seconds = time.perf_counter() - start
    qc = result.qc
    return {
        "head": head,
        "defacer": name,
        "shape": list(volume.shape),
        "seconds": round(seconds, 2),
        "timings": {k: round(v, 2) for k, v in result.timings.items()},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "rss_before_mb": round(rss_before),
        "brain_voxels_changed": qc.get("brain_voxels_changed"),
        "face_fraction_changed": round(qc.get("face_fraction_changed", 0.0), 3),
        "face_surface_change_mm": round(qc.get("face_surface_change_mm", 0.0), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", nargs=2, metavar=("HEAD", "DEFACER"), help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=1, help="runs per (head, defacer); the fastest is shown")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(*args.one)))
        return
    print(f"{'head':<18} {'defacer':<11} {'seconds':>7} {'peak MB':>8}  {'brain chg':>9} {'face frac':>9} {'surf mm':>7}  breakdown (s)")
    for head, path in HEADS.items():
        if not path.is_file():
            print(f"{head}: {path} not installed, skipped")
            continue
        for name in DEFACERS:
            runs = []
            for _ in range(args.repeat):
                proc = subprocess.run([sys.executable, __file__, "--one", head, name], capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
                if proc.returncode != 0:
                    print(f"{head} {name}: failed: {proc.stderr.strip().splitlines()[-1:]}")
                    break
                runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            if not runs:
                continue
            r = min(runs, key=lambda x: x["seconds"])
            breakdown = " ".join(f"{k}={v}" for k, v in r["timings"].items() if k != "total")
            print(
                f"{head:<18} {name:<11} {r['seconds']:>7.2f} {max(x['peak_rss_mb'] for x in runs):>8}  "
                f"{r['brain_voxels_changed']!s:>9} {r['face_fraction_changed']:>9.3f} {r['face_surface_change_mm']:>7.2f}  {breakdown}"
            )
    print(f"(peak MB = whole process peak RSS, incl. ~{_baseline()} MB for Python + numpy/SimpleITK/nibabel imports)")


def _baseline() -> int:
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); import defacers, harness.imaging.io, resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)"
    return int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() or 0)


if __name__ == "__main__":
    main()
