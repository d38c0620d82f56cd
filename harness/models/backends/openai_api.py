"""`openai:MODEL`: the OpenAI API. The key comes from $OPENAI_API_KEY (or the variable a profile names in
api_key_env); tool calls are native.
"""

from __future__ import annotations

from harness.models.backends import register_backend
from harness.models.backends.openai_compatible import OpenAICompatModel


@register_backend
class OpenAIModel(OpenAICompatModel):
    name = "openai"
    description = "the OpenAI API"
    default_base_url = "https://api.openai.com/v1"
    default_key_env = "OPENAI_API_KEY"
    needs_base_url = False
    servable = False  # nothing to start: it is a hosted API
    native_tools_default = True
    # OpenAI's newer models refuse max_tokens; other servers do not all know max_completion_tokens.
    max_tokens_field = "max_completion_tokens"
