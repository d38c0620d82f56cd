"""Real models offline: the in-process transformers backend on a tiny random LLaVA, and the same model behind a
real `transformers serve` process started and stopped by serve_model (--serve)."""

from __future__ import annotations

import asyncio
import shutil
import sys
import time

import numpy as np
import pytest

from harness.agent.loop import Budget, run_agent
from harness.models import ImagePart, Message, ModelError, Sampling, create_model, parse_model_spec, serve_model
from harness.models.serve import _healthy
from harness.imaging.render import RenderSpec, render
from harness.agent.tools import Toolbox
from harness.core.volume import Volume

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def head_image():
    rng = np.random.default_rng(1)
    vol = Volume(rng.uniform(0, 100, (24, 28, 20)).astype(np.float32), np.diag([2.0, 2.0, 2.0, 1.0]), "MR")
    return vol, ImagePart.from_rendered(render(vol, RenderSpec(size=96))[0])


def test_hf_backend_chats_with_images(tiny_vlm, head_image):
    vol, img = head_image
    model = create_model(parse_model_spec(f"hf:{tiny_vlm}"))

    async def go():
        a = await model.chat([Message.user("Describe the image.", img)], sampling=Sampling(max_tokens=12))
        b = await model.chat([Message.user("Describe the image.", img)], sampling=Sampling(max_tokens=12))
        return a, b

    a, b = asyncio.run(go())
    assert isinstance(a.text, str) and a.text == b.text  # greedy decoding is deterministic
    assert a.usage.prompt_tokens > 16 and 0 < a.usage.completion_tokens <= 12  # 16 image tokens + the text
    assert a.finish_reason in ("stop", "length") and a.latency_s > 0


def test_hf_agent_never_crashes_on_noise(tiny_vlm, head_image):
    vol, _ = head_image
    model = create_model(parse_model_spec(f"hf:{tiny_vlm}"))
    res = asyncio.run(run_agent(model, [Message.user("Call view_slice, then submit.")], Toolbox({"t1": vol}, image_size=96),
                                budget=Budget(max_steps=2), sampling=Sampling(max_tokens=8)))
    assert (res.answer is None) == (res.failure is not None)
    assert res.failure in (None, "budget_exceeded") and res.steps == 3
    assert res.transcript[-1]["type"] == "end"


@pytest.fixture()
def serve_env(tmp_path):
    if shutil.which("transformers") is None:
        pytest.skip("the transformers CLI is not on PATH")
    pytest.importorskip("fastapi", reason="transformers serve needs fastapi and uvicorn (pip install 'transformers[serving]')")
    pytest.importorskip("uvicorn")
    pytest.importorskip("accelerate", reason="transformers serve --device needs accelerate")
    (tmp_path / "hub").mkdir()
    return {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}


def test_openai_compatible_against_transformers_serve(tiny_vlm, head_image, serve_env, tmp_path):
    vol, img = head_image
    spec = parse_model_spec(f"openai-compatible:{tiny_vlm}", base_url="http://unused/v1", timeout_s=120,
                            serve_command="transformers serve {model} --device cpu --host {host} --port {port}")
    with serve_model(spec, env=serve_env, startup_timeout_s=180, log_path=tmp_path / "serve.log") as served:
        base_url = served.base_url
        assert _healthy(base_url)
        model = create_model(served)

        async def go():
            one = await model.chat([Message.user("What plane is this?", img)], sampling=Sampling(max_tokens=6))
            res = await run_agent(model, [Message.user("Look, then submit.")], Toolbox({"t1": vol}, image_size=96),
                                  budget=Budget(max_steps=1), sampling=Sampling(max_tokens=6))
            await model.aclose()
            return one, res

        one, res = asyncio.run(go())
    assert isinstance(one.text, str) and one.usage.prompt_tokens > 16 and one.usage.completion_tokens > 0 and one.raw_id
    assert (res.answer is None) == (res.failure is not None) and res.steps == 2
    assert not _healthy(base_url)  # the server was stopped


def test_serve_reports_a_server_that_dies_or_never_gets_healthy(tmp_path):
    dying = parse_model_spec("vllm:m", serve_command=f"{sys.executable} -c \"print('boom: no GPU'); raise SystemExit(3)\"")
    with pytest.raises(ModelError, match=r"exited with code 3[\s\S]*boom: no GPU"):
        with serve_model(dying, log_path=tmp_path / "a.log"):
            pass
    slow = parse_model_spec("vllm:m", serve_command=f"{sys.executable} -c \"import time; time.sleep(60)\"")
    t0 = time.monotonic()
    with pytest.raises(ModelError, match="not healthy") as err:
        with serve_model(slow, startup_timeout_s=1.0, log_path=tmp_path / "b.log"):
            pass
    assert err.value.reason == "timeout" and time.monotonic() - t0 < 15
