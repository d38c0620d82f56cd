"""The privacy stage of a run: the re-identification attack (harness.privacy) on every volume the run's cases show.

After the samples: every (task, case, role) under `original` and each defacer is attacked once, cached by content
(a second run, or a resumed one, reads JSON only), and the probe records - face found, rank of the own person,
distance; no image, no embedding - are written to the run's qc/reidentification.jsonl, from which the summary and
the leaderboard compute detection and rank-1/rank-5 identification. Without dlib (the optional extra `privacy`)
the stage says so and the run goes on; `--no-privacy` skips it. With `--executor ray` each (volume, condition) is a
cluster job; the caches are content-addressed, so a job finished on any node is not done again.
"""

from __future__ import annotations

import time

from harness.core.errors import HarnessError
from harness.engine.grid import REFERENCE

STAGE = "privacy"  # its bar: one unit per (volume, condition) attacked, cached or not


class PrivacyStage:
    def __init__(self, ctx):
        self.ctx = ctx  # the Runner: its tasks, cohorts, conditions and cache folder
        self.seconds = 0.0
        self.placements: dict[tuple, dict] = {}  # (condition, volume label) -> where its attack job ran (on a cluster)

    def _runner(self, job, in_process):
        """How the attack's jobs run: here, or with --executor ray as cluster jobs (one per volume and condition;
        the findings come back, the run folder is written here)."""
        executor = self.ctx.executor
        if executor is None or not executor.remote:
            return in_process

        def on_cluster(jobs: dict):
            for key, value, placement in executor.map(job, jobs):
                condition, subject = key
                self.placements[(condition, subject.label)] = placement.to_dict()
                yield key, value

        return on_cluster

    def run(self, items, store, progress) -> None:
        from harness.privacy.cohort_attack import ORIGINAL, attack_findings, attack_job, cohort_volumes, in_process
        from harness.privacy.face_models import attack_identity
        from harness.privacy.reidentify import condition_outcomes
        from harness.privacy.report_text import attack_label

        t0 = time.perf_counter()
        conditions = [c for c in self.ctx.defacer_specs if c != REFERENCE]
        records = []
        try:
            attack = attack_identity()
            for task_name, task in self.ctx.tasks.items():
                case_ids = sorted({i.case_id for i in items if i.task == task_name})
                volumes = cohort_volumes([self.ctx.case(task_name, c) for c in case_ids], task.roles)
                planned = len(volumes) * (1 + sum(c != ORIGINAL for c in conditions))
                progress.add_total(STAGE, planned)
                done = 0

                def one_done(_what: str) -> None:
                    nonlocal done
                    done += 1
                    progress.advance(STAGE)

                outcomes = condition_outcomes(*attack_findings(volumes, conditions, self.ctx.cache_dir, one_done,
                                                               run_jobs=self._runner(attack_job, in_process)))
                progress.advance(STAGE, planned - done)  # volumes with no face in view have no probe to attack
                for condition, probes in outcomes.items():
                    records += [{"task": task_name, "condition": condition, "case_id": p["person"],
                                 "role": p["label"].rsplit("/", 1)[-1], **p,
                                 "attack": attack_label(attack),
                                 **({"ran_on": self.placements[(condition, p["label"])]}
                                    if (condition, p["label"]) in self.placements else {})} for p in probes]
        except HarnessError as exc:  # dlib missing, or a cohort file unreadable: the samples are all kept
            progress.log(f"privacy stage skipped: {exc}")
            return
        except Exception as exc:  # a bug in the attack must not cost the run its summary
            progress.log(f"privacy stage failed ({type(exc).__name__}: {exc}); the run's samples are kept")
            return
        finally:
            self.seconds += time.perf_counter() - t0
        store.write_reidentification(records)
        progress.log(f"privacy: {len(records)} volumes attacked in {self.seconds:.1f} s (qc/reidentification.jsonl)")
