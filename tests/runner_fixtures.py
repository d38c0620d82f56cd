"""A small real task and scripted model for testing the runner without the clinical tasks.

The task answers "nph-evans" questions (so the cohort readers accept its cases) with a number derived from the
rendered image: the scripted model reports the mean brightness of the mid-sagittal image it is shown, so defacing
(which changes the face in that image) changes the answer, as it would for a real model.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from harness.models.scripted import register_scripted
from harness.core.parsing import parse_answer
from harness.imaging.render import RenderSpec
from tasks.base import Metric, ModelInput, Task
from tasks.common import image_array, prompt_messages, render_views, shown_images

SLOW_ENV = "HARNESS_TEST_POLICY_SLEEP"  # seconds the scripted model sleeps per request (kill tests)


class BrightnessTask(Task):
    name = "nph-evans"
    version = "runner-test-1"
    title = "Runner test task"
    description = "Mean brightness of the mid-sagittal image, as a stand-in answer."
    roles = ("t1",)
    modes = ("single",)
    default_mode = "single"
    baseline = "scripted:runner-test-brightness"
    answer_schema = {"type": "object", "properties": {"evans_ratio": {"type": "number"}}, "required": ["evans_ratio"]}
    accuracy_metrics = (Metric("abs_error", "absolute error of the ratio", higher_is_better=False),
                        Metric("close", "within 0.05 of the truth", higher_is_better=True, kind="binary"))
    fidelity_metrics = (Metric("abs_diff", "absolute difference defaced vs original", higher_is_better=False),)

    def build_input(self, case, volumes, mode):
        images, keys = render_views(volumes, [("t1", RenderSpec(plane="sagittal", size=96), "mid-sagittal")])
        return ModelInput(prompt_messages(None, "tests/brightness.j2", images), None, keys)

    def parse(self, answer):
        return parse_answer(answer, self.answer_schema)

    def score(self, answer, truth):
        err = abs(answer["evans_ratio"] - truth["evans_ratio"])
        return {"abs_error": err, "close": float(err <= 0.05)}

    def compare(self, original, defaced):
        return {"abs_diff": abs(original["evans_ratio"] - defaced["evans_ratio"])}


@register_scripted("runner-test-brightness")
def _brightness(spec):
    def policy(messages, tools):
        delay = float(os.environ.get(SLOW_ENV, "0") or 0)
        if delay:
            time.sleep(delay)
        pixels = image_array(shown_images(messages)[-1])
        return json.dumps({"evans_ratio": round(float(np.mean(pixels)) / 255.0, 4)})

    return policy


def install():
    """Put the test task in the registry under "nph-evans" (a context manager: the real task comes back after;
    a child process that never leaves it keeps the test task)."""
    from tasks import task_registry

    return task_registry.override("nph-evans", BrightnessTask)
