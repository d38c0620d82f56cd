"""Small real tasks and run directories for the aggregation and leaderboard tests.

MeasureTask answers {"ratio": float, "enlarged": bool} (an Evans-ratio-like measurement); its accuracy metrics
are the absolute error (continuous) and whether the enlarged call is right (binary), its fidelity metrics the
absolute ratio difference and whether the call is the same, its agreement a Bland-Altman of the ratio.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.store.manifest import build_manifest
from harness.core.parsing import parse_answer
from harness.core.sample import Sample
from harness.scoring.stats import bland_altman
from harness.store.run_store import RunStore
from tasks.base import Metric, ModelInput, Task

OPENAI_KEY = "sk-proj-PLANTEDSECRET0123456789abcdef"


class MeasureTask(Task):
    name = "toy-measure"
    version = "1"
    title = "Toy measurement"
    description = "A ratio measured on a head volume, and the call it implies."
    roles = ("t1",)
    baseline = "scripted:toy-measure"
    answer_schema = {"type": "object", "properties": {"ratio": {"type": "number"}, "enlarged": {"type": "boolean"}},
                     "required": ["ratio", "enlarged"]}
    accuracy_metrics = (
        Metric("abs_error", "absolute error of the ratio", higher_is_better=False, kind="continuous", unit="ratio"),
        Metric("correct", "enlarged call is right", higher_is_better=True, kind="binary"),
    )
    fidelity_metrics = (
        Metric("ratio_diff", "absolute ratio difference, defaced vs original", higher_is_better=False, unit="ratio"),
        Metric("same_call", "same enlarged call on both", higher_is_better=True, kind="binary"),
    )

    def build_input(self, case, volumes, mode):
        return ModelInput(messages=[])

    def parse(self, answer):
        return parse_answer(answer, self.answer_schema)

    def score(self, answer, truth):
        return {"abs_error": abs(answer["ratio"] - truth["ratio"]),
                "correct": float(answer["enlarged"] == truth["enlarged"])}

    def compare(self, original, defaced):
        return {"ratio_diff": abs(defaced["ratio"] - original["ratio"]),
                "same_call": float(original["enlarged"] == defaced["enlarged"])}

    def agreement(self, pairs):
        return {"ratio": {"bland_altman": bland_altman([o["ratio"] for o, _ in pairs],
                                                       [d["ratio"] for _, d in pairs]).to_dict()}}


def sample(task, case, condition, model, ratio=None, status="ok", mode="single", truth=0.3, error=None,
           defacer_version="1"):
    """A Sample as the runner writes it: scores from task.score on the parsed answer."""
    answer = None if ratio is None else {"ratio": ratio, "enlarged": ratio > 0.3}
    scores = task.score(answer, {"ratio": truth, "enlarged": truth > 0.3}) if status == "ok" else {}
    if status == "failed" and error is None:
        error = {"kind": "timeout", "message": "model did not answer in 60 s"}
    return Sample(sample_id=f"{task.name}-{case}-{condition}-{defacer_version}-{model}-{mode}", task=task.name,
                  case_id=case, condition=condition, model=model, mode=mode, status=status,
                  defacer={"name": condition, "version": defacer_version}, answer=answer if status == "ok" else None,
                  error=error, scores=scores,
                  transcript=[{"role": "user", "content": f"Patient {case}: measure the Evans ratio"}])


def qc_line(task, case, condition, face=0.9, surface=12.0, brain=0, status="ok"):
    return {"task": task, "case_id": case, "role": "t1", "condition": condition,
            "defacer": {"name": condition, "version": "1"}, "status": status,
            "error": None if status == "ok" else {"kind": "registration", "message": "poor fit"},
            "seconds": 1.5, "qc": {"face_fraction_changed": face, "face_surface_change_mm": surface,
                                   "brain_voxels_changed": brain, "voxels_changed": 1000} if status == "ok" else {}}


def write_run(directory: Path, samples, qc=(), *, task_version="1", cohort_hash="cohort-abc", argv=None,
              harness_version=None, mode="single") -> Path:
    manifest = build_manifest(
        {"api_key": OPENAI_KEY, "cohort_path": str(directory.parent / "cohorts" / "PLANTED-LOCAL-DIR")},
        tasks={MeasureTask.name: {"task": MeasureTask.name, "version": task_version,
                                  "render_specs": ["axial-montage-abc123"], "mode": mode}},
        defacers={"quickshear": {"name": "quickshear", "version": "1.1.0", "params": {}},
                  "reface": {"name": "reface", "version": "0.2", "params": {"template": "/opt/PLANTED-TEMPLATE.nii"}}},
        models={"m1": {"id": "m1", "revision": "r1"}, "m2": {"id": "/home/someone/models/m2-local", "revision": None}},
        cohort={"name": "toy", "description": "toy cohort of four heads", "size": 4, "hash": cohort_hash},
        argv=argv or ["/usr/local/bin/harness", "eval", "--task", "toy-measure", "--cohort",
                      str(directory.parent / "PLANTED-LOCAL-DIR" / "cohort.json"), "--api-key", OPENAI_KEY],
    )
    if harness_version:
        manifest["harness"]["version"] = harness_version
    with RunStore.open(directory, manifest) as store:
        store.append_many(list(samples))
        if qc:
            (store.qc_dir / "defacer_qc.jsonl").write_text("".join(json.dumps(q) + "\n" for q in qc))
        store.finish()
    return directory
