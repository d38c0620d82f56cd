"""A stored transcript as the sample page shows it: one entry per message, reply, tool result or event, the images
numbered in the order the model saw them, the budgets used against the run's limits, and the raw answer.

Transcripts come from disk and from models, so every field is read defensively: an entry of an unknown type is
shown as its JSON, never dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from harness.core.sample import Sample
from harness.view.images import entry_images

TITLES = {"message": "message", "reply": "model reply", "tool_result": "tool result", "forced_submit": "forced submit",
          "nudge": "nudge", "note": "note", "model_error": "model error", "end": "end"}


@dataclass
class Entry:
    kind: str  # the transcript entry's type
    title: str
    text: str = ""
    tool_calls: list[dict] = field(default_factory=list)  # {"id", "name", "arguments" (JSON text), "error"}
    images: list[int] = field(default_factory=list)  # numbers of the sample's images shown here
    facts: list[tuple[str, str]] = field(default_factory=list)
    error: bool = False


def entries(sample: Sample) -> list[Entry]:
    out: list[Entry] = []
    number = 0
    for raw in sample.transcript:
        if not isinstance(raw, dict):
            out.append(Entry("unknown", "unreadable entry", json.dumps(raw, default=str)[:4000], error=True))
            continue
        kind = str(raw.get("type", "unknown"))
        n_images = len(entry_images(raw))
        entry = Entry(kind, TITLES.get(kind, kind), images=list(range(number, number + n_images)))
        number += n_images
        if kind in ("message", "forced_submit", "nudge"):
            entry.title = f"{raw.get('role', '?')} {entry.title if kind != 'message' else 'message'}"
            entry.text = "\n\n".join(p for p in raw.get("content") or [] if isinstance(p, str))
            if kind == "forced_submit":
                entry.facts.append(("reason", str(raw.get("reason", ""))))
        elif kind == "reply":
            entry.title = f"model reply, step {raw.get('step', '?')}"
            entry.text = str(raw.get("text") or "")
            entry.tool_calls = [_call(c) for c in raw.get("tool_calls") or [] if isinstance(c, dict)]
            usage = raw.get("usage") if isinstance(raw.get("usage"), dict) else {}
            entry.facts = [(k, str(v)) for k, v in (
                ("tokens in/out", f"{usage.get('prompt_tokens', '?')}/{usage.get('completion_tokens', '?')}"),
                ("latency", _seconds(raw.get("latency_s"))), ("finish", raw.get("finish_reason")),
                ("from cache", "yes" if raw.get("cached") else None), ("attempts", raw.get("attempts") if raw.get("attempts", 1) != 1 else None),
                ("image changes", "; ".join(map(str, raw.get("image_adjustments") or [])) or None)) if v]
            if raw.get("refusal"):
                entry.facts.append(("refusal", str(raw["refusal"])))
                entry.error = True
        elif kind == "tool_result":
            entry.title = f"tool result: {raw.get('name', '?')}"
            entry.text = str(raw.get("text") or "")
            entry.error = bool(raw.get("error"))
            entry.facts = [("call", str(raw.get("call_id", "")))] + ([("submitted", "yes")] if raw.get("submitted") else [])
        elif kind == "model_error":
            entry.text, entry.error = f"{raw.get('reason', '')}: {raw.get('detail', '')}", True
        elif kind == "end":
            entry.text = f"{raw.get('failure')}: {raw.get('detail', '')}" if raw.get("failure") else "finished"
            entry.error = bool(raw.get("failure"))
            if raw.get("forced"):
                entry.facts.append(("forced submit", "yes"))
        else:
            entry.text = str(raw.get("text") or json.dumps(raw, default=str)[:4000])
        out.append(entry)
    return out


def budgets(sample: Sample, manifest: dict) -> list[tuple[str, str, str]]:
    """(budget, used, limit) of the sample against the run's agent budget (manifest config.budget)."""
    config = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
    limits = config.get("budget") if isinstance(config.get("budget"), dict) else {}
    replies = [e for e in sample.transcript if isinstance(e, dict) and e.get("type") == "reply"]
    images = sum(len(entry_images(e)) for e in sample.transcript if isinstance(e, dict))
    tokens = sum(int(v) for v in (sample.tokens or {}).values() if isinstance(v, (int, float)))
    used = {"max_steps": len(replies), "max_images": images, "max_tokens": tokens,
            "max_wall_s": _seconds(sample.timings.get("model"))}
    return [(name.removeprefix("max_"), str(value), str(limits.get(name, "-"))) for name, value in used.items()]


def raw_answer(sample: Sample) -> str:
    """What the model gave as its answer: the arguments of the call that submitted (agent), else the last reply's
    text (single turn) or, when it has none, its tool calls (an agent whose submissions were all refused)."""
    records = [e for e in sample.transcript if isinstance(e, dict)]
    submitted = {e.get("call_id") for e in records if e.get("type") == "tool_result" and e.get("submitted")}
    replies = [e for e in records if e.get("type") == "reply"]
    for entry in reversed(replies):
        for call in entry.get("tool_calls") or []:
            if isinstance(call, dict) and call.get("id") in submitted:
                return str(call.get("raw_arguments") or json.dumps(call.get("arguments")))
    if not replies:
        return ""
    last = replies[-1]  # no accepted submission: what the model said last, its text or else its calls
    calls = [c for c in last.get("tool_calls") or [] if isinstance(c, dict)]
    return str(last.get("text") or "") or "\n".join(f"{c.get('name')}({c.get('raw_arguments', '')})" for c in calls)


def _call(call: dict) -> dict:
    args = call.get("arguments")
    return {"id": str(call.get("id", "")), "name": str(call.get("name", "?")), "error": call.get("error"),
            "arguments": json.dumps(args, ensure_ascii=False) if args is not None else str(call.get("raw_arguments", ""))}


def _seconds(value) -> str:
    return f"{value:.2f} s" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"
