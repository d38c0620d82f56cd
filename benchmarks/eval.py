"""End-to-end figures for `harness eval`. Prints figures; not a test.

1. The scripted baseline on the built-in sample cohort (original + the given defacers), from an empty cache:
   wall time per case per condition and the share of each stage (deface / render / model / score).
2. The same command run again, as a user would (a new `harness eval` process; it continues the finished run): its
   wall time, process start included, as a share of the first run's (target <= 5 %); and --resume in-process:
   model calls, defacer runs (target 0, 0).
3. The same grid answered by a local zero-latency OpenAI-compatible stub: samples/s at concurrency 64 and the
   harness's own CPU time per sample (the stub answers instantly; unparsable replies are fine for this figure), with a
   cold and with a warm render cache (targets for ct-report: <= 150 ms cold, <= 20 ms warm).

    python benchmarks/eval.py [--task ct-report] [--defacer reface] [--limit 6] [--stub-repeats 20]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.models import free_port, run_stub  # noqa: E402
from harness.engine.runner import EvalConfig, Runner  # noqa: E402
from harness.results.run_summary import summarize_run  # noqa: E402


def run(cfg: EvalConfig):
    return Runner(cfg, argv=["benchmarks/eval.py"]).run(summarize=summarize_run)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="ct-report")
    ap.add_argument("--defacer", action="append", default=None)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--cache-dir", default=None, help="reuse a cache (the sample cohort is generated once per cache)")
    ap.add_argument("--stub-repeats", type=int, default=20, help="stub part: how many times to run the grid")
    args = ap.parse_args()
    defacers = args.defacer or ["reface"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cache = Path(args.cache_dir) if args.cache_dir else tmp / "cache"
        # the cohort is generated outside the timed runs: it is a one-off cost of the built-in data, not of eval
        from harness.data import load_cohort

        t0 = time.perf_counter()
        cohort = load_cohort(None, args.task, limit=args.limit, cache_dir=cache)
        print(f"sample cohort {cohort.name}: {len(cohort.cases)} cases ready in {time.perf_counter() - t0:.1f} s")
        base = dict(tasks=[args.task], defacers=defacers, limit=args.limit, cache_dir=cache, quiet=True)

        first = run(EvalConfig(out=tmp / "runs", **base))
        n_samples = sum(first.counts.values())
        per = first.wall_seconds / max(n_samples, 1)
        stages = first.stage_seconds
        total = sum(stages.values()) or 1.0
        print(f"1. scripted baseline, {len(cohort.cases)} cases x {1 + len(defacers)} conditions = {n_samples} samples "
              f"in {first.wall_seconds:.1f} s -> {per:.2f} s per case per condition")
        print("   stage share: " + ", ".join(f"{k} {100 * v / total:.0f}% ({v:.1f} s)" for k, v in stages.items()))
        print(f"   defacer runs {first.defacer_runs}, model calls {first.model_calls}, counts {first.counts}")

        argv = [sys.executable, "-m", "harness", "eval", "--task", args.task, *(a for d in defacers for a in ("--defacer", d)),
                "--out", str(tmp / "runs"), "--cache-dir", str(cache), "--quiet",
                *(["--limit", str(args.limit)] if args.limit else [])]
        t0 = time.perf_counter()
        rerun = subprocess.run(argv, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
        seconds = time.perf_counter() - t0
        continued = f"({n_samples} already done before this run)" in rerun.stdout + rerun.stderr
        print(f"2. the same command again (new process): {seconds:.2f} s = {100 * seconds / first.wall_seconds:.1f}% of "
              f"the first run; {'continued the finished run' if continued else 'DID NOT continue the run'} (rc {rerun.returncode})"
              + ("\n   (with --cache-dir the first run found defaced volumes and renders already made: the share is of a "
                 "short first run; run without --cache-dir for the target's figure)" if args.cache_dir else ""))
        again = run(EvalConfig(out=tmp / "runs", resume=first.run_dir, **base))
        print(f"   --resume in-process: {again.model_calls} model calls, {again.defacer_runs} defacer runs, "
              f"{again.wall_seconds:.2f} s = {100 * again.wall_seconds / first.wall_seconds:.1f}% of the first run")

        port = free_port()
        ready = mp.Event()
        stub = mp.Process(target=run_stub, args=(port, ready), daemon=True)
        stub.start()
        ready.wait(10)
        try:
            stub_figures(tmp, cache, base, f"http://127.0.0.1:{port}/v1", args.stub_repeats)
        finally:
            stub.terminate()


def stub_figures(tmp: Path, cache: Path, base: dict, url: str, repeats: int) -> None:
    """Part 3. Defaced volumes are cached (part 1 made them); each repeat is a new run directory, and the response
    cache is bypassed by a per-repeat seed so every sample really goes over HTTP. Cold: the render cache is wiped before
    each repeat, so every volume is read (a DICOM series parsed) and every image rendered; the defacer cache and the
    remembered volume hashes stay (part 1 made them: defacing is not what this part measures)."""
    from harness.models import Sampling

    for label, cold in (("cold render cache", True), ("warm render cache", False)):
        samples = wall = cpu = 0.0
        for r in range(repeats):
            if cold:
                shutil.rmtree(cache / "renders", ignore_errors=True)
            cfg = EvalConfig(out=tmp / "stub-runs", models=["openai-compatible:stub"], base_url=url, concurrency=64,
                             mode="single", sampling=Sampling(seed=1000 + r + 100_000 * cold, temperature=0.7), **base)
            c0 = time.process_time()
            out = run(cfg)
            cpu += time.process_time() - c0
            wall += out.wall_seconds
            samples += sum(out.counts.values())
        print(f"3. zero-latency stub, concurrency 64, {label}: {samples:.0f} samples in {wall:.1f} s -> "
              f"{samples / wall:.1f} samples/s; harness CPU {1000 * cpu / samples:.1f} ms per sample "
              f"(whole runs: planning, reading, rendering, requests, parsing, scoring, store)")


if __name__ == "__main__":
    main()
