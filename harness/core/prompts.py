"""Prompt templates: every prompt lives in prompts/<task>/*.j2 at the repository root, never in Python strings."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import jinja2

from harness.core.errors import HarnessError

PROMPTS_DIR = Path(__file__).resolve().parents[2] / "prompts"


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(PROMPTS_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def render_prompt(name: str, /, **context) -> str:
    """Render prompts/<name> (e.g. "agent/tool_protocol.j2") with the given variables."""
    try:
        return _env().get_template(name).render(**context).strip()
    except jinja2.TemplateNotFound:
        raise HarnessError(f"prompt template {PROMPTS_DIR / name} not found") from None
    except jinja2.UndefinedError as exc:
        raise HarnessError(f"prompt template {name}: {exc}") from None
