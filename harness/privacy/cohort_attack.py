"""The re-identification attack over a cohort's volumes and a list of defacers (`harness privacy`, the eval stage).

Every (volume, condition) is attacked once and cached by content (harness.privacy.volume_faces): a second call
reads JSON files only. Volumes are loaded lazily, so a finished cohort is answered without reading voxels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import defacers
from harness.core.errors import HarnessError
from harness.data.case import Case
from harness.privacy.pose import NoFaceInView
from harness.privacy.reidentify import Subject, reidentification_report
from harness.privacy.volume_faces import ORIGINAL, VolumeFaces, attack_volume, cached_faces


@dataclass(frozen=True)
class CohortVolume:
    subject: Subject
    case: Case
    role: str


def cohort_volumes(cases: Iterable[Case], roles: Iterable[str] | None = None) -> list[CohortVolume]:
    """One entry per distinct volume file: the given roles of each case (None: every role it has). Cases read by
    two tasks (tumor-slice and tumor-dx share files) appear once."""
    seen, out = set(), []
    for case in cases:
        for role in (case.roles if roles is None else [r for r in roles if r in case.volumes]):
            key = (case.id, str(case.volumes[role]))
            if key not in seen:
                seen.add(key)
                out.append(CohortVolume(Subject(case.id, f"{case.id}/{role}"), case, role))
    return out


def cohort_items(source: str | None, task: str | None, *, limit: int | None, cache_dir) -> list[CohortVolume]:
    """The volumes of a cohort source: the roles `task` reads, or without a task every role of every task's cases
    (tasks the source holds no cases for are skipped)."""
    from harness.data.cohort import load_cohort
    from tasks import get_task, task_names

    if task is not None:
        t = get_task(task)
        return cohort_volumes(load_cohort(source, t, limit=limit, cache_dir=cache_dir).cases, t.roles)
    cases: list[Case] = []
    for name in task_names():
        t = get_task(name)
        if source is None and t.phantoms is None:
            continue
        try:
            cases.extend(load_cohort(source, t, limit=limit, cache_dir=cache_dir).cases)
        except HarnessError:
            continue  # this task reads nothing from the source
    return cohort_volumes(cases)


def defacer_for(spec: str, case: Case, role: str) -> defacers.Defacer:
    name, params = defacers.parse_defacer_spec(spec)
    return defacers.get(name, **params).for_case(case.defaced, role)


def defaced_copy(item: CohortVolume, defacer: defacers.Defacer, volume, cache_dir):
    """The cohort volume defaced, with the brain reference the deface stage used (part of the defacer cache key):
    found in the cache, not made again."""
    from tasks import get_task

    reference = get_task(item.case.task).brain_reference(item.case, item.role, cache_dir)
    return defacers.defaced_volume(defacer, volume, cache_dir, reference)


def attack_one(item: CohortVolume, condition: str, cache_dir) -> VolumeFaces | str:
    """Findings on one volume under one condition ("original" or a defacer spec), or why it has none (a refusal)."""
    volume = item.case.load_remembered(item.role, cache_dir)
    defacer = defacer_for(condition, item.case, item.role)
    hit = cached_faces(volume.content_hash, defacer.identity, cache_dir)
    if hit is not None:
        return hit
    if condition == ORIGINAL:
        return attack_volume(volume, volume, defacer.identity, cache_dir)
    try:
        defaced = defaced_copy(item, defacer, volume, cache_dir)
    except HarnessError as exc:
        return f"not defaced: {exc}"
    try:
        return attack_volume(volume, defaced, defacer.identity, cache_dir)
    except NoFaceInView as exc:  # e.g. a defaced volume on another grid than its original
        return str(exc)


def attack_job(item: CohortVolume, condition: str, cache_dir) -> VolumeFaces | str:
    """attack_one as a job that can run anywhere (a Ray node): an unreadable original is a finding, not an error."""
    try:
        return attack_one(item, condition, cache_dir)
    except HarnessError as exc:
        if condition != ORIGINAL:
            raise
        return VolumeFaces({}, f"not readable: {exc}")


def in_process(jobs: dict) -> Iterable[tuple]:
    """Run attack jobs here, one after the other: (key, result) as each finishes."""
    for key, args in jobs.items():
        yield key, attack_job(*args)


def attack_findings(items: list[CohortVolume], conditions: list[str], cache_dir,
                    progress: Callable[[str], None] | None = None, run_jobs: Callable = in_process) -> tuple[dict, dict]:
    """(originals, {condition: probes}): the attack's findings on every volume, for reidentify. run_jobs({key: args})
    yields (key, attack_job(*args)) as jobs finish, anywhere (the eval's executor); results keep `items`' order."""
    cache_dir = Path(cache_dir)
    done = 0

    def run(jobs: dict) -> dict:
        nonlocal done
        found = {}
        for key, value in run_jobs(jobs):
            found[key] = value
            done += 1
            if progress is not None:
                progress(f"{done} {key[1].label} {key[0]}")
        return found

    first = run({(ORIGINAL, item.subject): (item, ORIGINAL, cache_dir) for item in items})
    originals: dict[Subject, VolumeFaces] = {item.subject: first[(ORIGINAL, item.subject)] for item in items}
    others = [c for c in conditions if c != ORIGINAL]
    probes = run({(c, item.subject): (item, c, cache_dir) for c in others for item in items
                  if not originals[item.subject].no_face})
    # a volume whose original shows no face has no probe: its reason stands for every defacer
    defaced = {c: {item.subject: originals[item.subject].no_face or probes[(c, item.subject)] for item in items}
               for c in others}
    return originals, defaced


def attack_cohort(items: list[CohortVolume], conditions: list[str], cache_dir,
                  progress: Callable[[str], None] | None = None) -> dict:
    """The re-identification report (see reidentify) of `conditions` (defacer specs) on the cohort volumes."""
    return reidentification_report(*attack_findings(items, conditions, cache_dir, progress))
