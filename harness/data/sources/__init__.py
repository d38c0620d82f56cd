"""Cohort readers. Each has `read(location, task, *, limit, cache_dir) -> (cases, problems)`; see harness.data.cohort."""
