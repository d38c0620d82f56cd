"""Mutation testing of the modules where a silent bug would corrupt results: how many planted bugs the tests catch.

    pip install -e ".[mutation]"
    python benchmarks/mutation.py                     # every group (about 25 minutes on 2 cores)
    python benchmarks/mutation.py stats parsing       # some groups
    python benchmarks/mutation.py --list              # the groups, their modules and tests

For each group, mutmut (3.x) plants one small bug at a time (an operator, a constant, a condition, a dropped
argument) into a copy of the working tree and runs that group's tests against it. Prints per module: mutants,
killed (a test failed), survived (every test passed: a bug the suite would let through), not covered (no test
reaches the code) and the kill rate = killed / (killed + survived + not covered); then every survivor as the line it
changed. A survivor is either a missing test or a harmless mutant (an error message's wording, an equivalent
rewrite); the README's testing section lists the figures and why the remaining survivors are harmless.

Not run in CI (minutes, not seconds); run it before changing these modules and after adding tests.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("harness", "tasks", "defacers", "leaderboard")  # copied into mutmut's mutants/ folder (importable there)
ALSO_COPY = ("tests", "prompts", "README.md", "pyproject.toml")


@dataclass(frozen=True)
class Group:
    modules: tuple[str, ...]  # files (or folder/* globs) mutated
    tests: tuple[str, ...]  # test files run against each mutant
    why: str
    pytest_args: tuple[str, ...] = ("-m", "not slow")  # slow tests redo registrations per mutant: too slow here


GROUPS = {
    "stats": Group(("harness/scoring/stats/*",), ("tests/test_stats.py", "tests/test_stats_edges.py",
                                                  "tests/test_aggregate.py"),
                   "paired tests, bootstrap CIs, BH, agreement: every number on the leaderboard"),
    "store": Group(("harness/store/run_store.py", "harness/store/samples_file.py", "harness/engine/grid.py"),
                   ("tests/test_store.py", "tests/test_grid.py"),
                   "the run store and sample ids: a resumed run must neither lose nor mix samples"),
    "orientation": Group(("harness/imaging/io/*",),
                         ("tests/test_dicom.py", "tests/test_dicom_edges.py", "tests/test_nifti.py",
                          "tests/test_hostile_volumes.py"),
                         "DICOM/NIfTI reading: a flipped axis or a missed rescale changes every image"),
    # tests/test_defacers.py registers Colin27 for every surviving mutant (~75 s each on 2 cores): the figures are
    # checked against hand computation on small synthetic volumes instead (test_defacer_qc_figures.py, < 1 s)
    "defacer-qc": Group(("defacers/qc.py",), ("tests/test_defacers_qc.py", "tests/test_defacer_qc_figures.py"),
                        "the QC record: brain damage and face coverage the privacy columns show"),
    "publish-scan": Group(("leaderboard/anonymize.py",), ("tests/test_privacy.py", "tests/test_leaderboard.py"),
                          "what a published leaderboard may hold: case ids, paths, secrets"),
    "parsing": Group(("harness/core/parsing.py",), ("tests/test_parsing.py",),
                     "answer parsing: an answer read wrongly is scored wrongly"),
    "scoring": Group(("harness/scoring/text.py", "harness/scoring/findings.py"),
                     ("tests/test_text_metrics.py", "tests/test_findings.py"),
                     "report scoring: ROUGE/BERTScore wrappers and the findings extractor behind ct-report F1"),
}
STATUS = {1: "killed", 3: "killed", 37: "killed", 0: "survived", 5: "not covered", 33: "not covered", None: "not run",
          34: "skipped", 36: "timeout", -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout"}


def copy_tree(dest: Path) -> None:
    """The working tree as git sees it (tracked and untracked, not ignored), without the published snapshot."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        if rel.startswith("leaderboard/snapshot/") or not (ROOT / rel).is_file():
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)


def configure(work: Path, group: Group, children: int) -> None:
    config = {
        "source_paths": list(PACKAGES), "only_mutate": list(group.modules), "also_copy": list(ALSO_COPY),
        "pytest_add_cli_args_test_selection": list(group.tests),
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-n", "0", "-q", "-x", *group.pytest_args],  # -n 0: one process, which mutmut tracks
        "use_git_change_detection": False, "max_children": children,
    }
    lines = ["", "[tool.mutmut]"] + [f"{k} = {json.dumps(v)}" for k, v in config.items()]
    with open(work / "pyproject.toml", "a") as fh:
        fh.write("\n".join(lines) + "\n")


def run_group(name: str, group: Group, children: int, keep: bool) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"mutation-{name}-"))
    log = work / "mutmut.log"
    try:
        copy_tree(work)
        configure(work, group, children)
        start = time.monotonic()
        with open(log, "w") as fh:
            proc = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(children)], cwd=work,
                                  stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, "TERM": "dumb"})
        seconds = time.monotonic() - start
        if proc.returncode != 0 or not (work / "mutants").is_dir():
            tail = log.read_text(errors="replace")[-3000:]
            raise SystemExit(f"mutmut failed for group {name} (rc {proc.returncode}); log {log}:\n{tail}")
        return {"seconds": seconds, **collect(work)}
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}", file=sys.stderr)


def collect(work: Path) -> dict:
    """Per module: status counts; survivors: (module, mutant, changed line)."""
    counts: dict[str, Counter] = defaultdict(Counter)
    survivors = []
    with contextlib.chdir(work):
        from mutmut.__main__ import get_diff_for_mutant  # after chdir: mutmut reads its config from the cwd

        for meta in sorted((work / "mutants").rglob("*.py.meta")):
            module = str(meta.relative_to(work / "mutants"))[: -len(".meta")]
            doc = json.loads(meta.read_text())
            for key, code in sorted(doc["exit_code_by_key"].items()):
                status = STATUS.get(code, "suspicious")
                counts[module][status] += 1
                if status in ("survived", "not covered"):
                    survivors.append((module, key, status, changed_line(get_diff_for_mutant(key, path=module))))
    return {"counts": {m: dict(c) for m, c in counts.items()}, "survivors": survivors}


def changed_line(diff: str) -> str:
    removed = [line[1:].strip() for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    added = [line[1:].strip() for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    return f"{' / '.join(removed)[:110]}  ->  {' / '.join(added)[:110]}"


def kill_rate(c: Counter | dict) -> float:
    killed = c.get("killed", 0) + c.get("timeout", 0)
    judged = killed + c.get("survived", 0) + c.get("not covered", 0)
    return killed / judged if judged else 1.0


def report(results: dict[str, dict], show_survivors: bool) -> None:
    print(f"\n{'group / module':58} {'mutants':>8} {'killed':>7} {'survived':>9} {'uncovered':>10} {'kill rate':>10}")
    overall = Counter()
    for name, res in results.items():
        group_total = Counter()
        for module, c in sorted(res["counts"].items()):
            c = Counter(c)
            group_total.update(c)
            print(f"  {module:56} {sum(c.values()):8d} {c['killed'] + c['timeout']:7d} {c['survived']:9d} "
                  f"{c['not covered']:10d} {kill_rate(c):10.1%}")
        overall.update(group_total)
        label = f"{name} ({res['seconds']:.0f} s)"
        print(f"{label:58} {sum(group_total.values()):8d} "
              f"{group_total['killed'] + group_total['timeout']:7d} {group_total['survived']:9d} "
              f"{group_total['not covered']:10d} {kill_rate(group_total):10.1%}")
    print(f"{'all':58} {sum(overall.values()):8d} {overall['killed'] + overall['timeout']:7d} {overall['survived']:9d} "
          f"{overall['not covered']:10d} {kill_rate(overall):10.1%}")
    if show_survivors:
        for name, res in results.items():
            if res["survivors"]:
                print(f"\nsurvivors in {name}:")
            for module, key, status, line in res["survivors"]:
                print(f"  {key.rsplit('.', 1)[-1]:44} {'(uncovered) ' if status != 'survived' else ''}{line}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("groups", nargs="*", help=f"groups to run (default: all): {', '.join(GROUPS)}")
    parser.add_argument("--children", type=int, default=os.cpu_count() or 2, help="mutants tested in parallel")
    parser.add_argument("--no-survivors", action="store_true", help="print the table only")
    parser.add_argument("--json", type=Path, help="also write the figures and survivors to this file")
    parser.add_argument("--keep", action="store_true", help="keep each group's working copy (to run `mutmut show`)")
    parser.add_argument("--list", action="store_true", help="list the groups and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, g in GROUPS.items():
            print(f"{name}: {g.why}\n  mutated: {', '.join(g.modules)}\n  tests:   {', '.join(g.tests)}")
        return 0
    unknown = [g for g in args.groups if g not in GROUPS]
    if unknown:
        parser.error(f"unknown group(s) {', '.join(unknown)}; groups: {', '.join(GROUPS)}")
    if shutil.which("git") is None:
        parser.error("git is needed to copy the working tree")
    try:
        import mutmut  # noqa: F401
    except ImportError:
        parser.error('mutmut is not installed: pip install -e ".[mutation]"')
    results = {}
    for name in args.groups or list(GROUPS):
        print(f"mutating {name} ({', '.join(GROUPS[name].modules)}) ...", file=sys.stderr, flush=True)
        results[name] = run_group(name, GROUPS[name], args.children, args.keep)
    report(results, not args.no_survivors)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
