"""Run store figures: durable append throughput (one fsync per sample) and the cost of resuming a 100k-sample run.

    python benchmarks/store.py [--appends 2000] [--samples 100000] [--dir /tmp]

Prints samples/s for appends, and for a run of N samples: the time and memory to open it for resume (scan +
lock + repair check), to load every sample, and to plan + match a grid of N items against it.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.engine.grid import Condition, plan_grid, resume_plan  # noqa: E402
from harness.core.sample import Sample  # noqa: E402
from harness.store.run_store import SAMPLES, RunStore  # noqa: E402


def realistic(item) -> Sample:
    """A sample shaped like a ct-report agent run: a few turns, a report answer, image references."""
    report = "No acute intracranial haemorrhage. Ventricles and sulci are normal for age. " * 6
    transcript = [
        {"role": "system", "content": "You are a radiologist..." * 4},
        {"role": "user", "content": [{"type": "text", "text": "Report this head CT."},
                                     {"type": "image", "sha256": "a" * 64, "render_spec": "b" * 64}]},
        {"role": "assistant", "tool_calls": [{"name": "render", "arguments": {"plane": "axial", "slices": "every:5mm"}}]},
        {"role": "tool", "content": [{"type": "image", "sha256": "c" * 64, "render_spec": "d" * 64}]},
        {"role": "assistant", "content": report},
    ]
    return Sample(item.sample_id, item.task, item.case_id, item.condition, item.model, item.mode,
                  defacer=dict(item.defacer), answer={"report": report}, scores={"f1": 0.8, "rougeL": 0.6},
                  timings={"deface": 0.0, "render": 0.05, "model": 1.2, "score": 0.01},
                  tokens={"prompt": 1500, "completion": 200}, transcript=transcript,
                  cache_keys={"volume": "e" * 64, "render": "f" * 64, "request": "0" * 64})


def grid_of(n: int):
    conditions = [Condition("original"), Condition("reface", {"name": "reface", "version": "0.3"})]
    return plan_grid({"ct-report": [f"case{i:06d}" for i in range(n // 2)]}, conditions, ["scripted"]).items


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--appends", type=int, default=2000)
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--dir", default=None, help="where to put the temporary runs (default: system temp)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tmp = Path(tmp)
        items = grid_of(args.appends)
        samples = [realistic(i) for i in items]
        line_bytes = len(json.dumps(samples[0].to_dict(), separators=(",", ":")).encode()) + 1
        with RunStore.open(tmp / "append", {"config": {}}) as store:
            t0 = time.perf_counter()
            for s in samples:
                store.append(s)
            dt = time.perf_counter() - t0
        print(f"append (fsync each): {len(samples)} samples of {line_bytes} B in {dt:.2f} s = "
              f"{len(samples) / dt:.0f} samples/s, {dt / len(samples) * 1e6:.0f} us/sample")
        with RunStore.open(tmp / "batched", {"config": {}}) as store:
            t0 = time.perf_counter()
            for k in range(0, len(samples), 64):
                store.append_many(samples[k:k + 64])
            dt = time.perf_counter() - t0
        print(f"append_many (batches of 64, one fsync each): {len(samples) / dt:.0f} samples/s")

        # A big finished run, written without fsync (the layout is the same) to keep the benchmark short.
        big = tmp / "big"
        t0 = time.perf_counter()
        items = grid_of(args.samples)
        plan_s = time.perf_counter() - t0
        RunStore.open(big, {"config": {}}).close()
        with open(big / SAMPLES, "w") as fh:
            for item in items:
                fh.write(json.dumps(realistic(item).to_dict(), separators=(",", ":")) + "\n")
        size_mb = (big / SAMPLES).stat().st_size / 2**20
        base = rss_mb()
        t0 = time.perf_counter()
        store = RunStore.open(big)
        open_s = time.perf_counter() - t0
        open_rss = rss_mb() - base
        t0 = time.perf_counter()
        plan = resume_plan(items, store)
        match_s = time.perf_counter() - t0
        assert not plan.todo and plan.done == len(items)
        t0 = time.perf_counter()
        loaded = store.load_samples()
        load_s = time.perf_counter() - t0
        store.close()
        assert len(loaded) == len(items)
        print(f"resume of {len(items)} samples ({size_mb:.0f} MB samples.jsonl): open+scan {open_s:.2f} s "
              f"(+{open_rss:.0f} MB peak RSS), plan_grid {plan_s:.2f} s, match against store {match_s:.3f} s")
        print(f"load_samples (one Sample per id): {load_s:.2f} s, peak RSS now {rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
