"""Cohorts: the cases of a task, from the built-in phantom cohort or from real data.

Public API
    load_cohort(source, task, *, limit=None, cache_dir=None) -> Cohort     (harness.data.cohort)
        Cohort: name, task, cases (list[Case]), problems (list[(row or case id, message)]), source, content_hash
    Case (harness.data.case): id, task, volumes {role: Path}, truth (each task declares its fields: `harness tasks`),
        meta, load(role) -> Volume
    write_sample_cohort(task, n, seed, out, *, resolution_scale=1.0) -> manifest path   (harness.data.sample_cohort)
    sample_cohort_manifest(task, cache_dir=None, n=None) -> manifest of the cached built-in cohort's first n cases

The built-in cohorts are PHANTOMS: the pydeface average head (a real head with face, averaged over subjects) is
labelled once (harness.phantoms.anatomy), then every case warps it into a new subject and pose, synthesises MR
contrasts or CT, and paints the pathology of its task (each task's generator: tasks/<task>/phantom.py). Ground truth
is measured on the written label maps, so it is exact for the images; the images are simpler than real scans.
"""

from harness.data.cohort import Cohort, CohortError, load_cohort

__all__ = ["Cohort", "CohortError", "load_cohort"]
