"""A lab adds a task, a defacer and a model backend from its own package, without editing harness: a tiny
distribution (a folder with a *.dist-info/entry_points.txt on PYTHONPATH, as `pip install` leaves it) is found
through the `harness.tasks`, `harness.defacers` and `harness.backends` entry points, listed, and run end to end by
`harness eval`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from textwrap import dedent

import nibabel as nib
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

TASK_MODULE = '''
"""toy-brightness: how bright is the middle axial slice (0-255 as shown)? A plug-in task in one module."""
import json
from pathlib import Path

import numpy as np

from harness.core.parsing import parse_answer
from harness.imaging.render import RenderSpec, Slices
from harness.models.scripted import register_scripted
from tasks import register_task
from tasks.base import Metric, ModelInput, Task, TruthField
from tasks.common import image_array, prompt_messages, render_views, shown_images

PROMPTS = Path(__file__).parent / "prompts"
SCHEMA = {"type": "object", "properties": {"brightness": {"type": "number"}}, "required": ["brightness"]}


@register_task
class ToyBrightness(Task):
    name = "toy-brightness"
    version = "1"
    title = "Toy brightness (plug-in)"
    description = "Mean grey level of the middle axial slice."
    roles = ("t1",)
    truth_fields = (TruthField("brightness", "number", "mean grey level, 0-255", required=True, bounds=(-1, 256)),)
    modes = ("single",)
    baseline = "scripted:toy-brightness"
    answer_schema = SCHEMA
    accuracy_metrics = (Metric("abs_error", "|brightness - truth|", higher_is_better=False),)
    fidelity_metrics = (Metric("abs_diff", "|defaced - original|", higher_is_better=False),)

    def build_input(self, case, volumes, mode):
        spec = RenderSpec(plane="axial", slices=Slices("mid"), size=64, window=(128.0, 256.0))
        images, keys = render_views(volumes, [("t1", spec, "t1 mid axial")])
        return ModelInput(prompt_messages(None, "toy-brightness/single.j2", images, prompt_root=PROMPTS), None, keys)

    def parse(self, answer):
        return parse_answer(answer, SCHEMA)

    def score(self, answer, truth):
        return {"abs_error": abs(float(answer["brightness"]) - float(truth["brightness"]))}

    def compare(self, original, defaced):
        return {"abs_diff": abs(float(original["brightness"]) - float(defaced["brightness"]))}


@register_scripted("toy-brightness")
def toy_baseline(spec):
    def policy(messages, tools):
        return json.dumps({"brightness": round(float(np.mean(image_array(shown_images(messages)[-1]))), 2)})

    return policy
'''

DEFACER_MODULE = '''
"""toy-blank: the front quarter of the head becomes air. A plug-in defacer in one module."""
import numpy as np

from defacers.base import Defacer, DefacerOutput, air_value


class ToyBlank(Defacer):
    name = "toy-blank"
    version = "1"

    def _deface(self, volume):
        face = np.zeros(volume.shape, bool)
        face[:, int(0.75 * volume.shape[1]):, :] = True
        return DefacerOutput(data=np.where(face, air_value(volume), volume.data), face=face)
'''


BACKEND_MODULE = '''
"""echo: a model backend that answers every request with the text after "echo:" (a plug-in backend in one module)."""
from harness.models.base import ChatModel
from harness.models.types import Reply


class EchoModel(ChatModel):
    name = "echo"
    description = "answers with its model name (a lab's test backend)"

    async def _complete(self, messages, tools, sampling):
        return Reply(text=self.spec.model, finish_reason="stop")
'''


def _write_plugin(site: Path) -> None:
    package = site / "lab_plugin"
    (package / "prompts" / "toy-brightness").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "toy_task.py").write_text(TASK_MODULE)
    (package / "toy_defacer.py").write_text(DEFACER_MODULE)
    (package / "echo_backend.py").write_text(BACKEND_MODULE)
    (package / "prompts" / "toy-brightness" / "single.j2").write_text(
        'How bright is this slice? Answer JSON: {"brightness": <mean grey level 0-255>}.\n')
    info = site / "lab_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lab-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(dedent("""\
        [harness.tasks]
        toy-brightness = lab_plugin.toy_task:ToyBrightness

        [harness.defacers]
        toy-blank = lab_plugin.toy_defacer:ToyBlank

        [harness.backends]
        echo = lab_plugin.echo_backend:EchoModel
        """))


def _write_cohort(folder: Path) -> Path:
    folder.mkdir()
    rows = []
    rng = np.random.default_rng(0)
    zz, yy, xx = np.mgrid[:24, :32, :24]
    for i, level in enumerate((60.0, 120.0, 180.0)):
        head = ((xx - 12) / 10) ** 2 + ((yy - 16) / 14) ** 2 + ((zz - 12) / 10) ** 2 <= 1
        data = np.where(head, level, 0.0) + rng.normal(0, 2, head.shape)
        nib.save(nib.Nifti1Image(data.transpose(2, 1, 0).astype(np.float32), np.diag([2.0, 2.0, 2.0, 1.0])),
                 str(folder / f"c{i}.nii.gz"))
        rows.append({"id": f"c{i}", "volumes": {"t1": f"c{i}.nii.gz"}, "truth": {"brightness": 50.0}})
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def _harness(args: list[str], site: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)]), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture
def plugin(tmp_path) -> Path:
    site = tmp_path / "site"
    _write_plugin(site)
    return site


def test_a_plugin_task_defacer_and_backend_are_listed_and_evaluated(plugin, tmp_path):
    tasks = _harness(["tasks"], plugin, tmp_path)
    assert tasks.returncode == 0, tasks.stderr
    assert "toy-brightness (v1): Toy brightness (plug-in)" in tasks.stdout and "plug-in lab-plugin" in tasks.stdout
    assert "nph-evans" in tasks.stdout  # the built-ins are still there
    listed = _harness(["defacers"], plugin, tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "toy-blank" in listed.stdout and "lab-plugin" in listed.stdout

    manifest = _write_cohort(tmp_path / "cohort")
    run = _harness(["eval", "--task", "toy-brightness", "--defacer", "toy-blank", "--cohort", str(manifest),
                    "--out", str(tmp_path / "runs"), "--workers", "1", "--quiet", "--no-privacy"], plugin, tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    [run_dir] = (tmp_path / "runs").iterdir()
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 6 and {s["status"] for s in samples} == {"ok"}
    assert {s["condition"] for s in samples} == {"original", "toy-blank"}
    by = {(s["case_id"], s["condition"]): s["answer"]["brightness"] for s in samples}
    assert by[("c0", "original")] < by[("c1", "original")] < by[("c2", "original")]  # the baseline read the images
    summary = json.loads((run_dir / "summary.json").read_text())
    [row] = summary["tasks"][0]["rows"]
    assert summary["tasks"][0]["task"] == "toy-brightness" and row["defacer"] == "toy-blank" and row["n_pairs"] == 3
    qc = [json.loads(line) for line in (run_dir / "qc" / "defacer_qc.jsonl").read_text().splitlines()]
    assert len(qc) == 3 and all(q["status"] == "ok" and q["qc"]["voxels_changed"] > 0 for q in qc)

    models = _harness(["models"], plugin, tmp_path)
    assert models.returncode == 0, models.stderr
    assert "echo" in models.stdout and "toy-brightness" in models.stdout  # the plug-in backend and baseline
    echoed = _harness(["eval", "--task", "toy-brightness", "--defacer", "toy-blank", "--cohort", str(manifest),
                       "--model", 'echo:{"brightness": 42}', "--out", str(tmp_path / "runs-echo"), "--workers", "1",
                       "--quiet", "--no-privacy"], plugin, tmp_path)
    assert echoed.returncode == 0, echoed.stdout + echoed.stderr
    [echo_dir] = (tmp_path / "runs-echo").iterdir()
    answers = [json.loads(line)["answer"] for line in (echo_dir / "samples.jsonl").read_text().splitlines()]
    assert answers == [{"brightness": 42}] * 6


def test_a_broken_plugin_is_skipped_with_a_warning_and_the_built_ins_still_work(plugin, tmp_path):
    (plugin / "lab_plugin" / "toy_defacer.py").write_text("raise ImportError('the lab forgot a dependency')\n")
    listed = _harness(["defacers"], plugin, tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "lab-plugin" in listed.stderr and "the lab forgot a dependency" in listed.stderr
    assert "quickshear" in listed.stdout and "toy-blank" not in listed.stdout
