"""The hostile-input battery: bad volumes, bad manifests, publishing leaks, resuming the wrong run, as a user (or an
attacker) would try them through the CLI. Prints each probe's outcome and the tally; not a test (tests/ holds one
regression test per item), a check that the whole surface still behaves.

    python benchmarks/hostile.py [--keep]

Outcomes:
  clear error  refused with a non-zero exit, a message naming the file or option, no traceback
  survived     the command finished and recorded the problem where a user finds it (rejected rows, failed samples)
  bad          a traceback, a hang (past the probe's time limit), or the problem got through
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.core.volume import Volume  # noqa: E402
from harness.imaging.io import save_nifti  # noqa: E402
from tests.test_hostile_volumes import huge_header as _huge_header  # noqa: E402

HUGE = (32767,) * 3  # int16: 70 TB declared by a header of a few KB


def huge_header(path: Path) -> Path:
    return _huge_header(path, HUGE)


@dataclass
class Outcome:
    name: str
    verdict: str  # "clear error" | "survived" | "bad"
    detail: str
    seconds: float


def harness(*args, cwd: Path, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], cwd=cwd, capture_output=True,
                              text=True, timeout=timeout, env={**os.environ, "COLUMNS": "200", **(env or {})})
    except subprocess.TimeoutExpired:
        return None


def judge_refusal(proc, must_name: str) -> tuple[str, str]:
    """A refusal is clear when it exits non-zero, names what it refused and shows no traceback."""
    if proc is None:
        return "bad", "hung (time limit)"
    text = proc.stdout + proc.stderr
    last = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or [""])[-1]
    if "Traceback" in text:
        return "bad", "traceback: " + last[:150]
    if proc.returncode == 0:
        return "bad", "accepted: " + last[:150]
    if must_name not in text:
        return "bad", f"refused without naming {must_name!r}: {last[:150]}"
    return "clear error", last[:150]


def head(path: Path) -> Path:
    from tests.conftest import make_head

    return save_nifti(make_head(), path)


def probes(work: Path):
    """(name, function returning (verdict, detail)) for each probe."""
    good = head(work / "good.nii.gz")

    def volume_refused(name: str, make, command: str = "info"):
        def probe():
            path = make(work / name)
            args = [command, path] + (["--out", work / f"{name}-out.nii.gz"] if command == "deface" else [])
            return judge_refusal(harness(*args, cwd=work, timeout=60), path.name)
        return probe

    def garbage(p):
        p.write_bytes(os.urandom(4096))
        return p

    def truncated(p):
        p.write_bytes(gzip.compress(good.read_bytes())[:2000])
        return p

    def two_d(p):
        return save_nifti(Volume(np.zeros((32, 32, 1), np.float32), np.eye(4), "MR"), p)

    def nan_voxels(p):
        img = nib.load(str(good))
        data = np.asarray(img.dataobj, dtype=np.float32)
        data[5, 5, 5] = np.nan
        nib.save(nib.Nifti1Image(data, img.affine), str(p))
        return p

    def manifest_rows(rows) -> Path:
        path = work / f"m{len(list(work.glob('m*.jsonl')))}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path

    def hostile_rows_rejected():
        rows = [{"id": "good-case", "t1": str(good), "evans_ratio": 0.3},
                {"id": "device-row", "t1": "/dev/zero", "evans_ratio": 0.3},
                {"id": "huge-row", "t1": str(huge_header(work / "huge-row.nii")), "evans_ratio": 0.3},
                {"id": "missing-row", "t1": str(work / "nowhere.nii.gz"), "evans_ratio": 0.3}]
        proc = harness("data", "show", manifest_rows(rows), "--task", "nph-evans", cwd=work, timeout=60)
        if proc is None:
            return "bad", "hung (time limit)"
        text = proc.stdout + proc.stderr
        if "Traceback" in text:
            return "bad", "traceback"
        missing = [r for r in ("device-row", "huge-row", "missing-row") if r not in text]
        return ("survived", "3 rows rejected with reasons, the good one kept") if not missing else \
               ("bad", f"rows not reported: {missing}")

    def eval_reports_rejected_rows():
        rows = [{"id": f"bad-{i}", "t1": str(work / f"nowhere-{i}.nii.gz"), "evans_ratio": 0.3} for i in range(50)]
        proc = harness("eval", "--task", "nph-evans", "--defacer", "reface", "--cohort", manifest_rows(rows),
                       "--out", work / "runs-rejected", "--cache-dir", work / "cache", "--quiet", cwd=work, timeout=120)
        if proc is None:
            return "bad", "hung"
        text = proc.stdout + proc.stderr
        if "Traceback" in text:
            return "bad", "traceback"
        return ("clear error", "no usable case: refused, naming the first problem") if proc.returncode != 0 and "nowhere-0" in text \
            else ("bad", text.strip().splitlines()[-1][:150] if text.strip() else "silent")

    def resume_with_another_model():
        out = work / "runs-resume"
        first = harness("eval", "--task", "nph-evans", "--defacer", "reface", "--limit", "1", "--out", out,
                        "--cache-dir", work / "cache", "--quiet", "--workers", "0", cwd=work, timeout=600)
        if first is None or first.returncode != 0:
            return "bad", "the first run failed: " + ((first.stderr[-150:]) if first else "hung")
        [run_dir] = list(out.iterdir())
        proc = harness("eval", "--task", "nph-evans", "--defacer", "reface", "--limit", "1", "--resume", run_dir,
                       "--model", "scripted:inspect-then-submit", "--cache-dir", work / "cache", "--quiet", cwd=work)
        return judge_refusal(proc, "scripted:inspect-then-submit")

    def publish_probe(plant_name: str, plant):
        def probe():
            site = work / "site"
            if not site.exists():
                runs = work / "runs-resume"
                build = harness("leaderboard", "build", runs, "--out", site, cwd=work, timeout=300,
                                env={"XDG_CACHE_HOME": str(work / "xdg")})
                if build is None or build.returncode != 0:
                    return "bad", "build failed: " + (build.stderr[-200:] if build else "hung")
            copy = work / f"site-{plant_name}"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(site, copy, symlinks=True)
            plant(copy)
            proc = harness("leaderboard", "publish", copy, "--to", work / f"pub-{plant_name}", cwd=work,
                           env={"XDG_CACHE_HOME": str(work / "xdg")})
            verdict, detail = judge_refusal(proc, plant_name)
            if (work / f"pub-{plant_name}").exists() and verdict != "clear error":
                verdict = "bad"
            return verdict, detail
        return probe

    def face_png(site):
        shutil.copyfile(ROOT / "leaderboard" / "snapshot" / "plots" / next(
            p.name for p in (ROOT / "leaderboard" / "snapshot" / "plots").glob("*.png")), site / "plots" / "face.png")

    def volume_as_png(site):
        shutil.copyfile(good, site / "plots" / "chart.png")

    def link(site):
        (site / "passwd.txt").symlink_to("/etc/passwd")

    def data_uri(site):
        page = site / "index.html"
        page.write_text(page.read_text().replace("</body>", '<img src="data:image/png;base64,AAAA"></body>'))

    def path_in_html(site):
        page = site / "index.html"
        page.write_text(page.read_text().replace("</body>", "<p>/data/study/sub-01/t1.nii.gz</p></body>"))

    return [
        ("NIfTI header declaring 32767^3 voxels: info", volume_refused("huge.nii", huge_header)),
        ("NIfTI header declaring 32767^3 voxels: deface", volume_refused("huge2.nii", huge_header, "deface")),
        ("random bytes named .nii.gz", volume_refused("garbage.nii.gz", garbage)),
        ("truncated gzip", volume_refused("cut.nii.gz", truncated)),
        ("2D image", volume_refused("flat.nii.gz", two_d)),
        ("NaN voxels", volume_refused("nan.nii.gz", nan_voxels)),
        ("/dev/zero as a volume", lambda: judge_refusal(harness("info", "/dev/zero", cwd=work, timeout=30), "/dev/zero")),
        ("manifest rows: device, huge header, missing file", hostile_rows_rejected),
        ("eval on a manifest of only bad rows", eval_reports_rejected_rows),
        ("--resume with another model", resume_with_another_model),
        ("publish: a face render added as a plot", publish_probe("face.png", face_png)),
        ("publish: a volume renamed chart.png", publish_probe("chart.png", volume_as_png)),
        ("publish: a link to /etc/passwd", publish_probe("passwd.txt", link)),
        ("publish: a data: URI in a page", publish_probe("index.html", data_uri)),
        ("publish: a local path inside a tag", publish_probe("index.html", path_in_html)),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the working folder")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hostile-"))
    results = []
    try:
        for name, probe in probes(work):
            t0 = time.perf_counter()
            try:
                verdict, detail = probe()
            except Exception as exc:  # a probe that cannot even be set up is a finding too
                verdict, detail = "bad", f"probe crashed: {type(exc).__name__}: {exc}"
            results.append(Outcome(name, verdict, detail, time.perf_counter() - t0))
            r = results[-1]
            print(f"{r.verdict:12} {r.seconds:6.1f} s  {r.name}: {r.detail}", flush=True)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    tally = {v: sum(r.verdict == v for r in results) for v in ("clear error", "survived", "bad")}
    print(f"\nprobes tried: {len(results)}; clear errors: {tally['clear error']}; survived: {tally['survived']}; "
          f"bad: {tally['bad']}")
    return 1 if tally["bad"] else 0


if __name__ == "__main__":
    sys.exit(main())
