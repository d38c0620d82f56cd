"""Model specs, profiles, the OpenAI-compatible backend against a fault-injecting local server, the response
cache and image limits."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time

import pytest
from PIL import Image

import harness.models.types as model_types
from harness.models import (
    ImagePart,
    Message,
    ModelConfigError,
    ModelError,
    ResponseCache,
    Sampling,
    ToolSpec,
    create_model,
    load_profiles,
    parse_model_spec,
    resolve_model_spec,
)
from harness.models.retry import AdaptiveLimiter, RetryPolicy, parse_retry_after
from tests.fixtures.fake_openai import FakeOpenAI, completion

FAST_RETRY = RetryPolicy(max_retries=3, base_delay_s=0.01, max_delay_s=0.05)


def png(width=64, height=48, value=100) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (width, height), value).save(buf, format="PNG")
    return buf.getvalue()


def model_for(fake, *, retry=FAST_RETRY, cache=None, **settings):
    spec = parse_model_spec("openai-compatible:test-model", base_url=fake.base_url, **settings)
    return create_model(spec, cache, retry=retry)


def chat(model, messages, **kw):
    async def go():
        try:
            return await model.chat(messages, **kw)
        finally:
            await model.aclose()

    return asyncio.run(go())


# --- specs and profiles ------------------------------------------------------------------------------------------

def test_spec_strings_pick_backend_and_defaults():
    s = parse_model_spec("vllm:Qwen/Qwen2.5-VL-7B-Instruct")
    assert (s.backend, s.model, s.base_url) == ("vllm", "Qwen/Qwen2.5-VL-7B-Instruct", "http://localhost:8000/v1")
    assert s.api_key_env is None and not s.uses_native_tools
    o = parse_model_spec("openai:gpt-4.1")
    assert o.base_url == "https://api.openai.com/v1" and o.api_key_env == "OPENAI_API_KEY" and o.uses_native_tools
    assert parse_model_spec("hf:/models/tiny").model == "/models/tiny"
    with pytest.raises(ModelConfigError, match="base URL"):
        parse_model_spec("openai-compatible:foo")
    with pytest.raises(ModelConfigError, match="unknown model backend"):
        parse_model_spec("ollama2:foo")
    with pytest.raises(ModelConfigError, match="BACKEND:MODEL"):
        parse_model_spec("vllm:")
    with pytest.raises(ModelConfigError, match="max_images"):
        parse_model_spec("vllm:x", max_images=0)


def test_profiles_from_toml(tmp_path, monkeypatch):
    cfg = tmp_path / "harness.toml"
    cfg.write_text(
        '[models.qwen]\nspec = "vllm:Qwen/Qwen2.5-VL-7B-Instruct"\nbase_url = "http://gpu:8000/v1/"\nmax_images = 8\n'
        'native_tools = true\n\n[models.gpt]\nspec = "openai:gpt-4.1"\napi_key_env = "TEAM_OPENAI_KEY"\n'
    )
    profiles = load_profiles(cfg)
    assert profiles["qwen"].base_url == "http://gpu:8000/v1" and profiles["qwen"].max_images == 8
    assert profiles["qwen"].uses_native_tools and profiles["qwen"].name == "qwen"
    assert resolve_model_spec("qwen", cfg, max_images=4).max_images == 4
    assert resolve_model_spec("hf:/x", cfg).backend == "hf"
    with pytest.raises(ModelConfigError, match="neither a profile"):
        resolve_model_spec("nonesuch", cfg)
    monkeypatch.delenv("TEAM_OPENAI_KEY", raising=False)
    with pytest.raises(ModelConfigError, match=r"\$TEAM_OPENAI_KEY"):
        create_model(profiles["gpt"])
    bad = tmp_path / "bad.toml"
    bad.write_text('[models.x]\nspec = "openai:gpt-4.1"\napi_key = "sk-secret"\n')
    with pytest.raises(ModelConfigError, match="api_key_env") as err:
        load_profiles(bad)
    assert "sk-secret" not in str(err.value)
    (tmp_path / "broken.toml").write_text("[models.x\n")
    with pytest.raises(ModelConfigError, match="broken.toml: not valid TOML"):
        load_profiles(tmp_path / "broken.toml")
    with pytest.raises(ModelConfigError, match="unknown model setting"):
        parse_model_spec("vllm:x", max_imgs=3)


def test_retry_after_parsing_and_limiter():
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert 0 <= parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0  # a date in the past: retry now
    lim = AdaptiveLimiter(16, grow_after=2)
    lim.on_rate_limit()
    lim.on_rate_limit()
    assert lim.limit == 4
    for _ in range(4):
        lim.on_success()
    assert lim.limit == 6


# --- the OpenAI-compatible backend against injected faults -------------------------------------------------------

def test_request_carries_text_image_and_sampling():
    with FakeOpenAI() as fake:
        img = ImagePart.from_png(png())
        reply = chat(model_for(fake), [Message.system("be brief"), Message.user("What is this?", img)], sampling=Sampling(max_tokens=7, seed=3))
    req = fake.requests[0]
    assert req["model"] == "test-model" and req["max_tokens"] == 7 and req["seed"] == 3 and req["temperature"] == 0
    assert req["messages"][0] == {"role": "system", "content": "be brief"}
    parts = req["messages"][1]["content"]
    assert parts[0] == {"type": "text", "text": "What is this?"}
    assert base64.b64decode(parts[1]["image_url"]["url"].split(",", 1)[1]) == img.png
    assert (reply.text, reply.raw_id, reply.usage.prompt_tokens, reply.usage.completion_tokens) == ("ok", "cmpl-1", 10, 5)
    assert reply.attempts == 1 and reply.finish_reason == "stop"


def test_rate_limit_honours_retry_after_and_shrinks_concurrency():
    with FakeOpenAI() as fake:
        fake.script = [("status", 429, {"Retry-After": "0.3"}), ("ok", "after wait")]
        model = model_for(fake, max_concurrency=8)
        t0 = time.perf_counter()

        async def go():
            from harness.models.retry import limiter_for

            reply = await model.chat([Message.user("hi")])
            return reply, limiter_for(model.spec.endpoint, 8)

        reply, limiter = asyncio.run(go())
    assert time.perf_counter() - t0 >= 0.3
    assert reply.text == "after wait" and reply.attempts == 2 and len(fake.requests) == 2
    assert limiter.rate_limited == 1 and limiter.limit == 4


@pytest.mark.parametrize("codes", [(500,), (503, 502)])
def test_transient_errors_are_retried(codes):
    with FakeOpenAI() as fake:
        fake.script = [("status", c) for c in codes] + [("ok", "fine")]
        reply = chat(model_for(fake), [Message.user("hi")])
    assert reply.text == "fine" and reply.attempts == len(codes) + 1 and len(fake.requests) == len(codes) + 1


def test_permanent_errors_are_not_retried():
    with FakeOpenAI(default=("status", 400, {}, "bad image")) as fake:
        with pytest.raises(ModelError) as err:
            chat(model_for(fake), [Message.user("hi")])
    assert err.value.reason == "bad_request" and err.value.status == 400 and len(fake.requests) == 1
    assert "bad image" in str(err.value)


def test_gives_up_after_max_retries_with_reason():
    with FakeOpenAI(default=("status", 503)) as fake:
        with pytest.raises(ModelError) as err:
            chat(model_for(fake), [Message.user("hi")])
    assert err.value.reason == "server_error" and err.value.attempts == 4 and len(fake.requests) == 4


def test_retry_after_longer_than_allowed_fails_now():
    with FakeOpenAI(default=("status", 429, {"Retry-After": "3600"})) as fake:
        with pytest.raises(ModelError) as err:
            chat(model_for(fake), [Message.user("hi")])
    assert err.value.reason == "rate_limited" and len(fake.requests) == 1 and "3600" in str(err.value)


def test_timeouts_are_retried_then_recorded():
    with FakeOpenAI(default=("sleep", 1.0)) as fake:
        with pytest.raises(ModelError) as err:
            chat(model_for(fake, timeout_s=0.2, retry=RetryPolicy(max_retries=1, base_delay_s=0.01)), [Message.user("hi")])
        # on a busy machine the server may read the second request only after the client gave up on it
        deadline = time.monotonic() + 10
        while len(fake.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert err.value.reason == "timeout" and err.value.attempts == 2 and len(fake.requests) == 2


def test_connection_refused_is_recorded():
    from harness.models.serve import free_port

    spec = parse_model_spec("openai-compatible:x", base_url=f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(ModelError) as err:
        chat(create_model(spec, retry=RetryPolicy(max_retries=1, base_delay_s=0.01)), [Message.user("hi")])
    assert err.value.reason == "connection"


@pytest.mark.parametrize(
    "behaviour",
    [("json", {"id": "x", "object": "chat.completion", "choices": []}), ("raw", b"this is not json"), ("json", {"unexpected": 1})],
)
def test_malformed_replies_are_recorded(behaviour):
    with FakeOpenAI(default=behaviour) as fake:
        with pytest.raises(ModelError) as err:
            chat(model_for(fake, retry=RetryPolicy(max_retries=1, base_delay_s=0.01)), [Message.user("hi")])
    assert err.value.reason == "malformed_reply" and len(fake.requests) == 2


def test_huge_reply_is_refused_without_retry():
    with FakeOpenAI(default=("ok", "x" * 200_000)) as fake:
        with pytest.raises(ModelError) as err:
            chat(model_for(fake, max_reply_chars=100_000), [Message.user("hi")])
    assert err.value.reason == "reply_too_large" and len(fake.requests) == 1


def test_empty_reply_and_refusal_are_replies_not_crashes():
    with FakeOpenAI() as fake:
        fake.script = [("ok", ""), ("json", completion(None, refusal="I can't help with that")), ("json", completion("", finish="content_filter"))]
        model = model_for(fake)

        async def go():
            return [await model.chat([Message.user(f"q{i}")]) for i in range(3)]

        empty, refused, filtered = asyncio.run(go())
    assert empty.text == "" and empty.refusal is None
    assert refused.refusal == "I can't help with that"
    assert filtered.refusal and filtered.finish_reason == "content_filter"


def test_malformed_native_tool_call_arguments_are_flagged():
    tool = ToolSpec("submit", "Submit.", {"type": "object", "properties": {"answer": {"type": "string"}}})
    with FakeOpenAI(default=("tool", "submit", '{"answer": "0.3"')) as fake:
        reply = chat(model_for(fake, native_tools=True), [Message.user("hi")], tools=[tool])
    call = reply.tool_calls[0]
    assert call.name == "submit" and call.arguments is None and "not valid JSON" in call.error
    assert fake.requests[0]["tools"][0]["function"]["name"] == "submit"


def test_api_key_never_appears_in_errors(monkeypatch):
    secret = "sk-test-abcdefghijklmnop1234"
    monkeypatch.setenv("MY_KEY", secret)
    with FakeOpenAI(default=("status", 401, {}, f"Incorrect API key provided: {secret}")) as fake:
        spec = parse_model_spec("openai-compatible:m", base_url=fake.base_url, api_key_env="MY_KEY")
        with pytest.raises(ModelError) as err:
            chat(create_model(spec, retry=FAST_RETRY), [Message.user("hi")])
    assert err.value.reason == "auth" and len(fake.requests) == 1
    assert secret not in str(err.value) and "***" in str(err.value)
    assert secret not in json.dumps(spec.describe()) and secret not in repr(spec)


def test_a_server_that_echoes_the_key_gets_it_stored_nowhere(tmp_path, monkeypatch):
    secret = "team-key-7f3a9c21d4e8b6"  # no well-known key pattern: only knowing the key finds it
    monkeypatch.setenv("MY_KEY", secret)
    echo = ("json", completion(f"you sent Bearer {secret}", tool_calls=[
        {"id": "c1", "type": "function", "function": {"name": "submit", "arguments": json.dumps({"note": secret})}}]))
    cache = ResponseCache(tmp_path / "r.sqlite")
    with FakeOpenAI(default=echo) as fake:
        spec = parse_model_spec("openai-compatible:m", base_url=fake.base_url, api_key_env="MY_KEY")
        reply = chat(create_model(spec, cache=cache), [Message.user("hi")], sampling=Sampling(temperature=0.0))
        assert secret not in reply.text and "***" in reply.text
        assert secret not in reply.tool_calls[0].raw_arguments and reply.tool_calls[0].arguments == {"note": "***"}
        monkeypatch.delenv("MY_KEY")  # a later key-less run is served the cached reply
        keyless = parse_model_spec("openai-compatible:m", base_url=fake.base_url)
        again = chat(create_model(keyless, cache=cache), [Message.user("hi")], sampling=Sampling(temperature=0.0))
    assert again.text == reply.text and len(fake.requests) == 1
    cache.close()
    assert secret.encode() not in (tmp_path / "r.sqlite").read_bytes()


def test_each_image_is_base64_encoded_once(monkeypatch):
    calls = []
    real = base64.b64encode
    monkeypatch.setattr(model_types.base64, "b64encode", lambda b: calls.append(len(b)) or real(b))
    img = ImagePart.from_png(png(value=7))
    with FakeOpenAI() as fake:
        fake.script = [("status", 503), ("status", 500)]
        model = model_for(fake)

        async def go():
            for i in range(3):
                await model.chat([Message.user(f"question {i}", img)])
            await model.aclose()

        asyncio.run(go())
    assert len(fake.requests) == 5 and len(calls) == 1


def test_concurrency_limit_is_respected():
    with FakeOpenAI(default=("sleep", 0.1)) as fake:
        model = model_for(fake, max_concurrency=2)

        async def go():
            replies = await asyncio.gather(*(model.chat([Message.user(f"q{i}")]) for i in range(6)))
            await model.aclose()
            return replies

        replies = asyncio.run(go())
    assert len(replies) == 6 and fake.max_in_flight == 2


# --- image limits --------------------------------------------------------------------------------------------------

def test_image_limits_downscale_and_drop_and_are_recorded():
    big, a, b = ImagePart.from_png(png(400, 300)), ImagePart.from_png(png(value=1)), ImagePart.from_png(png(value=2))
    with FakeOpenAI() as fake:
        reply = chat(model_for(fake, max_images=2, max_pixels=30_000), [Message.user("old", a), Message.user("new", b, big)])
    sent = fake.images_in(fake.requests[0])
    assert len(sent) == 2
    assert base64.b64decode(sent[0].split(",", 1)[1]) == b.png  # the oldest image was dropped
    with Image.open(io.BytesIO(base64.b64decode(sent[1].split(",", 1)[1]))) as im:
        assert im.width * im.height <= 30_000 and abs(im.width / im.height - 4 / 3) < 0.02
    notes = " ".join(reply.image_adjustments)
    assert "dropped image" in notes and "downscaled image" in notes and "400x300" in notes


# --- response cache ------------------------------------------------------------------------------------------------

def test_cache_answers_identical_deterministic_requests(tmp_path):
    cache = ResponseCache(tmp_path / "r.sqlite")
    img = ImagePart.from_png(png())
    with FakeOpenAI() as fake:
        model = model_for(fake, cache=cache)

        async def go():
            first = await model.chat([Message.user("q", img)])
            again = await model.chat([Message.user("q", img)])
            other_image = await model.chat([Message.user("q", ImagePart.from_png(png(value=9)))])
            sampled = [await model.chat([Message.user("q", img)], sampling=Sampling(temperature=0.7)) for _ in range(2)]
            seeded = [await model.chat([Message.user("q", img)], sampling=Sampling(temperature=0.7, seed=1)) for _ in range(2)]
            await model.aclose()
            return first, again, other_image, sampled, seeded

        first, again, other_image, sampled, seeded = asyncio.run(go())
    assert not first.cached and again.cached and again.text == first.text and again.raw_id == first.raw_id
    assert not other_image.cached
    assert not any(r.cached for r in sampled)  # temperature > 0 without a seed is not cached
    assert not seeded[0].cached and seeded[1].cached
    assert len(fake.requests) == 1 + 1 + 2 + 1
    # a new process (new cache object, same file) makes zero calls
    with FakeOpenAI() as fake2:
        spec = parse_model_spec("openai-compatible:test-model", base_url=fake.base_url)
        model = create_model(spec, ResponseCache(tmp_path / "r.sqlite"))
        assert chat(model, [Message.user("q", img)]).cached
        assert model.backend_calls == 0 and fake2.requests == []


def test_cache_key_depends_on_endpoint_model_tools_and_sampling():
    from harness.models import request_key

    msgs = [Message.user("q", ImagePart.from_png(png()))]
    base = parse_model_spec("vllm:m")
    tool = ToolSpec("t", "d", {"type": "object"})
    keys = {
        request_key(base, msgs, [], Sampling()),
        request_key(parse_model_spec("vllm:m", base_url="http://other:8000/v1"), msgs, [], Sampling()),
        request_key(parse_model_spec("vllm:m2"), msgs, [], Sampling()),
        request_key(parse_model_spec("vllm:m", revision="abc"), msgs, [], Sampling()),
        request_key(base, msgs, [tool], Sampling()),
        request_key(base, msgs, [], Sampling(max_tokens=5)),
        request_key(base, [Message.user("q", ImagePart.from_png(png(value=3)))], [], Sampling()),
    }
    assert len(keys) == 7
    relabelled = [Message.user("q", ImagePart.from_png(png(), label="axial slice 3"))]  # labels are never sent
    assert request_key(base, msgs, [], Sampling()) == request_key(parse_model_spec("vllm:m"), relabelled, [], Sampling())


def test_vllm_local_without_vllm_says_what_to_do():
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(ModelConfigError, match=r"defacing-harness\[vllm\]"):
            create_model("vllm-local:Qwen/Qwen2.5-VL-3B-Instruct")
    else:
        pytest.skip("vLLM is installed here")


def test_scripted_names_are_checked():
    with pytest.raises(ModelConfigError, match="unknown scripted baseline 'nope'.*inspect-then-submit"):
        create_model("scripted:nope")


def test_text_protocol_parsing():
    from harness.models.wire import parse_text_tool_calls

    text = ('I will look first.\n<tool_call>{"name": "view_slice", "arguments": {"plane": "axial", "index": 3}}</tool_call>\n'
            '<tool_call>{"name": "measure", "arguments": "{\\"plane\\": \\"axial\\"}"}</tool_call>'
            '<tool_call>{"name": broken}</tool_call><tool_call>["no", "name"]</tool_call>'
            '<tool_call>{"name": "submit", "arguments": {"answer": "0.3"}}')
    calls = parse_text_tool_calls(text)
    assert [c.name for c in calls] == ["view_slice", "measure", "", "", "submit"]
    assert calls[0].arguments == {"plane": "axial", "index": 3} and calls[1].arguments == {"plane": "axial"}
    assert "not valid JSON" in calls[2].error and '"name" and "arguments"' in calls[3].error
    assert calls[4].arguments == {"answer": "0.3"}  # an unclosed last block (stopped at a stop token) still counts
    assert len({c.id for c in calls}) == 5 and calls == parse_text_tool_calls(text)  # ids are deterministic
    assert parse_text_tool_calls("The answer is 0.3.") == ()


def test_openai_backend_sends_key_and_max_completion_tokens(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-unit-test-0000000000")
    with FakeOpenAI() as fake:
        spec = parse_model_spec("openai:gpt-4.1", base_url=fake.base_url)
        reply = chat(create_model(spec, retry=FAST_RETRY), [Message.user("hi")], sampling=Sampling(max_tokens=9))
    assert reply.text == "ok"
    assert fake.requests[0]["max_completion_tokens"] == 9 and "max_tokens" not in fake.requests[0]


def test_vllm_local_batches_concurrent_requests(monkeypatch):
    """vLLM itself needs a GPU; a stand-in engine with vLLM's LLM.chat signature checks our batching and mapping."""
    import sys
    import types as pytypes

    batches = []

    class LLM:
        def __init__(self, model, **kw):
            self.model = model

        def chat(self, conversations, params, use_tqdm=False):
            batches.append(len(conversations))
            outs = []
            for conv, p in zip(conversations, params):
                text = conv[-1]["content"] if isinstance(conv[-1]["content"], str) else conv[-1]["content"][0]["text"]
                gen = pytypes.SimpleNamespace(text=f"echo {text}", token_ids=[1, 2], finish_reason="stop")
                outs.append(pytypes.SimpleNamespace(outputs=[gen], prompt_token_ids=[0] * 7, request_id=f"r{len(outs)}"))
            return outs

    fake = pytypes.ModuleType("vllm")
    fake.LLM, fake.SamplingParams = LLM, lambda **kw: kw
    monkeypatch.setitem(sys.modules, "vllm", fake)
    model = create_model("vllm-local:some/model")

    async def go():
        replies = await asyncio.gather(*(model.chat([Message.user(f"q{i}", ImagePart.from_png(png(value=i)))]) for i in range(20)))
        await model.aclose()
        return replies

    replies = asyncio.run(go())
    assert [r.text for r in replies] == [f"echo q{i}" for i in range(20)]
    assert sum(batches) == 20 and len(batches) <= 2 and replies[0].usage.prompt_tokens == 7
