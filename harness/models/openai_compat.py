"""OpenAI-compatible chat servers: vLLM (`vllm:`), OpenAI (`openai:`), and anything else speaking
/v1/chat/completions (`openai-compatible:` - SGLang, `transformers serve`, Ollama, hosted APIs).

Retries are ours (the client's own are off) so rate limits, transient and permanent failures are told apart,
Retry-After is honoured, and each endpoint's concurrency adapts down on 429s.
"""

from __future__ import annotations

import asyncio
import time

import openai

from harness.models.base import ChatModel
from harness.models.retry import PERMANENT, RATE_LIMIT, TRANSIENT, RetryPolicy, classify_status, limiter_for, parse_retry_after
from harness.models.types import Message, ModelError, Reply, Sampling, ToolCall, ToolSpec, Usage
from harness.models.wire import parse_arguments, to_openai_messages

NO_KEY = "EMPTY"  # local servers (vLLM, SGLang) accept any key; the client insists on one


def redact(text: str, secret: str | None) -> str:
    if secret and secret != NO_KEY and len(secret) >= 4:
        text = text.replace(secret, "***")
    return text


class _Malformed(Exception):
    pass


class OpenAICompatModel(ChatModel):
    def __init__(self, spec, cache=None, *, retry: RetryPolicy | None = None):
        super().__init__(spec, cache)
        self._key = spec.api_key() or NO_KEY
        self.retry = retry or RetryPolicy(max_retries=spec.max_retries)
        self.client = openai.AsyncOpenAI(base_url=spec.base_url, api_key=self._key, max_retries=0, timeout=spec.timeout_s)

    def _request(self, messages: list[Message], tools: list[ToolSpec], sampling: Sampling) -> dict:
        kwargs: dict = {
            "model": self.spec.model,
            "messages": to_openai_messages(messages, native_tools=self.native_tools, images_in_tool_results=self.spec.images_in_tool_results),
            "temperature": sampling.temperature,
            "max_tokens": sampling.max_tokens,
            "stream": False,
        }
        if sampling.top_p is not None:
            kwargs["top_p"] = sampling.top_p
        if sampling.seed is not None:
            kwargs["seed"] = sampling.seed
        if sampling.stop:
            kwargs["stop"] = list(sampling.stop)
        if tools:
            kwargs["tools"] = [t.to_openai() for t in tools]
        if self.spec.extra_body:
            kwargs["extra_body"] = dict(self.spec.extra_body)
        return kwargs

    def _parse(self, completion, latency: float, attempts: int) -> Reply:
        choices = getattr(completion, "choices", None)
        if not isinstance(choices, list) or not choices:
            raise _Malformed("the reply has no choices")
        choice = choices[0]
        message = getattr(choice, "message", None)
        if message is None:
            raise _Malformed("the reply's first choice has no message")
        text = message.content or ""
        if not isinstance(text, str):
            raise _Malformed("the reply's content is not text")
        if len(text) > self.spec.max_reply_chars:
            raise ModelError("reply_too_large", f"{len(text)} characters (limit {self.spec.max_reply_chars})", attempts=attempts)
        calls = []
        for i, tc in enumerate(message.tool_calls or []):
            fn = getattr(tc, "function", None)
            name = getattr(fn, "name", None) or ""
            raw = getattr(fn, "arguments", None) or ""
            args, error = parse_arguments(raw)
            calls.append(ToolCall(getattr(tc, "id", None) or f"call_{i}", name, args, raw if isinstance(raw, str) else str(raw), error))
        usage = getattr(completion, "usage", None)
        refusal = getattr(message, "refusal", None)
        finish = choice.finish_reason
        if finish == "content_filter" and not refusal:
            refusal = "the provider's content filter stopped the reply"
        return Reply(
            text=text,
            tool_calls=tuple(calls),
            usage=Usage(getattr(usage, "prompt_tokens", 0) or 0, getattr(usage, "completion_tokens", 0) or 0),
            latency_s=latency,
            finish_reason=finish,
            raw_id=getattr(completion, "id", None),
            refusal=refusal,
            attempts=attempts,
        )

    async def _complete(self, messages, tools, sampling) -> Reply:
        kwargs = self._request(messages, tools, sampling)
        limiter = limiter_for(self.spec.endpoint, self.spec.max_concurrency)
        attempt = 0
        while True:
            attempt += 1
            retry_after = None
            status = None
            t0 = time.perf_counter()
            try:
                async with limiter:
                    t0 = time.perf_counter()
                    completion = await self.client.chat.completions.create(**kwargs)
                reply = self._parse(completion, time.perf_counter() - t0, attempt)
                limiter.on_success()
                return reply
            except openai.APIStatusError as exc:
                status = exc.status_code
                kind = classify_status(status)
                retry_after = parse_retry_after(exc.response.headers.get("retry-after"))
                reason = {RATE_LIMIT: "rate_limited", TRANSIENT: "server_error"}.get(kind, "auth" if status in (401, 403) else "bad_request")
                detail = f"HTTP {status} from {self.spec.base_url}: {str(exc.message)[:500]}"
                if kind == RATE_LIMIT:
                    limiter.on_rate_limit()
            except openai.APITimeoutError:
                kind, reason, detail = TRANSIENT, "timeout", f"no reply from {self.spec.base_url} within {self.spec.timeout_s:g} s"
            except openai.APIConnectionError as exc:
                kind, reason, detail = TRANSIENT, "connection", f"cannot reach {self.spec.base_url} ({type(exc.__cause__ or exc).__name__})"
            except (openai.APIResponseValidationError, _Malformed, AttributeError, TypeError, ValueError) as exc:
                kind, reason, detail = TRANSIENT, "malformed_reply", f"{self.spec.base_url} sent something that is not a chat completion ({str(exc)[:200]})"
            detail = redact(detail, self._key)
            if kind == PERMANENT or attempt > self.retry.max_retries:
                raise ModelError(reason, detail, attempts=attempt, status=status)
            if retry_after is not None and retry_after > self.retry.max_retry_after_s:
                raise ModelError(reason, f"{detail}; the server asked to wait {retry_after:g} s", attempts=attempt, status=status)
            await asyncio.sleep(self.retry.delay(attempt, retry_after))

    async def aclose(self) -> None:
        await self.client.close()
