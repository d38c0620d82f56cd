"""Time `leaderboard.build` on synthetic runs: TASKS tasks x DEFACERS defacers x MODELS models x CASES cases.

    python benchmarks/leaderboard_build.py [--tasks 4 --defacers 3 --models 2 --cases 50]

Prints the time to write the runs, to aggregate them, and to build the whole leaderboard (tables, plots, site),
and the size of the output. The tasks are the measurement task of the tests under different names.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.results.aggregate import aggregate_runs  # noqa: E402
from leaderboard import build  # noqa: E402
from tests.leaderboard_fixtures import MeasureTask, qc_line, sample, write_run  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    for name, default in (("tasks", 4), ("defacers", 3), ("models", 2), ("cases", 50)):
        ap.add_argument(f"--{name}", type=int, default=default)
    ap.add_argument("--keep", type=Path, help="copy the built site here to look at it")
    args = ap.parse_args()
    rng = random.Random(0)
    defacers = ["quickshear", "deface", "reface", "mri_reface", "afni"][: args.defacers]
    tasks = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        runs = []
        n_samples = 0
        for k in range(args.tasks):
            task = type(f"Task{k}", (MeasureTask,), {"name": f"task-{k}"})()
            tasks[task.name] = task
            samples, qc = [], []
            for i in range(args.cases):
                case, truth = f"case-{i:04d}", 0.22 + 0.2 * rng.random()
                for d in defacers:
                    qc.append(qc_line(task.name, case, d, rng.uniform(0.6, 1.0), rng.uniform(4, 15), rng.randint(0, 900)))
                for m in range(args.models):
                    base = truth + rng.gauss(0, 0.02)
                    samples.append(sample(task, case, "original", f"model-{m}", base, truth=truth))
                    for j, d in enumerate(defacers):
                        ok = rng.random() > 0.05
                        samples.append(sample(task, case, d, f"model-{m}", base + 0.01 * j + rng.gauss(0, 0.01) if ok else None,
                                              status="ok" if ok else "failed", truth=truth))
            n_samples += len(samples)
            task_run = write_run(root / "runs" / task.name, samples, qc)
            # write_run's manifest names the toy task; name this one instead
            import json
            m = json.loads((task_run / "manifest.json").read_text())
            m["tasks"] = {task.name: {"task": task.name, "version": "1"}}
            (task_run / "manifest.json").write_text(json.dumps(m))
            runs.append(task_run)
        t1 = time.perf_counter()
        aggregate_runs(runs, tasks)
        t2 = time.perf_counter()
        result = build(runs, root / "site", tasks=tasks, salt_dir=root / "salts")
        t3 = time.perf_counter()
        files = [p for p in (root / "site").rglob("*") if p.is_file()]
        size = sum(p.stat().st_size for p in files)
        if args.keep:
            import shutil

            shutil.rmtree(args.keep, ignore_errors=True)
            shutil.copytree(root / "site", args.keep)
        print(f"{args.tasks} tasks x {args.defacers} defacers x {args.models} models x {args.cases} cases = "
              f"{n_samples} samples")
        print(f"write runs        {t1 - t0:6.2f} s")
        print(f"aggregate only    {t2 - t1:6.2f} s")
        print(f"build leaderboard {t3 - t2:6.2f} s  ({len(result.boards)} boards, {len(files)} files, {size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
