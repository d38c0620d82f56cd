"""The agent loop (a model acting on a case's volumes with tools) and the single-turn mode (fixed images + prompt).

Budgets per sample, and what happens at each limit:
- max_steps (model calls), max_images (images sent, including the first message's), max_tokens (prompt +
  completion over the sample), max_wall_s: when one is reached the model gets a forced-submit prompt
  (prompts/agent/force_submit.j2) and one more call in which only the submit tool works; if it still does not
  submit, the sample fails with reason "budget_exceeded" and the limit's name.
- A model error (after the backend's retries) or a refusal fails the sample with that reason.
A failure is never an answer: AgentResult.answer is None whenever AgentResult.failure is set.

The transcript holds every message, reply and tool result as JSON-ready dicts with image hashes and render spec
keys instead of image bytes.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

from harness.models.base import Model
from harness.models.types import Message, ModelError, Reply, Sampling, Usage
from harness.core.failures import FailureKind
from harness.core.prompts import render_prompt
from harness.agent.tools import Toolbox, ToolResult


@dataclass(frozen=True)
class Budget:
    max_steps: int = 16
    max_images: int = 32
    max_tokens: int = 400_000
    max_wall_s: float = 900.0
    forced_grace_s: float = 120.0  # time allowed for the forced-submit call after the wall budget ran out


@dataclass
class AgentResult:
    answer: Any = None
    failure: FailureKind | None = None  # why there is no answer; None when an answer was submitted
    failure_detail: str = ""
    forced: bool = False  # the answer came after a forced-submit prompt
    steps: int = 0
    images_sent: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    usage: Usage = field(default_factory=Usage)
    backend_calls: int = 0  # model requests not answered from the cache
    wall_s: float = 0.0
    transcript: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failure is None

    def to_record(self) -> dict:
        return {
            "answer": self.answer, "failure": self.failure, "failure_detail": self.failure_detail, "forced": self.forced,
            "steps": self.steps, "images_sent": self.images_sent, "tool_calls": self.tool_calls, "tool_errors": self.tool_errors,
            "usage": {"prompt_tokens": self.usage.prompt_tokens, "completion_tokens": self.usage.completion_tokens},
            "backend_calls": self.backend_calls, "wall_s": round(self.wall_s, 4), "transcript": self.transcript,
        }


def _reply_record(reply: Reply, step: int) -> dict:
    return {"type": "reply", "step": step, **reply.to_record()}


def _tool_record(call, result: ToolResult) -> dict:
    return {"type": "tool_result", "call_id": call.id, "name": call.name, "text": result.text, "error": result.error,
            "images": [i.ref() for i in result.images], "submitted": result.submitted}


def _exceeded(budget: Budget, steps: int, images: int, usage: Usage, elapsed: float) -> str | None:
    if steps >= budget.max_steps:
        return "steps"
    if images > budget.max_images:
        return "images"
    if usage.total_tokens >= budget.max_tokens:
        return "tokens"
    if elapsed >= budget.max_wall_s:
        return "wall_time"
    return None


async def run_agent(model: Model, messages: Sequence[Message], toolbox: Toolbox, *, budget: Budget = Budget(),
                    sampling: Sampling = Sampling()) -> AgentResult:
    """Let `model` work on the case with `toolbox` until it submits or a budget runs out. Never raises for model
    or tool failures: they end up in AgentResult.failure with a reason."""
    t0 = time.monotonic()
    history = list(messages)
    res = AgentResult(transcript=[{"type": "message", **m.to_record()} for m in history])
    res.images_sent = sum(len(m.images) for m in history)
    submit_names = toolbox.submit_names
    all_specs, submit_specs = toolbox.specs(), toolbox.specs(submit_names)
    forced_reason: str | None = None
    pending_limit: str | None = None  # a limit hit inside a step (e.g. images), acted on at the next step

    def finish(failure: FailureKind | None = None, detail: str = "", answer=None) -> AgentResult:
        res.failure, res.failure_detail, res.answer = failure, detail, (answer if failure is None else None)
        res.wall_s = time.monotonic() - t0
        res.transcript.append({"type": "end", "failure": failure, "detail": detail, "forced": res.forced})
        return res

    while True:
        limit = pending_limit or _exceeded(budget, res.steps, res.images_sent, res.usage, time.monotonic() - t0)
        if limit:
            if forced_reason is not None:
                return finish(FailureKind.BUDGET_EXCEEDED, f"{forced_reason}: no answer submitted after the forced-submit prompt")
            forced_reason, res.forced = limit, True
            prompt = Message.user(render_prompt("agent/force_submit.j2", reason=limit, submit_names=list(submit_names)))
            history.append(prompt)
            res.transcript.append({"type": "forced_submit", "reason": limit, **prompt.to_record()})
        remaining = budget.max_wall_s - (time.monotonic() - t0)
        timeout = max(0.0, remaining) + (budget.forced_grace_s if forced_reason else 0.0)
        try:
            reply = await asyncio.wait_for(model.chat(history, submit_specs if forced_reason else all_specs, sampling), timeout=max(timeout, 0.001))
        except ModelError as exc:
            res.backend_calls += 1
            res.transcript.append({"type": "model_error", "reason": exc.reason, "detail": str(exc), "attempts": exc.attempts})
            return finish(exc.reason, str(exc))
        except asyncio.TimeoutError:
            if forced_reason:
                return finish(FailureKind.BUDGET_EXCEEDED, f"{forced_reason}: the forced-submit call did not finish in time")
            pending_limit = "wall_time"
            continue
        except Exception as exc:  # a backend bug must not take the other samples of a run down with it
            res.transcript.append({"type": "model_error", "reason": FailureKind.BACKEND_ERROR, "detail": f"{type(exc).__name__}: {exc}"})
            return finish(FailureKind.BACKEND_ERROR, f"{type(exc).__name__}: {str(exc)[:500]}")
        res.steps += 1
        res.backend_calls += not reply.cached  # per sample: the model's own counter is shared by concurrent samples
        res.usage = res.usage + reply.usage
        # Deterministic call ids keep re-runs byte-identical, so the response cache answers every later turn too.
        calls = [replace(c, id=f"call_{res.steps}_{i}") for i, c in enumerate(reply.tool_calls)]
        res.transcript.append(_reply_record(replace(reply, tool_calls=tuple(calls)), res.steps))
        if reply.refusal:
            return finish(FailureKind.REFUSAL, reply.refusal[:500])
        history.append(Message.assistant(reply.text, calls))
        if not calls:
            if not reply.text.strip() and reply.finish_reason != "length":
                res.transcript.append({"type": "note", "text": "empty reply"})
            history.append(Message.user(render_prompt("agent/use_submit.j2", submit_names=list(submit_names))))
            res.transcript.append({"type": "nudge", **history[-1].to_record()})
            continue
        pending_limit = None
        for call in calls:
            res.tool_calls += 1
            if forced_reason and call.name not in submit_names:
                result = ToolResult(render_prompt("agent/submit_only.j2", submit_names=list(submit_names)), error=True)
            else:
                result = toolbox.call(call)
            if result.images and res.images_sent + len(result.images) > budget.max_images:
                result = ToolResult(f"{result.text}\n(image not sent: the image budget of {budget.max_images} is used up)", error=True)
                pending_limit = "images"
            res.tool_errors += result.error
            res.images_sent += len(result.images)
            history.append(Message.tool(call.id, call.name, result.text, *result.images))
            res.transcript.append(_tool_record(call, result))
            if result.submitted:
                return finish(answer=result.answer)


async def run_single_turn(model: Model, messages: Sequence[Message], *, sampling: Sampling = Sampling(),
                          timeout_s: float | None = None) -> AgentResult:
    """One request, no tools: the answer is the reply's text, for the task's parser. Failures carry a reason."""
    t0 = time.monotonic()
    res = AgentResult(transcript=[{"type": "message", **m.to_record()} for m in messages])
    res.images_sent = sum(len(m.images) for m in messages)
    failure, detail, answer = None, "", None
    try:
        reply = await asyncio.wait_for(model.chat(list(messages), (), sampling), timeout=timeout_s)
    except ModelError as exc:
        res.backend_calls = 1
        res.transcript.append({"type": "model_error", "reason": exc.reason, "detail": str(exc), "attempts": exc.attempts})
        failure, detail = exc.reason, str(exc)
    except asyncio.TimeoutError:
        failure, detail = FailureKind.TIMEOUT, f"no reply within {timeout_s:g} s"
    else:
        res.steps, res.usage, res.backend_calls = 1, reply.usage, int(not reply.cached)
        res.transcript.append(_reply_record(reply, 1))
        if reply.refusal:
            failure, detail = FailureKind.REFUSAL, reply.refusal[:500]
        elif not reply.text.strip():
            failure, detail = FailureKind.EMPTY_REPLY, f"finish reason {reply.finish_reason}"
        else:
            answer = reply.text
    res.failure, res.failure_detail, res.answer = failure, detail, answer
    res.wall_s = time.monotonic() - t0
    res.transcript.append({"type": "end", "failure": failure, "detail": detail, "forced": False})
    return res
