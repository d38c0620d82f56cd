"""Tolerant parsing of a model's answer text into a task's answer schema.

Models wrap JSON in prose, in ```json fences, leave trailing commas, use single quotes or Python literals, or
answer in plain text ("Evans ratio: 0.31"). :func:`parse_answer` tries, in order, and keeps the first candidate
that validates against the schema:

1. ``json``           the whole answer is JSON
2. ``fenced-json``    a ```json (or bare ```) fenced block, last block first
3. ``embedded-json``  a JSON object inside prose, last object first (the final answer usually comes last)
4. ``repaired-json``  one of the above after conservative repairs: trailing commas, smart quotes, single quotes
                      and True/False/None (read with ``ast.literal_eval``, which evaluates literals only)
5. ``regex``          per-field regular expressions supplied by the task (first capture group = the value)

A candidate that is a one-key wrapper around the answer (``{"answer": {...}}``) is unwrapped (method gets
``+unwrapped``). If nothing validates the result is ``ok=False``, ``method="unparsable"`` and ``error`` says
why; such an answer is counted as unparsable, never scored as a wrong answer.

Schemas are a small JSON-Schema subset: ``type`` (object, number, integer, string, boolean, array, null, or a
list of them), ``properties``, ``required``, ``enum``, ``minimum``/``maximum``, ``exclusiveMinimum``/
``exclusiveMaximum``, ``minLength``/``maxLength``, ``items``, ``minItems``/``maxItems``, ``additionalProperties``
(bool), ``description``/``title`` (ignored). Values are coerced conservatively: numeric strings to numbers,
"yes"/"no"/"true"/"false" to booleans, integral floats to integers, enum strings case- and space-insensitively
to the canonical enum value.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from harness.core.errors import HarnessError

__all__ = ["ParseResult", "SchemaError", "parse_answer", "validate", "check_schema", "MAX_ANSWER_CHARS"]

MAX_ANSWER_CHARS = 100_000
_MAX_CANDIDATES = 64  # JSON objects tried per answer (the last ones); bounds the work on adversarial input
_MAX_DEPTH = 32

_SUPPORTED_KEYS = {
    "type", "properties", "required", "enum", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "minLength", "maxLength", "items", "minItems", "maxItems", "additionalProperties", "description", "title",
}
_TYPES = {"object", "number", "integer", "string", "boolean", "array", "null"}


class SchemaError(HarnessError):
    """A task's answer schema uses something this parser does not understand (a bug in the task, not the model)."""


@dataclass(frozen=True)
class ParseResult:
    """``ok`` and ``value`` (a dict valid for the schema), or ``ok=False`` with the ``error``; ``method`` names
    the route that produced the value (json, fenced-json, embedded-json, repaired-json, regex, ...unwrapped)
    or ``unparsable``."""

    ok: bool
    value: dict | None
    error: str | None
    method: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------------------- schema


def check_schema(schema: Mapping[str, Any], where: str = "schema") -> None:
    """Raise :class:`SchemaError` for schema keywords or types this parser would silently ignore."""
    if not isinstance(schema, Mapping):
        raise SchemaError(f"{where}: must be a mapping, got {type(schema).__name__}")
    unknown = set(schema) - _SUPPORTED_KEYS
    if unknown:
        raise SchemaError(f"{where}: unsupported schema keyword(s) {sorted(unknown)}")
    types = schema.get("type")
    for t in [types] if isinstance(types, str) else (types or []):
        if t not in _TYPES:
            raise SchemaError(f"{where}: unknown type {t!r}")
    for name, sub in (schema.get("properties") or {}).items():
        check_schema(sub, f"{where}.{name}")
    if "items" in schema:
        check_schema(schema["items"], f"{where}[]")
    for name in schema.get("required", []):
        if name not in (schema.get("properties") or {}):
            raise SchemaError(f"{where}: required field {name!r} has no entry in properties")


_TRUE = {"true", "yes", "y", "1"}
_FALSE = {"false", "no", "n", "0"}
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def _norm(text: str) -> str:
    return re.sub(r"[\s_-]+", " ", text.strip().lower())


def _coerce(value: Any, t: str) -> tuple[bool, Any]:
    if t == "null":
        return value is None, None
    if t == "boolean":
        if isinstance(value, bool):
            return True, value
        if isinstance(value, str):
            s = value.strip().strip(".").lower()
            if s in _TRUE:
                return True, True
            if s in _FALSE:
                return True, False
        return False, value
    if t in ("number", "integer"):
        if isinstance(value, bool):
            return False, value
        if isinstance(value, str):
            s = value.strip().rstrip(".")
            if not _NUMBER.match(s):
                return False, value
            value = float(s)
        if isinstance(value, (int, float)):
            if isinstance(value, float) and not math.isfinite(value):
                return False, value
            if t == "integer":
                if isinstance(value, float):
                    if not value.is_integer():
                        return False, value
                    value = int(value)
                return True, value
            return True, value
        return False, value
    if t == "string":
        return (True, value) if isinstance(value, str) else (False, value)
    if t == "array":
        return (True, value) if isinstance(value, list) else (False, value)
    if t == "object":
        return (True, value) if isinstance(value, dict) else (False, value)
    return False, value


def validate(value: Any, schema: Mapping[str, Any], path: str = "answer") -> tuple[Any, str | None]:
    """Coerce and validate ``value``; returns ``(coerced, None)`` or ``(value, reason)``."""
    types = schema.get("type")
    if types is not None:
        for t in [types] if isinstance(types, str) else list(types):
            ok, coerced = _coerce(value, t)
            if ok:
                value = coerced
                break
        else:
            return value, f"{path}: expected {types}, got {_describe(value)}"
    if "enum" in schema:
        options = list(schema["enum"])
        if value not in options:
            match = None
            if isinstance(value, str):
                match = next((o for o in options if isinstance(o, str) and _norm(o) == _norm(value)), None)
            if match is None:
                return value, f"{path}: {_describe(value)} is not one of {options}"
            value = match
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return value, f"{path}: {value} is below the minimum {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            return value, f"{path}: {value} is above the maximum {schema['maximum']}"
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            return value, f"{path}: {value} is not above {schema['exclusiveMinimum']}"
        if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
            return value, f"{path}: {value} is not below {schema['exclusiveMaximum']}"
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            return value, f"{path}: text shorter than {schema['minLength']} characters"
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return value, f"{path}: text longer than {schema['maxLength']} characters"
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            return value, f"{path}: fewer than {schema['minItems']} items"
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            return value, f"{path}: more than {schema['maxItems']} items"
        if "items" in schema:
            out = []
            for i, item in enumerate(value):
                item, err = validate(item, schema["items"], f"{path}[{i}]")
                if err:
                    return value, err
                out.append(item)
            value = out
    if isinstance(value, dict) and ("properties" in schema or "required" in schema):
        props = schema.get("properties", {})
        missing = [k for k in schema.get("required", [])
                   if k not in value or (value[k] is None and "null" not in _as_list(props.get(k, {}).get("type")))]
        if missing:
            return value, f"{path}: missing required field(s) {sorted(missing)}"
        out = {}
        for k, v in value.items():
            if v is None and k in props and k not in schema.get("required", []):
                continue  # an optional field given as null is simply absent
            if k in props:
                v, err = validate(v, props[k], f"{path}.{k}")
                if err:
                    return value, err
                out[k] = v
            elif schema.get("additionalProperties", True) is not False:
                out[k] = v
        value = out
    return value, None


def _as_list(t: Any) -> list:
    return [] if t is None else [t] if isinstance(t, str) else list(t)


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------------------------------------- candidates

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_-]*)[ \t]*\r?\n?(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_SMART = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'", "\u00a0": " "})
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _balanced_objects(text: str) -> list[str]:
    """Top-level ``{...}`` spans found by bracket matching that skips over quoted strings."""
    spans: deque[str] = deque(maxlen=_MAX_CANDIDATES)  # the last ones: a final answer usually comes last
    depth, start, quote, escape = 0, -1, "", False
    for i, ch in enumerate(text):
        if quote:
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == quote or ch == "\n" and quote == "'":
                quote = ""
            continue
        if ch == '"' or (ch == "'" and depth > 0 and not text[i - 1].isalnum()):
            quote = ch
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
            if depth > _MAX_DEPTH:
                depth, start = 0, -1  # nested junk: abandon this object
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                spans.append(text[start : i + 1])
    return list(spans)


def _loads(text: str) -> tuple[Any, str | None]:
    try:
        return json.loads(text), None
    except (ValueError, RecursionError) as exc:
        return None, f"invalid JSON ({str(exc)[:80]})"


_PY_LITERALS = re.compile(r'("(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')|\b(true|false|null)\b')


def _repair(text: str) -> Any:
    """Conservative repairs; returns the parsed object or None."""
    fixed = _TRAILING_COMMA.sub(r"\1", text.translate(_SMART))
    value, err = _loads(fixed)
    if err is None:
        return value
    # Single quotes / Python literals: evaluate as a Python literal (literals only, never code), after mapping
    # JSON's true/false/null outside strings to Python's.
    py = _PY_LITERALS.sub(lambda m: m.group(1) or {"true": "True", "false": "False", "null": "None"}[m.group(2)], fixed)
    try:
        return ast.literal_eval(py)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def _unwrap(value: Any, schema: Mapping[str, Any]) -> tuple[Any, str | None, bool]:
    checked, err = validate(value, schema)
    if err is None:
        return checked, None, False
    if isinstance(value, dict) and len(value) == 1:
        inner = next(iter(value.values()))
        if isinstance(inner, dict):
            checked, inner_err = validate(inner, schema)
            if inner_err is None:
                return checked, None, True
    return value, err, False


def _candidates(text: str) -> list[tuple[str, str]]:
    stripped = text.strip()
    out = [("json", stripped)]
    fences = [body for lang, body in _FENCE.findall(text) if lang.lower() in ("", "json", "json5", "javascript")]
    out += [("fenced-json", body.strip()) for body in reversed(fences)]
    out += [("embedded-json", span) for span in reversed(_balanced_objects(text))]
    return out


def parse_answer(
    text: str | bytes | None,
    schema: Mapping[str, Any],
    *,
    fallbacks: Mapping[str, str | re.Pattern[str]] | None = None,
    max_chars: int = MAX_ANSWER_CHARS,
) -> ParseResult:
    """Parse a model answer into a dict valid for ``schema`` (see the module docstring for the order tried).

    ``fallbacks`` maps field names to regular expressions (case-insensitive; first capture group, or the
    whole match, is the value) used when no JSON candidate validates. Never raises for bad model output; raises
    :class:`SchemaError` for a bad schema or fallback pattern.
    """
    check_schema(schema)
    patterns = {k: re.compile(p, re.IGNORECASE) if isinstance(p, str) else p for k, p in (fallbacks or {}).items()}
    props = schema.get("properties", {})
    for k in patterns:
        if props and k not in props:
            raise SchemaError(f"fallback pattern for unknown field {k!r}")

    if text is None:
        return ParseResult(False, None, "empty answer", "unparsable")
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", errors="replace")
    if not isinstance(text, str):
        return ParseResult(False, None, f"answer is {type(text).__name__}, not text", "unparsable")
    if len(text) > max_chars:
        return ParseResult(False, None, f"answer is {len(text)} characters, over the {max_chars}-character cap",
                           "unparsable")
    text = _CONTROL.sub("", text)
    if not text.strip():
        return ParseResult(False, None, "empty answer", "unparsable")

    # Report the most telling failure: a candidate that parsed but failed validation beats a syntax error.
    errors: dict[str, str] = {}
    candidates = _candidates(text)
    for method, body in candidates:
        if not body.startswith(("{", "[")):
            continue
        value, err = _loads(body)
        if err is not None:
            errors.setdefault("syntax", f"{method}: {err}")
            continue
        checked, err, unwrapped = _unwrap(value, schema)
        if err is None:
            return ParseResult(True, checked, None, method + ("+unwrapped" if unwrapped else ""))
        errors.setdefault("invalid", f"{method}: {err}")
    for method, body in candidates:
        if not body.startswith("{"):
            continue
        value = _repair(body)
        if value is not None:
            checked, err, unwrapped = _unwrap(value, schema)
            if err is None:
                return ParseResult(True, checked, None, "repaired-json" + ("+unwrapped" if unwrapped else ""))
            errors.setdefault("invalid", f"repaired-json: {err}")

    if patterns:
        found: dict[str, Any] = {}
        for name, pattern in patterns.items():
            m = pattern.search(text)
            if m:
                found[name] = (m.group(1) if m.groups() else m.group(0)).strip()
        if found:
            checked, err = validate(found, schema)
            if err is None:
                return ParseResult(True, checked, None, "regex")
            errors.setdefault("invalid", f"regex: {err}")
        else:
            errors.setdefault("syntax", "no JSON object and no fallback pattern matched")
    first_error = errors.get("invalid") or errors.get("syntax")
    return ParseResult(False, None, first_error or "no JSON object found in the answer", "unparsable")
