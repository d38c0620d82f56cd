"""Model backends behind one async protocol: `await model.chat(messages, tools, sampling) -> Reply`.

    spec = resolve_model_spec("vllm:Qwen/Qwen2.5-VL-7B-Instruct", base_url="http://gpu:8000/v1")
    async with create_model(spec, cache=ResponseCache()) as model:
        reply = await model.chat([Message.user("Describe this slice.", ImagePart.from_rendered(img))])

Specs: `vllm:MODEL` (a `vllm serve MODEL` server, default http://localhost:8000/v1), `openai:MODEL` (key from
$OPENAI_API_KEY), `openai-compatible:MODEL` with a base_url (SGLang, `transformers serve`, Ollama, hosted APIs;
key from the variable named by api_key_env), `vllm-local:PATH_OR_ID`, `hf:PATH_OR_ID`, `scripted:NAME`. Each backend
is one module of harness.models.backends (plug-ins add more); `harness models` lists them. Profiles in
./harness.toml ([models.NAME] tables) name shared settings; see harness.models.spec.

Native tool calling is used for `openai:` and wherever a profile sets native_tools = true (for vLLM that needs
`vllm serve ... --enable-auto-tool-choice --tool-call-parser hermes`); everything else gets the text protocol of
prompts/agent/tool_protocol.j2. A model object belongs to the event loop it was first used in.
"""
from __future__ import annotations

from harness.core.failures import FailureKind
from harness.models.backends import backend_names, backend_of, model_backends, register_backend
from harness.models.backends.scripted import ScriptedModel
from harness.models.base import ChatModel, Model
from harness.models.response_cache import ResponseCache, request_key
from harness.models.retry import AdaptiveLimiter, RetryPolicy
from harness.models.scripted import register_scripted, scripted_names, scripted_revision, steps_policy
from harness.models.serve import serve_model
from harness.models.spec import ModelSpec, load_profiles, parse_model_spec, resolve_model_spec
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
    """The backend for a spec (or a spec string). Heavy libraries (openai, transformers, vLLM) load here, not before."""
    if isinstance(spec, str):
        spec = resolve_model_spec(spec)
    return backend_of(spec)(spec, cache, **kwargs)


__all__ = [
    "AdaptiveLimiter", "ChatModel", "FailureKind", "ImagePart", "Message", "Model", "ModelConfigError", "ModelError",
    "ModelSpec", "Reply", "ResponseCache", "RetryPolicy", "Sampling", "ScriptedModel", "ToolCall", "ToolSpec", "Usage",
    "backend_names", "backend_of", "create_model", "load_profiles", "model_backends", "parse_model_spec",
    "register_backend", "register_scripted", "request_key", "resolve_model_spec", "scripted_names", "scripted_revision",
    "serve_model", "steps_policy",
]
