"""The agent loop with scripted models (tool use, bad calls, budgets) and against the fault-injecting server
(text tool protocol, native tool results with images, cache re-runs)."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from harness.agent.loop import Budget, run_agent, run_single_turn
from harness.models import Message, Reply, ResponseCache, ToolCall, Usage, create_model, parse_model_spec
from harness.models.retry import RetryPolicy
from harness.models import ScriptedModel
from harness.models.scripted import call, register_scripted, steps_policy
from harness.agent.tools import Toolbox
from harness.core.volume import Volume
from tests.fixtures.fake_openai import FakeOpenAI


@pytest.fixture(scope="module")
def toolbox():
    rng = np.random.default_rng(0)
    data = rng.uniform(0, 100, (20, 24, 16)).astype(np.float32)
    return Toolbox({"t1": Volume(data, np.diag([2.0, 1.5, 3.0, 1.0]), "MR")}, image_size=128)


def scripted(steps, **kw):
    return ScriptedModel(parse_model_spec("scripted:test"), policy=steps_policy(steps), **kw)


def run(model, toolbox, budget=Budget(), prompt="How big are the ventricles?"):
    return asyncio.run(run_agent(model, [Message.system("You are an agent."), Message.user(prompt)], toolbox, budget=budget))


def test_agent_uses_tools_then_submits(toolbox):
    model = scripted([call("volume_info", 0), call("view_slice", 1, plane="axial", index=8), call("submit", 2, answer="0.31")])
    res = run(model, toolbox)
    assert res.ok and res.answer == "0.31" and not res.forced
    assert (res.steps, res.tool_calls, res.tool_errors, res.images_sent) == (3, 3, 0, 1)
    kinds = [e["type"] for e in res.transcript]
    assert kinds == ["message", "message", "reply", "tool_result", "reply", "tool_result", "reply", "tool_result", "end"]
    image = res.transcript[5]["images"][0]
    assert len(image["image_sha256"]) == 64 and image["spec_key"] and (image["width"], image["height"]) == (128, 115)  # 40 x 36 mm
    blob = json.dumps(res.to_record())
    assert "base64" not in blob and len(blob) < 20_000  # hashes and render spec keys, never image bytes


def test_bad_calls_go_back_to_the_model_as_errors(toolbox):
    seen = []

    def policy(messages, tools):
        step = sum(m.role == "assistant" for m in messages)
        seen.append([m for m in messages if m.role == "tool"][-1].text if step else None)
        return [
            call("view_slice", 0, plane="oblique", index=3),
            call("open_dicom_header", 1),
            ToolCall("x", "view_slice", None, '{"plane": "axial"', "arguments are not valid JSON"),
            call("view_slice", 3, plane="axial", index=999),
            call("view_slice", 3, plane="axial", index=2, mm=4.0),
            call("measure", 5, plane="axial", index=2, points=[[1, 2]]),
            call("submit", 6, answer="done"),
        ][step]

    res = run(ScriptedModel(parse_model_spec("scripted:test"), policy=policy), toolbox)
    assert res.ok and res.answer == "done" and res.tool_errors == 6 and res.steps == 7
    assert "plane must be one of axial, coronal, sagittal" in seen[1]
    assert "unknown tool 'open_dicom_header'" in seen[2]
    assert "not valid JSON" in seen[3]
    assert "outside the axial range 0..15" in seen[4]
    assert "exactly one of index" in seen[5]
    assert "two [x, y] pairs" in seen[6]


def test_step_budget_forces_submit_then_accepts_answer(toolbox):
    def policy(messages, tools):
        if [t.name for t in tools] == ["submit"]:
            return call("submit", 9, answer="forced guess")
        return call("volume_info", 0)

    res = run(ScriptedModel(parse_model_spec("scripted:test"), policy=policy), toolbox, Budget(max_steps=3))
    assert res.ok and res.forced and res.answer == "forced guess" and res.steps == 4
    forced = [e for e in res.transcript if e["type"] == "forced_submit"]
    assert forced and forced[0]["reason"] == "steps" and "call submit now" in forced[0]["content"][0]


def test_budget_failure_has_a_reason_and_no_answer(toolbox):
    res = run(scripted([call("view_slice", 0, plane="axial", index=1)]), toolbox, Budget(max_steps=2))
    assert not res.ok and res.answer is None and res.failure == "budget_exceeded" and res.failure_detail.startswith("steps")
    assert res.steps == 3  # two steps, then the single forced-submit step
    assert "only submit can be called now" in res.transcript[-2]["text"]


def test_image_budget(toolbox):
    model = scripted([call("view_slice", 0, plane="axial", index=1), call("view_montage", 1, plane="coronal"), call("submit", 2, answer="a")])
    res = run(model, toolbox, Budget(max_images=1))
    assert res.ok and res.forced and res.images_sent == 1
    assert "image budget" in res.transcript[5]["text"] and res.transcript[5]["images"] == []


def test_token_budget(toolbox):
    heavy = Reply("", (call("volume_info", 0),), usage=Usage(600, 500))
    res = run(scripted([heavy]), toolbox, Budget(max_tokens=2000))
    assert res.failure == "budget_exceeded" and res.failure_detail.startswith("tokens") and res.usage.total_tokens >= 2000


def test_wall_time_budget(toolbox):
    class Slow(ScriptedModel):
        async def _complete(self, messages, tools, sampling):
            await asyncio.sleep(0.2)
            return await super()._complete(messages, tools, sampling)

    model = Slow(parse_model_spec("scripted:test"), policy=steps_policy([call("volume_info", 0)]))
    res = run(model, toolbox, Budget(max_wall_s=0.3, forced_grace_s=0.05))
    assert res.failure == "budget_exceeded" and res.answer is None and res.wall_s < 2


def test_text_answer_without_submit_gets_a_nudge(toolbox):
    res = run(scripted(["The answer is 0.3", call("submit", 1, answer="0.3")]), toolbox)
    assert res.ok and res.answer == "0.3"
    nudge = [e for e in res.transcript if e["type"] == "nudge"][0]
    assert "call the submit tool" in nudge["content"][0]


def test_task_supplied_submit_tool(toolbox):
    from harness.agent.tools import Tool

    def submit(evans_ratio: float, slice_index: int) -> dict:
        """Submit the Evans ratio.

        Args:
            evans_ratio: Frontal horn width over inner skull width.
            slice_index: The axial slice it was measured on.
        """
        return {"evans_ratio": evans_ratio, "slice_index": slice_index}

    box = Toolbox(toolbox.volumes, image_size=128, submit=Tool.from_function(submit, submits=True))
    spec = {s.name: s for s in box.specs()}["submit"]
    assert spec.parameters["required"] == ["evans_ratio", "slice_index"]
    assert spec.parameters["properties"]["evans_ratio"] == {"type": "number", "description": "Frontal horn width over inner skull width."}
    res = run(scripted([call("submit", 0, evans_ratio=0.29, slice_index=8)]), box)
    assert res.answer == {"evans_ratio": 0.29, "slice_index": 8}
    res = run(scripted([call("submit", 0, evans_ratio="big", slice_index=8), call("submit", 1, evans_ratio=0.3, slice_index=8)]), box)
    assert res.answer["evans_ratio"] == 0.3 and res.tool_errors == 1


def test_refusal_and_model_errors_fail_the_sample(toolbox):
    res = run(scripted([Reply("", refusal="I cannot assist with medical images.")]), toolbox)
    assert res.failure == "refusal" and res.answer is None
    with FakeOpenAI(default=("status", 503)) as fake:
        model = create_model(parse_model_spec("openai-compatible:m", base_url=fake.base_url), retry=RetryPolicy(max_retries=2, base_delay_s=0.01))
        res = run(model, toolbox)
    assert res.failure == "server_error" and res.answer is None and res.steps == 0 and len(fake.requests) == 3


def test_registered_baseline_runs_end_to_end(toolbox):
    @register_scripted("always-0.3")
    def _factory(spec):
        return steps_policy([call("submit", 0, answer="0.3")])

    res = run(create_model("scripted:always-0.3"), toolbox)
    assert res.answer == "0.3"
    res = run(create_model("scripted:inspect-then-submit"), toolbox)
    assert res.ok and res.answer == "unknown" and res.images_sent == 1 and res.tool_errors == 0


def test_text_tool_protocol_against_a_server(toolbox):
    replies = iter([
        'Let me look.\n<tool_call>{"name": "view_slice", "arguments": {"plane": "axial", "index": 4}}</tool_call>',
        '<tool_call>{"name": "submit", "arguments": {"answer": "0.28"}}</tool_call>',
    ])
    with FakeOpenAI(default=lambda req: ("ok", next(replies))) as fake:
        res = run(create_model(parse_model_spec("openai-compatible:m", base_url=fake.base_url)), toolbox)
    assert res.ok and res.answer == "0.28"
    first, second = fake.requests
    assert "tools" not in first and "<tool_call>" in first["messages"][0]["content"] and "view_montage" in first["messages"][0]["content"]
    last = second["messages"][-1]
    assert last["role"] == "user" and '<tool_result name="view_slice"' in last["content"][0]["text"]
    assert len(fake.images_in(second)) == 1 and second["messages"][-2]["role"] == "assistant"


def test_native_tools_put_images_in_a_following_user_message_and_rerun_hits_cache(toolbox, tmp_path):
    script = lambda: [("tool", "view_slice", '{"plane": "coronal", "index": 3}'), ("tool", "submit", '{"answer": "yes"}')]
    cache = ResponseCache(tmp_path / "c.sqlite")
    with FakeOpenAI() as fake:
        fake.script = script()
        spec = parse_model_spec("openai-compatible:m", base_url=fake.base_url, native_tools=True)
        res = run(create_model(spec, cache), toolbox)
        assert res.ok and res.answer == "yes" and res.backend_calls == 2
        msgs = fake.requests[1]["messages"]
        assert [m["role"] for m in msgs[-3:]] == ["assistant", "tool", "user"]
        assert msgs[-3]["tool_calls"][0]["id"] == msgs[-2]["tool_call_id"] == "call_1_0"
        assert msgs[-1]["content"][1]["type"] == "image_url"
        # a re-run of the finished sample makes zero model calls, even though the server's call ids were random
        again = run(create_model(spec, cache), toolbox)
        assert again.answer == "yes" and again.backend_calls == 0 and len(fake.requests) == 2
        assert [e["type"] for e in again.transcript] == [e["type"] for e in res.transcript]
        assert all(e["cached"] for e in again.transcript if e["type"] == "reply")


def test_single_turn_mode(toolbox):
    img = toolbox.view_montage("axial").images[0]
    with FakeOpenAI() as fake:
        fake.script = [("ok", "Evans ratio 0.31"), ("ok", "   ")]
        model = create_model(parse_model_spec("openai-compatible:m", base_url=fake.base_url))

        async def go():  # one model object lives in one event loop
            ok = await run_single_turn(model, [Message.user("Estimate the Evans ratio.", img)])
            return ok, await run_single_turn(model, [Message.user("again", img)])

        ok, empty = asyncio.run(go())
    assert ok.ok and ok.answer == "Evans ratio 0.31" and ok.images_sent == 1 and ok.steps == 1
    assert empty.failure == "empty_reply" and empty.answer is None
    assert "base64" not in json.dumps(ok.to_record())


def test_retried_requests_count_once(toolbox):
    with FakeOpenAI() as fake:
        fake.script = [("status", 503), ("status", 429, {"Retry-After": "0"}), ("tool", "submit", '{"answer": "x"}')]
        model = create_model(parse_model_spec("openai-compatible:m", base_url=fake.base_url, native_tools=True),
                             retry=RetryPolicy(max_retries=3, base_delay_s=0.01))
        res = run(model, toolbox)
    assert res.answer == "x" and res.steps == 1 and res.backend_calls == 1 and len(fake.requests) == 3
    assert (res.usage.prompt_tokens, res.usage.completion_tokens) == (10, 5)
    assert [e["attempts"] for e in res.transcript if e["type"] == "reply"] == [3]


def test_backend_calls_are_counted_per_sample_under_concurrency(tmp_path):
    """One model object serves many samples at once (the runner's concurrency): each sample counts its own
    uncached requests only, and a cached re-run counts none."""
    cache = ResponseCache(tmp_path / "r.sqlite")
    model = ScriptedModel(parse_model_spec("scripted:test"), cache, policy=lambda messages, tools: "answer " + messages[-1].text)

    async def many():
        return await asyncio.gather(*(run_single_turn(model, [Message.user(f"case {i}")], timeout_s=60) for i in range(6)))

    first = asyncio.run(many())
    assert [r.backend_calls for r in first] == [1] * 6
    again = asyncio.run(many())
    assert [r.backend_calls for r in again] == [0] * 6 and [r.answer for r in again] == [r.answer for r in first]
