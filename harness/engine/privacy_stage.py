"""The privacy stage of a run: the re-identification attack (harness.privacy) on every volume the run's cases show.

After the samples: every (task, case, role) under `original` and each defacer is attacked once, cached by content
(a second run, or a resumed one, reads JSON only), and the probe records - face found, rank of the own person,
distance; no image, no embedding - are written to the run's qc/reidentification.jsonl, from which the summary and
the leaderboard compute detection and rank-1/rank-5 identification. Without dlib (the optional extra `privacy`)
the stage says so and the run goes on; `--no-privacy` skips it.
"""

from __future__ import annotations

import time

from harness.core.errors import HarnessError
from harness.engine.grid import REFERENCE


class PrivacyStage:
    def __init__(self, ctx):
        self.ctx = ctx  # the Runner: its tasks, cohorts, conditions and cache folder
        self.seconds = 0.0

    def run(self, items, store, progress) -> None:
        from harness.privacy.cohort_attack import attack_findings, cohort_volumes
        from harness.privacy.face_models import attack_identity
        from harness.privacy.reidentify import condition_outcomes

        t0 = time.perf_counter()
        conditions = [c for c in self.ctx.defacer_specs if c != REFERENCE]
        records = []
        try:
            attack = attack_identity()
            for task_name, task in self.ctx.tasks.items():
                case_ids = sorted({i.case_id for i in items if i.task == task_name})
                volumes = cohort_volumes([self.ctx.case(task_name, c) for c in case_ids], task.roles)
                outcomes = condition_outcomes(*attack_findings(volumes, conditions, self.ctx.cache_dir))
                for condition, probes in outcomes.items():
                    records += [{"task": task_name, "condition": condition, "case_id": p["person"],
                                 "role": p["label"].rsplit("/", 1)[-1], **p,
                                 "attack": f"{attack['name']} (dlib {attack['dlib']})"} for p in probes]
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
