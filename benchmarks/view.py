"""`harness view` speed: how long a 2,000-sample run's overview takes to open, and a sample page with 32 images on a
warm render cache (targets: <= 2 s and <= 1 s). Prints the figures; not a test.

    python benchmarks/view.py [--samples 2000] [--keep]

What it measures on: a real agent run on one full-size phantom of the built-in nph-evans sample cohort, made by the
runner with a scripted agent that views 32 axial slices (512 px, each re-rendered by the view and checked against
its sha256) and then submits, plus a single-mode run of the task's baseline. The 2,000-sample run is written through
the run store's writer from those real samples, varied (case ids, answers, scores, statuses) so that every sample,
pair and list row is distinct.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.core.sample import Sample  # noqa: E402
from harness.data.sample_cohort import write_sample_cohort  # noqa: E402
from harness.imaging.render_cache import use_render_cache  # noqa: E402
from harness.engine.runner import EvalConfig, Runner  # noqa: E402
from harness.models.scripted import call, register_scripted, steps_policy  # noqa: E402
from harness.results.run_summary import summarize_run  # noqa: E402
from harness.store.run_store import RunStore, read_json, read_samples  # noqa: E402
from harness.view.catalog import load_runs  # noqa: E402
from harness.view.images import ImageSource, shown_images  # noqa: E402
from harness.view.pages import View, slug  # noqa: E402
from harness.view.server import serve_in_thread  # noqa: E402
from tests.view_fixtures import DEFACER, blank_defacer  # noqa: E402

IMAGES = 32


@register_scripted("view-bench-32-slices")
def _look_32_times(spec):
    """View 32 axial slices in one step, then submit a fixed answer."""
    views = [call("view_slice", 1, i, plane="axial", index=10 + 2 * i) for i in range(IMAGES)]
    return steps_policy([views, call("submit", 2, evans_ratio=0.25, frontal_horn_width_mm=30.0,
                                     inner_skull_width_mm=120.0, slice_index=100, nph=False)])


def real_runs(root: Path) -> tuple[list[Path], Path]:
    cohort = write_sample_cohort("nph-evans", n=1, seed=3, out=root / "cohort")
    cache = root / "cache"
    runs = []
    for mode, models in (("agent", ["scripted:view-bench-32-slices"]), ("single", [])):
        cfg = EvalConfig(tasks=["nph-evans"], defacers=[DEFACER], models=models, cohort=str(cohort), mode=mode,
                         out=root / f"runs-{mode}", cache_dir=cache, workers=0, quiet=True)
        runs.append(Runner(cfg, argv=["harness", "eval", "--benchmark"]).run(summarize=summarize_run).run_dir)
    return runs, cache


def big_run(sources: list[Path], out: Path, n: int) -> Path:
    """n samples varied from the real ones: case k of each (model, mode) gets an original and a defaced sample."""
    real = [s for run in sources for s in read_samples(run)]
    manifest = read_json(sources[0] / "manifest.json")
    samples: list[Sample] = []
    k = 0
    while len(samples) < n:
        for base in real:
            status = "failed" if k % 37 == 0 else base.status
            jitter = (k % 11) / 1000
            answer = dict(base.answer, evans_ratio=base.answer["evans_ratio"] + jitter) if isinstance(base.answer, dict) else base.answer
            samples.append(dataclasses.replace(
                base, sample_id=f"{base.sample_id[:16]}-{k:05d}", case_id=f"bench-{k // 2:05d}", status=status,
                answer=None if status == "failed" else answer,
                scores={m: (v + jitter if isinstance(v, float) else v) for m, v in base.scores.items()} if status != "failed" else {},
                error={"kind": "timeout", "message": "model did not answer in 900 s"} if status == "failed" else base.error))
            k += 1
    with RunStore.open(out, manifest) as store:
        for start in range(0, n, 200):
            store.append_many(samples[start:min(start + 200, n)])
        store.finish()
    return out


def page_with_images(view: View, run, sample, shown) -> tuple[float, bytes]:
    """Seconds to serve the sample page and then each of its images, as a browser asks for them; the page."""
    server, _ = serve_in_thread(view)
    base = f"http://127.0.0.1:{server.server_address[1]}/runs/{run.rid}"
    t0 = time.perf_counter()
    page = fetch(f"{base}/sample/{slug(sample.sample_id)}.html")
    for image in shown:
        fetch(f"{base}/image/{slug(sample.sample_id)}-{image.number}.png")
    took = time.perf_counter() - t0
    server.shutdown()
    server.server_close()
    return took, page


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as reply:
        return reply.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and print it")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="view-bench-"))
    try:
        with blank_defacer():
            t0 = time.perf_counter()
            runs, cache = real_runs(root)
            print(f"real runs made in {time.perf_counter() - t0:.1f} s")
            big = big_run(runs, root / "runs-big" / "big", args.samples)
            size = (big / "samples.jsonl").stat().st_size / 1e6
            print(f"{args.samples}-sample run written through the store: {size:.1f} MB of samples.jsonl")

            t0 = time.perf_counter()
            view = View(load_runs([big]), ImageSource(cache))
            loaded = time.perf_counter() - t0
            server, _ = serve_in_thread(view)
            base = f"http://127.0.0.1:{server.server_address[1]}"
            rid = next(iter(view.runs))
            t1 = time.perf_counter()
            fetch(f"{base}/runs/{rid}/index.html")
            overview = time.perf_counter() - t1
            print(f"overview of {args.samples} samples: {loaded + overview:.2f} s to open "
                  f"(read and index the run {loaded:.2f} s, page {overview * 1000:.0f} ms; target <= 2 s)")
            for page in ("samples.html", "pairs.html"):
                t1 = time.perf_counter()
                body = fetch(f"{base}/runs/{rid}/{page}")
                print(f"  {page}: {(time.perf_counter() - t1) * 1000:.0f} ms, {len(body) / 1e6:.1f} MB")
            server.shutdown()
            server.server_close()

            [agent] = load_runs([runs[0]])
            sample = next(s for s in agent.samples.values() if s.condition == DEFACER)
            shown = shown_images(sample)
            cases = (("render cache off: volumes read, every image rendered", True),
                     ("warm render cache (what harness eval wrote), a fresh view", False))
            for label, fresh_renders in cases:
                view = View([agent], ImageSource(cache))
                if fresh_renders:  # point the render cache at an empty folder: every image is made from its volume
                    use_render_cache(root / "no-renders")
                took, page = page_with_images(view, agent, sample, shown)
                print(f"sample page with {len(shown)} images, {label}: {took:.2f} s" + ("" if fresh_renders else "; target <= 1 s"))
            took, page = page_with_images(view, agent, sample, shown)
            print(f"  the same page again (renders in memory): {took:.2f} s")
            matching = page.decode().count('data-status="match"')
            print(f"  images matching their stored sha256: {matching}/{len(shown)}")
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
