"""The Ray executor and model replicas: figures, not a test.

    python benchmarks/ray_cluster.py [--volumes 12] [--resolution-scale 1.6] [--requests 600] [--latency-ms 50]

1. Defacing N phantom volumes (quickshear, fresh cache) on a local Ray cluster of 1 node, then 2 nodes (1 CPU each,
   all on 127.0.0.1): jobs/s. Each node's worker is warmed first (imports), so the figure is the jobs themselves.
2. Ray's overhead per job: a job that does nothing, one at a time (latency) and 200 in flight (throughput), against
   calling it in this process.
3. Requests/s to 1 vs 3 stub replicas (tests/fixtures/stub_replica.py) with the same latency per request and the
   same concurrency limit per replica.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.data.sample_cohort import write_sample_cohort  # noqa: E402
from harness.engine.deface_stage import deface_job  # noqa: E402
from harness.engine.ray_executor import RayExecutor  # noqa: E402
from tests.fixtures.stub_replica import start_replica  # noqa: E402
from tests.ray_cluster import LocalCluster, free_port  # noqa: E402


def deface_rate(executor: RayExecutor, volumes: list[Path], cache: Path, nodes: int) -> tuple[float, dict]:
    warm = {i: ("/nonexistent.nii.gz", "MR", "quickshear", {}, str(cache)) for i in range(4 * nodes)}
    list(executor.map(deface_job, warm))  # each node's worker imports harness once
    jobs = {str(v): (str(v), "MR", "quickshear", {}, str(cache)) for v in volumes}
    t0 = time.perf_counter()
    placements = [p.node[:8] for _, res, p in executor.map(deface_job, jobs) if res["status"] == "ok"]
    wall = time.perf_counter() - t0
    return len(placements) / wall, {n: placements.count(n) for n in sorted(set(placements))}


def overhead(executor: RayExecutor, n: int = 200) -> tuple[float, float, float]:
    t0 = time.perf_counter()
    for i in range(n):
        abs(-i)
    local = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    for i in range(50):
        list(executor.map(abs, {i: (-i,)}))
    one_at_a_time = (time.perf_counter() - t0) / 50
    t0 = time.perf_counter()
    list(executor.map(abs, {i: (-i,) for i in range(n)}))
    in_flight = (time.perf_counter() - t0) / n
    return local, one_at_a_time, in_flight


def request_rate(urls: list[str], n: int, limit: int) -> float:
    from harness.models import Message, create_model, parse_model_spec

    async def main():
        model = create_model(parse_model_spec("openai-compatible:stub", base_urls=urls, max_concurrency=limit))
        await asyncio.gather(*(model.chat([Message.user(f"warm {i}")]) for i in range(limit * len(urls))))
        t0 = time.perf_counter()
        await asyncio.gather(*(model.chat([Message.user(f"question {i}")]) for i in range(n)))
        wall = time.perf_counter() - t0
        await model.aclose()
        return n / wall

    return asyncio.run(main())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--volumes", type=int, default=12)
    ap.add_argument("--resolution-scale", type=float, default=1.6, help="phantom voxel size factor (1: 1 mm)")
    ap.add_argument("--requests", type=int, default=600)
    ap.add_argument("--latency-ms", type=float, default=50.0)
    ap.add_argument("--limit", type=int, default=4, help="concurrency limit per replica")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")

    with tempfile.TemporaryDirectory(prefix="hbench") as tmp:
        tmp = Path(tmp)
        write_sample_cohort("nph-evans", n=args.volumes, seed=5, out=tmp / "cohort", resolution_scale=args.resolution_scale)
        volumes = sorted((tmp / "cohort").glob("cases/*/t1.nii.gz"))
        cluster = LocalCluster(free_port()).start(workers=0)
        try:
            executor = RayExecutor(cluster.address)
            one, where1 = deface_rate(executor, volumes, tmp / "cache1", 1)
            executor.close()
            cluster.add_worker()
            executor = RayExecutor(cluster.address)
            two, where2 = deface_rate(executor, volumes, tmp / "cache2", 2)
            local, single, flight = overhead(executor)
            executor.close()
        finally:
            cluster.stop()
    print(f"defacing {len(volumes)} phantom volumes (quickshear, resolution scale {args.resolution_scale:g}), 1 CPU per node")
    print(f"  1 node    {one:6.2f} jobs/s   jobs per node {list(where1.values())}")
    print(f"  2 nodes   {two:6.2f} jobs/s   jobs per node {list(where2.values())}   ({two / one:.2f}x)")
    print("Ray overhead per job (a job that does nothing)")
    print(f"  in this process        {local * 1e6:9.1f} us")
    print(f"  one at a time          {single * 1e3:9.2f} ms   (submit, run on a node, result back)")
    print(f"  200 in flight          {flight * 1e3:9.2f} ms   per job")

    ports = [free_port() for _ in range(3)]
    stubs = [start_replica(p, args.latency_ms / 1000, "Evans ratio 0.31") for p in ports]
    try:
        urls = [f"http://127.0.0.1:{p}/v1" for p in ports]
        r1 = request_rate(urls[:1], args.requests, args.limit)
        r3 = request_rate(urls, args.requests, args.limit)
    finally:
        for s in stubs:
            s.kill()
            s.wait()
    print(f"model requests: {args.requests} to stub replicas answering in {args.latency_ms:g} ms, limit {args.limit} per replica")
    print(f"  1 replica   {r1:7.1f} requests/s   (ceiling {args.limit / args.latency_ms * 1000:.0f})")
    print(f"  3 replicas  {r3:7.1f} requests/s   (ceiling {3 * args.limit / args.latency_ms * 1000:.0f}; {r3 / r1:.2f}x)")


if __name__ == "__main__":
    main()
