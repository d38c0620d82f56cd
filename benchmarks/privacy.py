"""The re-identification attack's acceptance figures: real heads, the sample cohort, seconds per (case, defacer).
(Run as a module: benchmarks/defacers.py would shadow the defacers package as a script.)

    python -m benchmarks.privacy [--task tumor-slice] [--defacers deface,quickshear,reface] [--cache-dir DIR]
    python -m benchmarks.privacy --choose-hog-score [--cache-dir DIR]   (how the probes' HOG score was chosen)

Prints:
- real heads (the pydeface average head, Colin27): face in view or why not, faces found per view, the distance of
  each re-render to the head's own gallery face and to the other head, and the same for its refaced copy; a head
  with no face in view is also rendered without that check, with each view's best HOG and CNN scores;
- the sample cohort of --task (`--task all`: every volume of every task's phantoms, one gallery): originals
  detected, positive-control rank-1, and per defacer detection, rank-1, rank-5 (95 % CIs) and same-person share
  (harness privacy --json);
- the detector scores of the face candidates in probe views, originals against each defacer: detected faces (HOG at
  or above face_models.HOG_SURE, the CNN) and the unsure HOG candidates that are matched but not detected;
- how far apart dlib puts the cohort's faces: each volume's probe views from its own gallery faces (same person)
  and each person's gallery faces from every other person's, within and across face sources (phantom anatomy);
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
from harness.imaging.face_render import GALLERY_VIEW, PROBE_VIEWS, VIEWS, render_faces
from harness.privacy.cohort_attack import attack_findings, cohort_items, defaced_copy, defacer_for
from harness.privacy.face_models import face_models
from harness.privacy.pose import fitted_pose
from harness.privacy.reidentify import Gallery, probe_embeddings, reidentification_report
from harness.privacy.volume_faces import attack_volume, pose_cached

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
            beyond_the_view_check(name, head)
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


def beyond_the_view_check(name: str, head) -> None:
    """A head the attack calls "no face in view" (Colin27: its field of view ends between the nose and the mouth),
    rendered anyway in its fitted pose, with what is missing left absent: each view's best HOG score (the attack
    takes >= 0 as a candidate and, in a probe view, >= face_models.HOG_SURE as a face; near misses down to -1 listed)
    and CNN confidence, and what the attack would find: a face, an unsure candidate (matched, not detected), or none."""
    models = face_models()
    found = {}
    for render in render_faces(head, fitted_pose(head), VIEWS):
        hog, cnn = models.best_scores(render.image)
        f = found[render.view.name] = models.find(render.image, enrol=render.view == GALLERY_VIEW)
        what = "no face" if f.detector is None else f"a {f.detector} face" if f.sure else f"an unsure {f.detector} candidate"
        print(f"  {name} {render.view.name} without the view check: HOG best {hog}, CNN best {cnn}, attack finds {what}")
    gallery = found[GALLERY_VIEW.name].embedding
    if gallery is not None:
        own = [np.linalg.norm(np.subtract(f.embedding, gallery)) for n, f in found.items()
               if n != GALLERY_VIEW.name and f.embedding is not None]
        print(f"  {name} without the view check: {len(own)} re-renders found, within "
              f"{max(own) if own else float('nan'):.2f} of its gallery face")


def detection_scores(originals: dict, defaced: dict) -> None:
    """Detector scores of the probe views where the attack found a face: the originals' (real faces) against each
    defacer's. A minimum score could tell a defacer's leftovers from faces only if these ranges separated."""
    conditions = {"original": originals, **defaced}
    for name, faces in conditions.items():
        findings = [f for v in faces.values() if not isinstance(v, str) and not v.no_face for f in v.probes]
        for detector, sure in (("hog", True), ("cnn", True), ("hog", False)):
            scores = np.array([f.score for f in findings if f.detector == detector and f.sure == sure])
            kind = detector if sure else "unsure hog candidate (matched, not detected)"
            if len(scores):
                q = np.quantile(scores, [0.0, 0.1, 0.25, 0.5, 1.0])
                print(f"{name} {kind}: {len(scores)}/{len(findings)} probe renders, score min {q[0]:.2f}, "
                      f"10 % {q[1]:.2f}, 25 % {q[2]:.2f}, median {q[3]:.2f}, max {q[4]:.2f}")
            else:
                print(f"{name} {kind}: 0/{len(findings)} probe renders")


def face_distances(items, originals: dict) -> None:
    """Same-person and between-person embedding distances of the cohort's originals."""
    gallery = Gallery(originals)
    source = {item.subject.person: item.case.meta.get("anatomy", "?") for item in items}
    same = [d for s, f in originals.items() if not f.no_face and s.person in gallery.people
            for d in [gallery.rank(s.person, probe_embeddings(f))[1]] if np.isfinite(d)]
    between: dict[str, list[float]] = {}
    for s, f in originals.items():
        found = f.findings.get(GALLERY_VIEW.name)
        if f.no_face or found is None or found.embedding is None:
            continue
        d = gallery.distances(np.asarray([found.embedding]))
        for other, dist in zip(gallery.people, d):
            if other > s.person:
                kind = "same source" if source[other] == source[s.person] else "across sources"
                between.setdefault(kind, []).append(float(dist))
    if same:
        print(f"same person (probe views to own gallery): median {np.median(same):.2f}, max {np.max(same):.2f} "
              f"over {len(same)} volumes")
    for kind, values in sorted(between.items()):
        print(f"different people, {kind}: min {np.min(values):.2f}, median {np.median(values):.2f}, "
              f"max {np.max(values):.2f} over {len(values)} pairs")


def defaced_figure(items, defacer_names: list[str], path: Path, cache: Path) -> None:
    """README figure: renders of DEFACED volumes only (never an original's face), one row per defacer, for the first
    volume of each face source in the cohort (frontal, +15 and -30 degrees of yaw)."""
    from PIL import Image, ImageDraw

    firsts = {}
    for item in items:
        firsts.setdefault(item.case.meta.get("anatomy", "?"), item)
    shown = [v for v in VIEWS if v.name in ("front-lightB", "yaw+15-lightB", "yaw-30-lightB")]
    rows = []
    for item in firsts.values():
        original = item.case.load_remembered(item.role, cache)
        pose = pose_cached(original, cache)
        for name in defacer_names:
            defaced = defaced_copy(item, defacer_for(name, item.case, item.role), original, cache)
            images = [r.image for r in render_faces(defaced, pose, shown)]
            label = Image.new("L", (110, images[0].shape[0]))
            ImageDraw.Draw(label).text((4, images[0].shape[0] // 2), f"{name}\n{item.case.id}", fill=255)
            rows.append(np.concatenate([np.asarray(label)] + images, axis=1))
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)
    print(f"wrote {path}")


def choose_hog_score(tasks: list[str], cache: Path) -> None:
    """How face_models.HOG_SURE was chosen, on cohorts the acceptance figures are not measured on: per volume, is a
    face found in any probe view of its original and of its deface copy when a HOG candidate counts at score >= t
    and below it only with a CNN face. Prints, per t, those shares and Youden's J (originals minus deface); the
    largest J wins, the lowest t among equals."""
    models = face_models()
    views = {}  # (condition, volume) -> [(HOG best, CNN best)] per probe view
    for task in tasks:
        for item in cohort_items(None, task, limit=None, cache_dir=cache):
            original = item.case.load_remembered(item.role, cache)
            pose = pose_cached(original, cache)
            deface = defaced_copy(item, defacer_for("deface", item.case, item.role), original, cache)
            for condition, volume in (("original", original), ("deface", deface)):
                views[condition, item.subject.label] = [models.best_scores(r.image)
                                                        for r in render_faces(volume, pose, PROBE_VIEWS)]
    best = None
    for t in np.round(np.arange(0.0, 0.71, 0.05), 2):
        share = {c: np.mean([any((h is not None and h >= t) or n is not None for h, n in found)
                             for (cond, _), found in views.items() if cond == c]) for c in ("original", "deface")}
        j = share["original"] - share["deface"]
        best = (j, t) if best is None or j > best[0] + 1e-9 else best
        print(f"HOG >= {t:.2f} or CNN: originals {share['original']:.3f}, deface {share['deface']:.3f}, J {j:.3f}")
    print(f"largest J {best[0]:.3f} at HOG >= {best[1]:.2f} ({len(views) // 2} volumes of {', '.join(tasks)})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", default="tumor-slice", help='a task\'s phantoms, or "all" (one gallery of every task\'s)')
    parser.add_argument("--defacers", default="deface,quickshear,reface")
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: a fresh temporary folder (cold)")
    parser.add_argument("--figure", type=Path, default=None, help="write renders of the defaced volumes here (README)")
    parser.add_argument("--choose-hog-score", action="store_true",
                        help="only print how the probes' HOG score was chosen (on nph-evans and ct-report)")
    args = parser.parse_args()
    cache = args.cache_dir or Path(tempfile.mkdtemp(prefix="privacy-bench-"))
    if args.choose_hog_score:
        choose_hog_score(["nph-evans", "ct-report"], cache)
        return
    real_heads(cache)
    items = cohort_items(None, None if args.task == "all" else args.task, limit=None, cache_dir=cache)
    originals, defaced = attack_findings(items, args.defacers.split(","), cache)
    report = reidentification_report(originals, defaced)
    report.pop("attack")
    print(json.dumps(report, indent=1))
    detection_scores(originals, defaced)
    face_distances(items, originals)
    if args.figure:
        defaced_figure(items, args.defacers.split(","), args.figure, cache)
    # this cohort's entries only (a cache folder can hold entries of other render versions): seconds as computed
    found = [*originals.values(), *(f for probes in defaced.values() for f in probes.values())]
    seconds = [f.seconds for f in found if not isinstance(f, str) and f.seconds > 0]
    if seconds:
        print(f"attack seconds per (volume, condition): mean {np.mean(seconds):.2f}, max {np.max(seconds):.2f} "
              f"over {len(seconds)}")


if __name__ == "__main__":
    main()
