"""The re-identification attack's acceptance figures: real heads, the sample cohort, seconds per (case, defacer).
(Run as a module: benchmarks/defacers.py would shadow the defacers package as a script.)

    python -m benchmarks.privacy [--task tumor-slice] [--defacers deface,quickshear,reface] [--cache-dir DIR]

Prints:
- real heads (the pydeface average head, Colin27): face in view or why not, faces found per view, the distance of
  each re-render to the head's own gallery face and to the other head, and the same for its refaced copy;
- the sample cohort of --task: originals detected, positive-control rank-1, and per defacer detection, rank-1,
  rank-5 (95 % CIs) and same-person share (harness privacy --json);
- seconds per (volume, condition) of the attack as computed (render + detect + embed; the pose fit is shared with
  the defacers in a run), from the cache entries it wrote.
Targets (issue 12): originals detected >= 90 %, control rank-1 >= 90 %, deface and quickshear detection <= 20 %,
reface rank-1 within the CI of chance; <= 2 s per (case, defacer) on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

import defacers
from defacers.template import pydeface_template
from harness.imaging.io import load_volume
from harness.imaging.face_render import GALLERY_VIEW
from harness.privacy.cohort_attack import attack_cohort, cohort_items
from harness.privacy.volume_faces import attack_volume

COLIN27 = Path("/usr/share/mricron/templates/ch2.nii.gz")


def real_heads(cache: Path) -> None:
    heads = {"pydeface-mean": pydeface_template().head}
    if COLIN27.exists():
        heads["colin27"] = load_volume(COLIN27)
    reface = defacers.get("reface")
    found = {}
    for name, head in heads.items():
        original = attack_volume(head, head, defacers.get("original").identity, cache)
        if original.no_face:
            print(f"{name}: {original.no_face}")
            continue
        refaced = attack_volume(head, defacers.deface_cached(reface, head, cache).volume, reface.identity, cache)
        found[name] = (original, refaced)
        views = sum(f.detected for f in original.findings.values())
        print(f"{name}: faces found in {views}/{len(original.findings)} views")
    for name, (original, refaced) in found.items():
        gallery = original.findings[GALLERY_VIEW.name].embedding
        if gallery is None:
            print(f"{name}: no face found in the gallery view")
            continue
        own = [np.linalg.norm(np.subtract(e, gallery)) for n, f in original.findings.items()
               if n != GALLERY_VIEW.name and (e := f.embedding) is not None]
        print(f"{name}: re-renders within {max(own):.2f} of its gallery face (same person below 0.60)")
        ref = [np.linalg.norm(np.subtract(e, gallery)) for e in refaced.embeddings]
        print(f"{name} refaced: nearest view {min(ref):.2f} from the original" if ref else f"{name} refaced: no face found")
        for other, (o2, _) in found.items():
            if other != name and (e2 := o2.findings[GALLERY_VIEW.name].embedding) is not None:
                print(f"{name} vs {other}: {np.linalg.norm(np.subtract(e2, gallery)):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", default="tumor-slice")
    parser.add_argument("--defacers", default="deface,quickshear,reface")
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: a fresh temporary folder (cold)")
    args = parser.parse_args()
    cache = args.cache_dir or Path(tempfile.mkdtemp(prefix="privacy-bench-"))
    real_heads(cache)
    items = cohort_items(None, args.task, limit=None, cache_dir=cache)
    report = attack_cohort(items, args.defacers.split(","), cache)
    report.pop("attack")
    print(json.dumps(report, indent=1))
    seconds = [json.loads(p.read_text()).get("seconds", 0.0) for p in (cache / "face-attack").glob("*.json")]
    seconds = [s for s in seconds if s > 0]
    if seconds:
        print(f"attack seconds per (volume, condition): mean {np.mean(seconds):.2f}, max {np.max(seconds):.2f} "
              f"over {len(seconds)}")


if __name__ == "__main__":
    main()
