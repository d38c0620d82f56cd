"""Harness overhead per model request, and response-cache lookup time. Prints figures; not a test.

A zero-latency OpenAI-compatible stub runs in its own process (raw asyncio HTTP/1.1, canned reply); the harness
sends N chat requests, each with its own 512x512 PNG rendered from a head volume, at concurrency C. What is measured
is everything the harness does per request: image limits, cache-key decisions, base64 data URL (once per image),
JSON, HTTP, reply parsing, retries bookkeeping, adaptive concurrency.

    python benchmarks/models.py [--requests 2000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import resource
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPLY = json.dumps({
    "id": "cmpl-bench", "object": "chat.completion", "created": 0, "model": "stub",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Evans ratio 0.31"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 300, "completion_tokens": 6, "total_tokens": 306},
}).encode()
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(REPLY), REPLY)


class StubProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buf, self.need = transport, bytearray(), None

    def data_received(self, data):
        self.buf += data
        while True:
            if self.need is None:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(self.buf[:end]).lower()
                i = head.find(b"content-length:")
                length = int(head[i + 15:head.find(b"\r\n", i) if head.find(b"\r\n", i) > 0 else None]) if i >= 0 else 0
                self.need = end + 4 + length
            if len(self.buf) < self.need:
                return
            del self.buf[: self.need]
            self.need = None
            self.transport.write(RESPONSE)


def run_stub(port: int, ready):
    async def main():
        server = await asyncio.get_running_loop().create_server(StubProtocol, "127.0.0.1", port, backlog=1024)
        ready.set()
        await server.serve_forever()

    asyncio.run(main())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def images(n: int):
    from harness.models import ImagePart
    from harness.imaging.render import RenderSpec, Slices, render

    colin = Path("/usr/share/mricron/templates/ch2.nii.gz")
    if colin.exists():
        from harness.imaging.io import load_volume

        vol = load_volume(colin)
    else:
        from tests.conftest import make_head

        vol = make_head(shape=(128, 128, 128), spacing=(1.5, 1.5, 1.5))
    # Colin27's coronal slices are 181 x 181 mm: every image is exactly 512x512
    return [ImagePart.from_rendered(img) for img in render(vol, RenderSpec(plane="coronal", slices=Slices("all"), size=512))][:n]


async def bench_requests(base_url: str, imgs, n: int, concurrency: int):
    from harness.models import Message, Sampling, create_model, parse_model_spec

    spec = parse_model_spec("openai-compatible:stub", base_url=base_url, max_concurrency=concurrency)
    model = create_model(spec)
    sampling = Sampling(max_tokens=16)
    latencies = []

    async def one(i):
        reply = await model.chat([Message.user(f"Question {i}: estimate the Evans ratio.", imgs[i % len(imgs)])], sampling=sampling)
        latencies.append(reply.latency_s)  # in flight, not waiting for a concurrency slot
        assert reply.text

    await asyncio.gather(*(one(i) for i in range(min(n, 64))))  # warm up connections
    latencies.clear()
    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    await model.aclose()
    return wall, cpu, latencies


async def bench_bare_openai(base_url: str, imgs, n: int, concurrency: int):
    """The same requests from a bare AsyncOpenAI loop (one client, a semaphore, the image as a data URL): the floor
    the model layer is compared with."""
    import base64

    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0)
    urls = ["data:image/png;base64," + base64.b64encode(img.png).decode("ascii") for img in imgs]
    sem = asyncio.Semaphore(concurrency)

    async def one(i):
        async with sem:
            reply = await client.chat.completions.create(model="stub", max_tokens=16, messages=[{"role": "user", "content": [
                {"type": "text", "text": f"Question {i}: estimate the Evans ratio."},
                {"type": "image_url", "image_url": {"url": urls[i % len(urls)]}}]}])
        assert reply.choices[0].message.content

    await asyncio.gather(*(one(i) for i in range(min(n, 64))))  # warm up connections
    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    await client.close()
    return wall, cpu


def bench_cache(imgs, n: int):
    from harness.models import Message, Reply, ResponseCache, Sampling, parse_model_spec, request_key

    spec = parse_model_spec("vllm:Qwen/Qwen2.5-VL-7B-Instruct")
    with tempfile.TemporaryDirectory() as tmp:
        cache = ResponseCache(Path(tmp) / "r.sqlite")
        requests = [[Message.system("You are a radiologist."), Message.user(f"Case {i}: estimate the Evans ratio.", imgs[i % len(imgs)])] for i in range(n)]
        reply = Reply("Evans ratio 0.31" * 20)
        for i, msgs in enumerate(requests):
            cache.put(request_key(spec, msgs, [], Sampling()), spec.model, reply)
        t0 = time.perf_counter()
        keys = [request_key(spec, msgs, [], Sampling()) for msgs in requests]
        t_key = (time.perf_counter() - t0) / n
        t0 = time.perf_counter()
        hits = sum(cache.get(k) is not None for k in keys)
        t_get = (time.perf_counter() - t0) / n
        cache.close()
    return t_key, t_get, hits


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=64)
    args = ap.parse_args()

    t0 = time.perf_counter()
    imgs = images(600)
    sizes = [len(i.png) for i in imgs]
    print(f"images: {len(imgs)} distinct renders, {imgs[0].width}x{imgs[0].height} px, PNG {statistics.mean(sizes) / 1024:.0f} KiB mean "
          f"(prepared in {time.perf_counter() - t0:.1f} s)")

    port = free_port()
    ready = mp.Event()
    stub = mp.Process(target=run_stub, args=(port, ready), daemon=True)
    stub.start()
    try:
        ready.wait(30)
        wall, cpu, lat = asyncio.run(bench_requests(f"http://127.0.0.1:{port}/v1", imgs, args.requests, args.concurrency))
        bare_wall, bare_cpu = asyncio.run(bench_bare_openai(f"http://127.0.0.1:{port}/v1", imgs, args.requests, args.concurrency))
    finally:
        stub.terminate()
        stub.join(5)
    lat.sort()
    print(f"requests: {args.requests} at concurrency {args.concurrency} against a zero-latency stub (cores: {os.cpu_count()})")
    print(f"  throughput        {args.requests / wall:8.1f} requests/s   (target >= 200)")
    print(f"  harness CPU       {cpu / args.requests * 1000:8.2f} ms per request (client process)")
    print(f"  in-flight p50/p99 {lat[len(lat) // 2] * 1000:8.1f} / {lat[int(len(lat) * 0.99)] * 1000:.1f} ms")
    print(f"  peak RSS          {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:8.0f} MiB")
    print(f"bare AsyncOpenAI loop, same stub and images: {args.requests / bare_wall:.1f} requests/s, "
          f"{bare_cpu / args.requests * 1000:.2f} ms CPU per request -> the model layer costs "
          f"{cpu / bare_cpu:.2f}x its CPU (target <= 0.6x)")

    t_key, t_get, hits = bench_cache(imgs, 5000)
    print(f"response cache: 5000 entries, {hits} hits")
    print(f"  key (messages with image hashes + tools + sampling)  {t_key * 1e6:7.1f} us per request")
    print(f"  SQLite lookup + reply decode                         {t_get * 1e6:7.1f} us per request   (target < 1000)")


if __name__ == "__main__":
    main()
