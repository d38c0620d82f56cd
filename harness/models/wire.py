"""Turning harness messages into the OpenAI chat format, and the text tool-call protocol for models without
native tool calling.

Text protocol (documented to the model by prompts/agent/tool_protocol.j2): the model writes
`<tool_call>{"name": "...", "arguments": {...}}</tool_call>` blocks in its reply; results come back in a user
message (prompts/agent/tool_result.j2). With native tools, results go in `tool` messages and any images they carry
follow in one user message, since most chat APIs accept images only from the user.
"""

from __future__ import annotations

import hashlib
import json
import re

from harness.models.types import ImagePart, Message, ToolCall, ToolSpec
from harness.core.prompts import render_prompt

# A closing tag may be missing when generation stopped at a stop token right after the JSON.
TOOL_CALL_RE = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|\Z)", re.DOTALL)


def openai_image(image: ImagePart) -> dict:
    return {"type": "image_url", "image_url": {"url": image.data_url}}


def _content(parts, image_part=openai_image):
    if all(isinstance(p, str) for p in parts):
        return "".join(parts)
    out = []
    for p in parts:
        if isinstance(p, ImagePart):
            out.append(image_part(p))
        elif p:
            out.append({"type": "text", "text": p})
    return out


def _tool_result_text(m: Message) -> str:
    return render_prompt("agent/tool_result.j2", name=m.name or "tool", call_id=m.tool_call_id or "", text=m.text, n_images=len(m.images))


def to_openai_messages(messages: list[Message], *, native_tools: bool, images_in_tool_results: bool = False, image_part=openai_image) -> list[dict]:
    """`image_part` turns an image into a content part (in-process backends pass their own, e.g. a PIL image)."""
    out: list[dict] = []
    pending_images: list[ImagePart] = []
    pending_text: list[str] = []  # text-protocol results, merged into one user message

    def flush():
        if pending_text:
            out.append({"role": "user", "content": _content(["\n\n".join(pending_text), *pending_images], image_part)})
        elif pending_images:
            out.append({"role": "user", "content": _content([render_prompt("agent/tool_images.j2", n_images=len(pending_images)), *pending_images], image_part)})
        pending_images.clear()
        pending_text.clear()

    for m in messages:
        if m.role == "tool":
            if not native_tools:
                pending_text.append(_tool_result_text(m))
                pending_images.extend(m.images)
            elif images_in_tool_results:
                out.append({"role": "tool", "tool_call_id": m.tool_call_id, "content": _content(m.content, image_part)})
            else:
                out.append({"role": "tool", "tool_call_id": m.tool_call_id, "content": _tool_result_text(m)})
                pending_images.extend(m.images)
            continue
        flush()
        if m.role == "assistant":
            d: dict = {"role": "assistant", "content": m.text or None}
            if native_tools and m.tool_calls:
                d["tool_calls"] = [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.raw_arguments or json.dumps(c.arguments or {})}}
                    for c in m.tool_calls
                ]
            elif d["content"] is None:
                d["content"] = ""
            out.append(d)
        else:
            out.append({"role": m.role, "content": _content(m.content, image_part)})
    flush()
    return out


def tool_protocol_text(tools: list[ToolSpec]) -> str:
    return render_prompt("agent/tool_protocol.j2", tools=[{"name": t.name, "description": t.description, "parameters": json.dumps(t.parameters)} for t in tools])


def with_tool_protocol(messages: list[Message], tools: list[ToolSpec]) -> list[Message]:
    """Describe the tools in the system message (inserted when there is none)."""
    protocol = tool_protocol_text(tools)
    if messages and messages[0].role == "system":
        first = messages[0]
        return [Message("system", (*first.content, "\n\n" + protocol)), *messages[1:]]
    return [Message.system(protocol), *messages]


def parse_arguments(raw) -> tuple[dict | None, str | None]:
    if isinstance(raw, dict):
        return raw, None
    try:
        value = json.loads(raw) if raw not in (None, "") else {}
    except (json.JSONDecodeError, TypeError) as exc:
        return None, f"arguments are not valid JSON ({exc})"
    if not isinstance(value, dict):
        return None, f"arguments must be a JSON object, got {type(value).__name__}"
    return value, None


def parse_text_tool_calls(text: str) -> tuple[ToolCall, ...]:
    """Tool calls written in the text protocol; a malformed block becomes a call with `error` set."""
    calls = []
    digest = hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:8]
    for i, m in enumerate(TOOL_CALL_RE.finditer(text)):
        body, call_id = m.group(1), f"call_{digest}_{i}"
        try:
            obj = json.loads(body)
        except json.JSONDecodeError as exc:
            calls.append(ToolCall(call_id, "", None, body[:2000], f"the tool call is not valid JSON ({exc})"))
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
            calls.append(ToolCall(call_id, "", None, body[:2000], 'a tool call must be a JSON object with "name" and "arguments"'))
            continue
        raw = obj.get("arguments", {})
        args, error = parse_arguments(raw)
        calls.append(ToolCall(call_id, obj["name"], args, raw if isinstance(raw, str) else json.dumps(raw), error))
    return tuple(calls)
