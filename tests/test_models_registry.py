"""The model registries as a user and a plug-in author meet them: every backend and scripted baseline is listed by
a fresh `harness models`, heavy libraries stay unloaded, and a new backend is one class, nothing else to edit."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import _register, app
from harness.models import (ChatModel, Message, ModelConfigError, Reply, backend_names, backend_of, create_model,
                            model_backends, parse_model_spec)

ROOT = Path(__file__).resolve().parents[1]
BUILT_IN_BACKENDS = {"vllm", "openai", "openai-compatible", "vllm-local", "hf", "scripted"}
HEAVY = {"openai", "transformers", "torch", "vllm"}

_register()


def harness(*args):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_a_fresh_harness_models_lists_every_backend_without_loading_heavy_libraries():
    r = harness("-X", "importtime", "-m", "harness", "models")
    assert r.returncode == 0, r.stderr
    listed = {line.split()[0] for line in r.stdout.split("backends")[1].split("scripted baselines")[0].splitlines()[1:]}
    assert listed == BUILT_IN_BACKENDS
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
