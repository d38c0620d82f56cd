"""Render throughput: single-slice 512x512 PNGs per second from a 256^3 head volume, on one core.

Target (issue #2): >= 100 images/s. The head is the pydeface average template (a real head with a face, shipped in
the pydeface wheel) padded to 256^3; a noise volume is also timed as the worst case for PNG compression.
Run: python benchmarks/render.py
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import time
from importlib import resources

import numpy as np

from harness.imaging.io import load_volume
from harness.imaging.render import RenderSpec, Slices, render
from harness.core.volume import Volume


def head_256() -> Volume:
    head = load_volume(str(resources.files("pydeface") / "data" / "mean_reg2mean.nii.gz"))
    data = np.zeros((256, 256, 256), np.float32)
    off = [(256 - n) // 2 for n in head.shape]
    data[off[0]:off[0] + head.shape[0], off[1]:off[1] + head.shape[1], off[2]:off[2] + head.shape[2]] = head.data
    return Volume(data, head.affine, "MR", {})


def noise_256() -> Volume:
    rng = np.random.default_rng(0)
    return Volume(rng.normal(0, 100, (256, 256, 256)).astype(np.float32), np.eye(4), "MR", {})


def throughput(volume: Volume, plane: str) -> tuple[int, float]:
    specs = [RenderSpec(plane=plane, slices=Slices("index", (k,)), size=512) for k in range(0, 256, 2)]
    render(volume, specs[0])  # the auto window is computed once per volume
    t0 = time.perf_counter()
    total = sum(len(render(volume, s)) for s in specs)
    return total, time.perf_counter() - t0


def main() -> None:
    for name, volume in (("head", head_256()), ("noise", noise_256())):
        for plane in ("axial", "coronal", "sagittal"):
            n, dt = throughput(volume, plane)
            print(f"{name:5s} {plane:9s} {n} PNGs 512x512 in {dt:.2f} s -> {n / dt:6.0f} images/s (target >= 100 on the head)")
    volume = head_256()
    spec = RenderSpec(plane="axial", slices=Slices.parse("every:16"), montage=(4, 4), size=256, labels=True)
    t0 = time.perf_counter()
    for _ in range(20):
        render(volume, spec)
    print(f"head  montage 4x4 tiles of 256 px with labels: {20 / (time.perf_counter() - t0):.1f} montages/s")


if __name__ == "__main__":
    main()
