"""Secrets never reach a manifest, a log, an error or a published file: `redact()` removes values stored under
secret-looking names and anything that looks like a key wherever it appears."""

from __future__ import annotations

import os
import re
from typing import Any

REDACTED = "<redacted>"

_SECRET_WORDS = {"key", "apikey", "token", "secret", "password", "passwd", "pwd", "passphrase", "credential",
                 "credentials", "auth", "authorization", "bearer", "cookie", "signature"}
# Names that contain a secret word but hold content hashes or counts, never secrets.
_SAFE_NAMES = {"cache_key", "cache_keys", "content_key", "spec_key", "render_key", "request_key", "volume_key",
               "sample_key", "sort_key", "run_key", "max_tokens", "max_new_tokens", "max_completion_tokens", "tokens",
               "prompt_tokens", "completion_tokens", "total_tokens", "tokenizer", "num_tokens", "n_tokens"}
KEY_PATTERNS = [
    re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"),  # OpenAI and compatible
    re.compile(r"\bsk-ant-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"\bhf_[A-Za-z0-9]{16,}"),  # Hugging Face
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"),  # GitHub
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}"),
    re.compile(r"\bxox[abprs]-[A-Za-z0-9\-]{10,}"),  # Slack
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),  # AWS access key id
    re.compile(r"\bAIza[0-9A-Za-z_\-]{30,}"),  # Google
    re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),  # JWT
    re.compile(r"(?i)(?<=bearer )[A-Za-z0-9._~+/\-]{8,}=*"),
]
_URL_PASSWORD = re.compile(r"(?<=://)([^/\s:@]+):([^/\s@]+)@")
_ARG_WITH_VALUE = re.compile(r"^(--?[A-Za-z0-9_\-]+)=(.*)$", re.S)


def is_secret_name(name: str) -> bool:
    """True when a config key, option or environment variable name says it holds a secret."""
    lowered = name.lower().lstrip("-")
    if lowered in _SAFE_NAMES:
        return False
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name.lstrip("-"))
    words = [w.lower() for w in re.split(r"[\s_\-.]+", spaced) if w]
    return any(w in _SECRET_WORDS for w in words) or any(s in lowered for s in ("apikey", "api_key", "secret", "passw"))


def _env_secrets() -> list[str]:
    """Values of secret-named environment variables: redacted wherever they show up, whatever their form."""
    return sorted({v for k, v in os.environ.items() if is_secret_name(k) and len(v) >= 8}, key=len, reverse=True)


def redact_text(text: str, env_secrets: list[str] | None = None) -> str:
    """`text` with key-looking substrings, URL passwords and secret environment values replaced."""
    for secret in _env_secrets() if env_secrets is None else env_secrets:
        text = text.replace(secret, REDACTED)
    for pattern in KEY_PATTERNS:
        text = pattern.sub(REDACTED, text)
    return _URL_PASSWORD.sub(lambda m: f"{m.group(1)}:{REDACTED}@", text)


def redact(obj: Any, _env: list[str] | None = None) -> Any:
    """A copy of `obj` (dicts, lists, strings, numbers) with secrets removed.

    Values under secret-looking names (*key*, *token*, *secret*, *password*, auth, ...) become "<redacted>" (the
    name stays, so a reader sees that one was set; None and empty values stay as they are); strings anywhere are
    passed through `redact_text`; a command line's `--api-key VALUE` / `--api-key=VALUE` loses its value.
    """
    env = _env_secrets() if _env is None else _env
    if isinstance(obj, dict):
        return {k: (REDACTED if _has_value(v) and is_secret_name(str(k)) else redact(v, env)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return _redact_sequence(list(obj), env)
    if isinstance(obj, str):
        return redact_text(obj, env)
    return obj


def _has_value(value) -> bool:
    return value not in (None, "", [], {}) and not isinstance(value, bool)


def _redact_sequence(items: list, env: list[str]) -> list:
    out, hide_next = [], False
    for item in items:
        if hide_next and isinstance(item, str):
            out.append(REDACTED)
            hide_next = False
            continue
        hide_next = False
        if isinstance(item, str) and item.startswith("-"):
            m = _ARG_WITH_VALUE.match(item)
            if m and is_secret_name(m.group(1)):
                out.append(f"{m.group(1)}={REDACTED}")
                continue
            if not m and is_secret_name(item):
                hide_next = True
        out.append(redact(item, env))
    return out
