"""Prompt templates: every prompt lives in a .j2 file, never in a Python string - the built-in ones in prompts/<task>/
at the repository root, a plug-in task's in a folder of its own package (passed as `root`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import jinja2

from harness.core.errors import HarnessError

# Beside the harness package in a checkout and in site-packages alike (a wheel installs prompts/ as data); found by
# path, not imported, so an editable install made before prompts/ was packaged keeps working.
PROMPTS_DIR = Path(__file__).resolve().parents[2] / "prompts"


@lru_cache(maxsize=None)
def _env(root: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(root)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def render_prompt(name: str, /, root: Path | None = None, **context) -> str:
    """Render root/<name> (default root: the repository's prompts/, e.g. "agent/tool_protocol.j2")."""
    root = Path(root) if root is not None else PROMPTS_DIR
    try:
        return _env(root).get_template(name).render(**context).strip()
    except jinja2.TemplateNotFound:
        raise HarnessError(f"prompt template {root / name} not found") from None
    except jinja2.UndefinedError as exc:
        raise HarnessError(f"prompt template {name}: {exc}") from None
