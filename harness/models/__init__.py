"""Model backends behind one async protocol: `await model.chat(messages, tools, sampling) -> Reply`.

    spec = resolve_model_spec("vllm:Qwen/Qwen2.5-VL-7B-Instruct", base_url="http://gpu:8000/v1")
    async with create_model(spec, cache=ResponseCache()) as model:
        reply = await model.chat([Message.user("Describe this slice.", ImagePart.from_rendered(img))])

Specs: `vllm:MODEL` (a `vllm serve MODEL` server, default http://localhost:8000/v1), `openai:MODEL` (key from
$OPENAI_API_KEY), `openai-compatible:MODEL` with a base_url (SGLang, `transformers serve`, Ollama, hosted APIs;
key from the variable named by api_key_env), `vllm-local:PATH_OR_ID`, `hf:PATH_OR_ID`, `scripted:NAME`. Profiles
in ./harness.toml ([models.NAME] tables) name shared settings; see harness.models.spec.

Native tool calling is used for `openai:` and wherever a profile sets native_tools = true (for vLLM that needs
`vllm serve ... --enable-auto-tool-choice --tool-call-parser hermes`); everything else gets the text protocol of
prompts/agent/tool_protocol.j2. A model object belongs to the event loop it was first used in.
"""
from __future__ import annotations

from harness.models.base import ChatModel, Model
from harness.models.response_cache import ResponseCache, request_key
from harness.models.retry import AdaptiveLimiter, RetryPolicy
from harness.models.scripted import ScriptedModel, register_scripted, scripted_names, steps_policy
from harness.models.serve import serve_model
from harness.models.spec import BACKENDS, ModelSpec, load_profiles, parse_model_spec, resolve_model_spec
from harness.models.types import (
    ImagePart,
    Message,
    ModelConfigError,
    ModelError,
    Reply,
    Sampling,
    ToolCall,
    ToolSpec,
    Usage,
)


def create_model(spec: ModelSpec | str, cache: ResponseCache | None = None, **kwargs) -> ChatModel:
    """The backend for a spec (or a spec string). Heavy libraries (transformers, vLLM) load on first use."""
    if isinstance(spec, str):
        spec = resolve_model_spec(spec)
    if spec.backend in ("vllm", "openai", "openai-compatible"):
        from harness.models.openai_compat import OpenAICompatModel

        return OpenAICompatModel(spec, cache, **kwargs)
    if spec.backend == "hf":
        from harness.models.hf_local import HFLocalModel

        return HFLocalModel(spec, cache)
    if spec.backend == "vllm-local":
        from harness.models.vllm_local import VLLMLocalModel

        return VLLMLocalModel(spec, cache)
    if spec.backend == "scripted":
        return ScriptedModel(spec, cache, **kwargs)
    raise ModelConfigError(f"unknown backend {spec.backend!r}")


__all__ = [
    "BACKENDS", "AdaptiveLimiter", "ChatModel", "ImagePart", "Message", "Model", "ModelConfigError", "ModelError",
    "ModelSpec", "Reply", "ResponseCache", "RetryPolicy", "Sampling", "ScriptedModel", "ToolCall", "ToolSpec", "Usage",
    "create_model", "load_profiles", "parse_model_spec", "register_scripted", "request_key", "resolve_model_spec",
    "scripted_names", "serve_model", "steps_policy",
]
