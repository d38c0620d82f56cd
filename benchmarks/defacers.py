"""Seconds and peak memory per defacer on a 1 mm whole head, and each defacer's QC on the built-in sample cohorts.

Every registered defacer that can run here is measured (the list comes from the registry, so a new defacer is
measured without editing this script); one that cannot (a tool not installed, precomputed volumes) is listed with
the reason. Each (head, defacer) runs in a fresh process so registrations are not shared and peak RSS is its own.
The sample-cohort QC defaces every volume of the nph-evans (T1) and ct-report (CT) sample cohorts through the
harness cache (~/.cache/harness: volumes defaced before are read back, not timed).
Targets on 2 cores: reface <= 10 s, deface <= 8 s, quickshear (with its brain mask) <= 3 s, peak <= 2 GB.

    python benchmarks/defacers.py [--repeat N] [--write]

--write stores the figures, the date and the machine in defacers/measured.json (read by `harness defacers`) and
rewrites the defacer table in README.md from it; --table-only rewrites the README table from the stored figures.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.resources
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
HEADS = {
    "colin27": (Path("/usr/share/mricron/templates/ch2.nii.gz"), "Colin27", "Colin27 (mricron-data ch2), 181 x 217 x 181, 1 mm, T1"),
    "pydeface-head": (Path(str(importlib.resources.files("pydeface") / "data" / "mean_reg2mean.nii.gz")), "pydeface head",
                      "pydeface average head, 176 x 256 x 256, 1 x 0.98 x 0.98 mm, T1"),
}
COHORTS = {"nph-evans": ("MR sample", "built-in nph-evans sample cohort (T1 phantoms)"),
           "ct-report": ("CT sample", "built-in ct-report sample cohort (head CT phantoms)")}
MEASURED = ROOT / "defacers" / "measured.json"
README = ROOT / "README.md"


def one(head: str, name: str) -> dict:
    import defacers
    from harness.imaging.io import load_volume

    volume = load_volume(HEADS[head][0])
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


def cohort_qc(name: str) -> dict:
    """QC of one defacer over every volume of each sample cohort (through the harness cache)."""
    import defacers
    from harness.core.config import default_cache_dir
    from harness.core.errors import HarnessError
    from harness.data import load_cohort
    from harness.data.case import CT_ROLES
    from tasks import get_task

    defacer = defacers.get(name)
    out = {}
    for task_name in COHORTS:
        task = get_task(task_name)
        modality = "CT" if any(role in CT_ROLES for role in task.roles) else "MR"
        if modality not in (getattr(defacer, "modalities", ()) or (modality,)):
            out[task_name] = {"not_applicable": f"{', '.join(defacer.modalities)} only"}
            continue
        records, refused = [], 0
        for case in load_cohort(None, task).cases:
            for role in task.roles:
                try:
                    records.append(defacers.deface_cached(defacer, case.load(role), default_cache_dir()).qc)
                except HarnessError:
                    refused += 1
        brain = [int(q["brain_voxels_changed"]) for q in records]
        face = [float(q["face_fraction_changed"]) for q in records if "face_fraction_changed" in q]
        out[task_name] = {"volumes": len(records) + refused, "ok": len(records), "refused": refused,
                          "brain_voxels_changed_max": max(brain, default=0),
                          "brain_voxels_changed_mean": round(sum(brain) / len(brain), 1) if brain else None,
                          "face_fraction_changed_mean": round(sum(face) / len(face), 4) if face else None}
    return out


def why_not_measured(info) -> str | None:
    if info.runs == "precomputed":
        return "volumes defaced elsewhere, given by the cohort: nothing runs here"
    if info.program == "":
        return "runs the command it is given"
    return info.missing


def _child(*args: str) -> tuple[dict | None, str]:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if proc.returncode != 0:
        return None, (proc.stderr.strip().splitlines() or ["exit code %d" % proc.returncode])[-1]
    return json.loads(proc.stdout.strip().splitlines()[-1]), ""


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "?") if Path("/proc/cpuinfo").exists() else platform.processor()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cores} CPU cores ({cpu}), {platform.system()} {platform.machine()}, Python {platform.python_version()}, no GPU used"


def measure(repeat: int) -> dict:
    from defacers.catalog import catalog
    from defacers.registry import names

    order = {n: i for i, n in enumerate(names())}
    infos = sorted(catalog(), key=lambda info: order.get(info.name, len(order)))
    figures: dict = {}
    load_before = os.getloadavg()[0]
    print(f"{'head':<14} {'defacer':<24} {'seconds':>7} {'peak MB':>8}  {'brain chg':>9} {'face frac':>9} {'surf mm':>7}  breakdown (s)")
    for info in infos:
        reason = why_not_measured(info)
        if reason:
            figures[info.name] = {"not_measured": reason}
            print(f"{'':<14} {info.name:<24} not measured: {reason}")
            continue
        mine: dict = {"seconds_per_scan": {}, "peak_rss_mb": {}}
        for head, (path, _, _) in HEADS.items():
            if not path.is_file():
                print(f"{head}: {path} not installed, skipped")
                continue
            runs = []
            for _ in range(repeat):
                result, error = _child("--one", head, info.name)
                if result is None:
                    print(f"{head:<14} {info.name:<24} failed: {error}")
                    mine.setdefault("failed", {})[head] = error
                    break
                runs.append(result)
            if not runs:
                continue
            r = min(runs, key=lambda x: x["seconds"])
            mine["seconds_per_scan"][head] = r["seconds"]
            mine["peak_rss_mb"][head] = max(x["peak_rss_mb"] for x in runs)
            breakdown = " ".join(f"{k}={v}" for k, v in r["timings"].items() if k != "total")
            print(f"{head:<14} {info.name:<24} {r['seconds']:>7.2f} {mine['peak_rss_mb'][head]:>8}  "
                  f"{r['brain_voxels_changed']!s:>9} {r['face_fraction_changed']:>9.3f} {r['face_surface_change_mm']:>7.2f}  {breakdown}")
        qc, error = _child("--cohort-qc", info.name)
        if qc is None:
            print(f"{'samples':<14} {info.name:<24} failed: {error}")
            mine.setdefault("failed", {})["sample_qc"] = error
        else:
            mine["sample_qc"] = qc
            print(f"{'samples':<14} {info.name:<24} " + "; ".join(f"{t}: {json.dumps(v)}" for t, v in qc.items()))
        figures[info.name] = mine
    print(f"(peak MB = whole process peak RSS, incl. ~{_baseline()} MB for Python + numpy/SimpleITK/nibabel imports)")
    return {
        "measured_on": datetime.date.today().isoformat(),
        "machine": machine(),
        # other work on the machine slows every figure down: the 1-minute load average before and after, for reading them
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "command": "python benchmarks/defacers.py --write" + (f" --repeat {repeat}" if repeat > 1 else ""),
        "heads": {key: {"label": label, "about": about} for key, (_, label, about) in HEADS.items()},
        "cohorts": {key: {"label": label, "about": f"{about}, {_volumes(figures, key)} volumes"} for key, (label, about) in COHORTS.items()},
        "defacers": figures,
    }


def write_readme(figures: dict) -> None:
    from defacers.catalog import TABLE_END, TABLE_START, readme_table

    text = README.read_text(encoding="utf-8")
    if TABLE_START not in text or TABLE_END not in text:
        sys.exit(f"{README}: no {TABLE_START} ... {TABLE_END} block to rewrite")
    before, rest = text.split(TABLE_START, 1)
    after = rest.split(TABLE_END, 1)[1]
    README.write_text(before + readme_table(figures) + after, encoding="utf-8")
    print(f"rewrote the defacer table in {README}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", nargs=2, metavar=("HEAD", "DEFACER"), help=argparse.SUPPRESS)
    parser.add_argument("--cohort-qc", metavar="DEFACER", help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=1, help="runs per (head, defacer); the fastest is kept")
    parser.add_argument("--write", action="store_true", help="store the figures in defacers/measured.json and rewrite the README table")
    parser.add_argument("--table-only", action="store_true", help="only rewrite the README table from defacers/measured.json")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(*args.one)))
        return
    if args.cohort_qc:
        print(json.dumps(cohort_qc(args.cohort_qc)))
        return
    if args.table_only:
        write_readme(json.loads(MEASURED.read_text()))
        return
    figures = measure(args.repeat)
    if args.write:
        MEASURED.write_text(json.dumps(figures, indent=1, sort_keys=False) + "\n", encoding="utf-8")
        print(f"wrote {MEASURED}")
        write_readme(figures)


def _volumes(figures: dict, cohort: str) -> int:
    return max((f["sample_qc"][cohort].get("volumes", 0) for f in figures.values() if cohort in f.get("sample_qc", {})), default=0)


def _baseline() -> int:
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); import defacers, harness.imaging.io, resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)"
    return int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() or 0)


if __name__ == "__main__":
    main()
