"""The model registries as a user and a plug-in author meet them: every backend and scripted baseline is listed by
a fresh `harness models`, heavy libraries stay unloaded, and a new backend is one class, nothing else to edit."""

from __future__ import annotations

import asyncio
import importlib.util
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import _register, app
from harness.models import (ChatModel, Message, ModelConfigError, Reply, backend_names, backend_of, create_model,
                            model_backends, parse_model_spec, scripted_revision)

ROOT = Path(__file__).resolve().parents[1]
BUILT_IN_BACKENDS = {"vllm", "openai", "openai-compatible", "vllm-local", "hf", "scripted"}
BUILT_IN_BASELINES = {"inspect-then-submit", "nph-evans", "tumor-slice", "tumor-dx", "ct-report"}
REVISION = re.compile(r"code-[0-9a-f]{12}")
HEAVY = {"openai", "transformers", "torch", "vllm"}

_register()


def harness(*args):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_a_fresh_harness_models_lists_every_backend_and_baseline_without_loading_heavy_libraries():
    r = harness("-X", "importtime", "-m", "harness", "models")
    assert r.returncode == 0, r.stderr
    backends, baselines = r.stdout.split("backends")[1].split("scripted baselines")
    assert {line.split()[0] for line in backends.splitlines()[1:]} >= BUILT_IN_BACKENDS
    # the task baselines are declared in task modules nothing had imported: the registry must find them itself
    revisions = dict(line.split() for line in baselines.splitlines()[1:])
    assert set(revisions) >= BUILT_IN_BASELINES and all(REVISION.fullmatch(r) for r in revisions.values()), baselines
    imported = {line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert not imported & HEAVY, f"listing backends imported {imported & HEAVY}"


class EchoModel(ChatModel):
    """What a plug-in's backend module holds: one class, its declarations, and `_complete`."""

    name = "echo"
    description = "replies with the last user message"
    default_base_url = "http://echo.example/v1"
    default_key_env = "ECHO_KEY"
    takes_base_url = True

    async def _complete(self, messages, tools, sampling) -> Reply:
        return Reply(text=messages[-1].text, finish_reason="stop")


def test_a_backend_registered_under_a_new_name_is_usable_and_listed():
    with model_backends.override("echo", EchoModel):
        spec = parse_model_spec("echo:any-model")
        assert (spec.base_url, spec.api_key_env, spec.uses_native_tools) == ("http://echo.example/v1", "ECHO_KEY", False)
        assert backend_of(spec) is backend_of("echo:x") is backend_of("echo") is EchoModel and backend_of(spec).takes_base_url
        model = create_model("echo:any-model")
        assert isinstance(model, EchoModel) and asyncio.run(model.chat([Message.user("hello")])).text == "hello"
        out = CliRunner().invoke(app, ["models"])
        assert out.exit_code == 0, out.output
        assert "echo" in out.output and "replies with the last user message; default http://echo.example/v1; key from $ECHO_KEY" in out.output
    assert "echo" not in backend_names()
    with pytest.raises(ModelConfigError, match="unknown model backend 'echo'"):
        create_model("echo:any-model")


def test_backends_declare_what_the_runner_asks():
    assert {n for n in backend_names() if backend_of(n).servable} == {"vllm", "openai-compatible"}  # --serve
    assert {n for n in backend_names() if backend_of(n).takes_base_url} == {"vllm", "openai", "openai-compatible"}
    assert [n for n in backend_names() if backend_of(n).needs_base_url] == ["openai-compatible"]
    assert [n for n in backend_names() if backend_of(n).native_tools_default] == ["openai"]


BASELINE = """
from harness.models.scripted import call, register_scripted, steps_policy


@register_scripted("probe-" + __name__, files=("template.j2",))
def probe(spec):
    return steps_policy([call("submit", 0, answer={answer!r})])
"""


def _import_baseline(path: Path) -> str:
    """Import the file as a new module (its baseline is named after the module); return the baseline's name."""
    module_name = f"probe_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return "probe-" + module_name


def test_a_baseline_revision_changes_with_its_code_and_its_files(tmp_path):
    path, template = tmp_path / "probe_baseline.py", tmp_path / "template.j2"
    path.write_text(BASELINE.format(answer="0.3"))
    template.write_text("v1")
    name = _import_baseline(path)
    first = scripted_revision(name)
    assert REVISION.fullmatch(first) and scripted_revision(_import_baseline(path)) == first  # same code, same revision
    path.write_text(BASELINE.format(answer="0.4"))
    edited = scripted_revision(_import_baseline(path))
    template.write_text("v2")
    retemplated = scripted_revision(_import_baseline(path))
    assert len({first, edited, retemplated}) == 3
    assert create_model("scripted:" + name).spec.revision == first  # the revision reaches the response-cache keys
