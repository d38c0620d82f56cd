"""Reading a CT series again: parsing the DICOM files vs the converted copies it could be kept as.

For each DICOM series of the ct-report sample cohort: the parse (pydicom, rescale, canonical orientation), then the
read of the same voxels kept as .npy in float32, as .npy in the smallest exact dtype (what imaging.io.converted keeps:
int16 for these CTs), and as .nii.gz; each read includes the sha256 content-hash check a converted copy must pass (the
parse pays it too: a remembered volume is checked against its hash). Disk is the bytes of one copy. Prints the
figures per series and their medians; best of 5 reads, files in the page cache.

    python benchmarks/converted.py [--cache-dir DIR]   (the sample cohort is generated there on first use)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.scoring import timed  # noqa: E402
from harness.core.volume import Volume  # noqa: E402
from harness.imaging.io import load_nifti, load_volume, save_nifti  # noqa: E402
from harness.imaging.io.converted import entry_path, keep_converted, read_converted  # noqa: E402


def best_ms(fn, n: int = 5) -> float:
    return 1000 * timed(fn, n)


def hashed(volume: Volume) -> str:
    volume.__dict__.pop("content_hash", None)  # a cached_property: time the hash, not the lookup
    return volume.content_hash


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache-dir", default=None, help="where the sample cohort is (or is generated)")
    args = ap.parse_args()
    from harness.data import load_cohort

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cohort = load_cohort(None, "ct-report", cache_dir=Path(args.cache_dir) if args.cache_dir else tmp / "cache")
        print("series               shape          parse ms | npy float32 MB  ms | npy exact MB  ms dtype | nii.gz MB  ms")
        rows = []
        for case in cohort.cases:
            series, _ = case.source("ct")
            parse = best_ms(lambda: hashed(load_volume(series, modality="CT")), 3)
            volume = load_volume(series, modality="CT")
            record = {"content_hash": volume.content_hash, "modality": volume.modality, "shape": volume.shape,
                      "affine": volume.affine, "meta": dict(volume.meta)}
            keep_converted(tmp, volume)
            exact = entry_path(tmp, volume.content_hash)
            exact_ms = best_ms(lambda: read_converted(tmp, record))
            np.save(tmp / "f32.npy", volume.data)
            f32_ms = best_ms(lambda: hashed(volume.with_data(np.load(tmp / "f32.npy"))))
            gz = save_nifti(volume, tmp / "ct.nii.gz")
            gz_ms = best_ms(lambda: hashed(load_nifti(gz, modality="CT")))
            row = (parse, (tmp / "f32.npy").stat().st_size / 1e6, f32_ms, exact.stat().st_size / 1e6, exact_ms,
                   gz.stat().st_size / 1e6, gz_ms)
            rows.append(row)
            print(f"{case.id:20} {str(volume.shape):14} {row[0]:6.0f}    | {row[1]:9.1f} {row[2]:5.1f} | "
                  f"{row[3]:7.1f} {row[4]:5.1f} {np.load(exact, mmap_mode='r').dtype!s:7} | {row[5]:6.1f} {row[6]:5.1f}")
        med = np.median(np.array(rows), axis=0)
        print(f"{'median':35} {med[0]:6.0f}    | {med[1]:9.1f} {med[2]:5.1f} | {med[3]:7.1f} {med[4]:5.1f}         | "
              f"{med[5]:6.1f} {med[6]:5.1f}")
        print(f"disk for the {len(rows)} series: npy float32 {sum(r[1] for r in rows):.0f} MB, npy exact (kept) "
              f"{sum(r[3] for r in rows):.0f} MB, nii.gz {sum(r[5] for r in rows):.0f} MB")


if __name__ == "__main__":
    main()
