"""Defacer specs as users write them: `reface`, `quickshear(buffer_mm=5)`, `external:cmd(command=tool {input} {output})`.

The one reader of `NAME(key=value, ...)` (for `harness eval --defacer` and `harness deface --defacer`) and of the
values behind `--param KEY=VALUE`, so a setting means the same wherever it is typed. The whole spec text is the
condition's name in results, so two settings of one defacer stay apart.
"""

from __future__ import annotations

from defacers.base import DefacerError

ParamValue = int | float | bool | str


def parse_param_value(text: str) -> ParamValue:
    """`5` -> 5, `2.5` -> 2.5, `true`/`false` (any case) -> bool, anything else -> the text itself."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def parse_param(item: str, *, spec: str | None = None) -> tuple[str, ParamValue]:
    """`key=value` -> (key, typed value); `spec` is the NAME(...) text it came from, for the error message."""
    key, eq, value = item.partition("=")
    if not eq or not key.strip():
        where, usage = (f" in {spec!r}", "NAME(key=value, ...)") if spec is not None else ("", "KEY=VALUE")
        raise DefacerError(f"cannot read defacer parameter {item!r}{where}; use {usage}")
    return key.strip(), parse_param_value(value.strip())


def parse_defacer_spec(text: str) -> tuple[str, dict[str, ParamValue]]:
    """`reface`, `quickshear(buffer_mm=5)` or `external:cmd(command=tool {input} {output})` -> (name, params).

    Parameters are split at commas, so a value cannot contain one; a text without a closing bracket is all name
    (and then an unknown defacer, named as typed).
    """
    text = text.strip()
    if not text.endswith(")") or "(" not in text:
        return text, {}
    name, _, inner = text[:-1].partition("(")
    params = dict(parse_param(part, spec=text) for part in filter(None, (p.strip() for p in inner.split(","))))
    return name.strip(), params
