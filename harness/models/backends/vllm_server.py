"""`vllm:MODEL`: a `vllm serve MODEL` server (OpenAI-compatible). --serve starts one with the profile's
serve_command. Native tool calls need `vllm serve ... --enable-auto-tool-choice --tool-call-parser hermes` and
native_tools = true in the profile; without them the text tool protocol is used.
"""

from __future__ import annotations

from harness.models.backends import register_backend
from harness.models.backends.openai_compatible import OpenAICompatModel


@register_backend
class VLLMServerModel(OpenAICompatModel):
    name = "vllm"
    description = "a `vllm serve` server (OpenAI-compatible)"
    default_base_url = "http://localhost:8000/v1"
    needs_base_url = False
