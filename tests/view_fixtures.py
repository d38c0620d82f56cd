"""Two small real runs for the `harness view` tests, made by the real runner on two 2.6 mm phantom heads:
- single mode, the nph-evans scripted baseline (ok samples with scores; original/defaced pairs with fidelity values);
- agent mode, `scripted:inspect-then-submit` (real tool calls and a montage through the agent loop; its "unknown"
  answer is unparsable for nph-evans).
The defacer is a fast and crude one (the front 45 % of the head becomes air, frontal horns included, so answers change
after defacing) so that the fixture takes seconds; every other stage is the real one. One failed sample is added through the store's writer, as a run that met a timeout has it.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from defacers import defacer_registry
from defacers.base import Defacer, DefacerOutput, air_value
from harness.core.sample import Sample
from harness.data.sample_cohort import write_sample_cohort
from harness.engine.runner import EvalConfig, Runner
from harness.results.run_summary import summarize_run
from harness.store.run_store import RunStore, read_samples

DEFACER = "view-test-blank"


class FrontBlank(Defacer):
    name = DEFACER
    version = "1"

    def _deface(self, volume):
        face = np.zeros(volume.shape, bool)
        face[:, int(0.55 * volume.shape[1]):, :] = True
        return DefacerOutput(data=np.where(face, air_value(volume), volume.data), face=face)


@contextmanager
def blank_defacer():
    with defacer_registry.override(DEFACER, FrontBlank):
        yield


def make_runs(root: Path) -> tuple[list[Path], Path]:
    """(run directories, cache folder) under `root`; call inside blank_defacer()."""
    cohort = write_sample_cohort("nph-evans", n=2, seed=7, out=root / "cohort", resolution_scale=2.0)
    cache = root / "cache"
    runs = []
    for mode, models in (("single", []), ("agent", ["scripted:inspect-then-submit"])):
        cfg = EvalConfig(tasks=["nph-evans"], defacers=[DEFACER], models=models, cohort=str(cohort), mode=mode,
                         out=root / f"runs-{mode}", cache_dir=cache, workers=0, quiet=True, privacy=False)
        runs.append(Runner(cfg, argv=["harness", "eval", "--test"]).run(summarize=summarize_run).run_dir)
    add_failed_sample(runs[0])
    return runs, cache


def add_failed_sample(run_dir: Path) -> Sample:
    """A third case whose model timed out on the original volume, written by the store's writer (the run's lock, fsync, one line)."""
    first = next(s for s in read_samples(run_dir) if s.condition == "original")
    failed = dataclasses.replace(first, sample_id="view-test-timeout", case_id="nph-evans-timeout", status="failed",
                                 answer=None, scores={}, transcript=first.transcript[:1],
                                 error={"kind": "timeout", "message": "model did not answer in 900 s"})
    with RunStore.open(run_dir) as store:
        store.append(failed)
        store.finish()
    return failed
