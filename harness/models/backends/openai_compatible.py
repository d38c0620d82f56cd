"""`openai-compatible:MODEL`: any server speaking /v1/chat/completions (SGLang, `transformers serve`, Ollama,
hosted APIs). `vllm:` and `openai:` are thin subclasses with their own defaults (vllm_server.py, openai_api.py).

Retries are ours (the client's own are off) so rate limits, transient and permanent failures are told apart,
Retry-After is honoured, and each endpoint's concurrency adapts down on 429s. A profile with several base_urls
(replicas of one model) spreads requests over them (harness.models.replicas): a replica that refuses connections
or times out leaves the rotation and its request moves at once to another. The openai package is imported when
a model is created, not when this module is: listing backends stays cheap.
"""

from __future__ import annotations

import asyncio
import json
import time

from harness.core.failures import FailureKind
from harness.models.backends import register_backend
from harness.models.base import ChatModel
from harness.models.replicas import Replica, ReplicaSet
from harness.models.retry import PERMANENT, RATE_LIMIT, TRANSIENT, RetryPolicy, classify_status, limiter_for, parse_retry_after
from harness.models.types import Message, ModelError, Reply, Sampling, ToolCall, ToolSpec, Usage
from harness.models.wire import parse_arguments, to_openai_messages

NO_KEY = "EMPTY"
CONNECTIONS_PER_POOL = 8  # local servers (vLLM, SGLang) accept any key; the client insists on one
PROBE_TIMEOUT_S = 5.0  # a replica out of rotation is back when it answers within this
MAX_FAILOVERS = 8  # per request: moves to another replica that do not count as retries


def redact(text: str, secret: str | None) -> str:
    if secret and secret != NO_KEY and len(secret) >= 4:
        text = text.replace(secret, "***")
    return text


def redact_bytes(raw: bytes, secret: str | None) -> bytes:
    if secret and secret != NO_KEY and len(secret) >= 4:
        raw = raw.replace(secret.encode(), b"***")
    return raw


class _Malformed(Exception):
    pass


@register_backend
class OpenAICompatModel(ChatModel):
    name = "openai-compatible"
    description = "any /v1/chat/completions server (SGLang, transformers serve, Ollama, hosted)"
    needs_base_url = True
    takes_base_url = True
    servable = True
    max_tokens_field = "max_tokens"  # what the server calls the reply's token limit

    def __init__(self, spec, cache=None, *, retry: RetryPolicy | None = None):
        import openai

        super().__init__(spec, cache)
        self._sdk = openai
        self._key = spec.api_key() or NO_KEY
        self.retry = retry or RetryPolicy(max_retries=spec.max_retries)
        # Several small connection pools instead of one big one: the HTTP pool scans every connection on every
        # request, which at 64 connections cost more CPU than the rest of a request (benchmarks/models.py).
        n_pools = max(1, -(-spec.max_concurrency // CONNECTIONS_PER_POOL))
        self.replicas = ReplicaSet([
            Replica(url, [openai.AsyncOpenAI(base_url=url, api_key=self._key, max_retries=0, timeout=spec.timeout_s)
                          for _ in range(n_pools)])
            for url in (spec.replicas or (spec.base_url,))
        ], probe=self._probe)

    async def _probe(self, replica: Replica) -> bool:
        """Is a replica taken out of rotation back? Any HTTP answer says it listens again (some servers answer
        /models with an error); a refused connection or no answer within PROBE_TIMEOUT_S says not yet."""
        try:
            await replica.clients[0].get("/models", cast_to=bytes, options={"timeout": min(PROBE_TIMEOUT_S, self.spec.timeout_s)})
        except self._sdk.APIStatusError:
            return True
        except (self._sdk.APIConnectionError, self._sdk.APITimeoutError):  # APITimeoutError is a connection error
            return False
        return True

    def _request(self, messages: list[Message], tools: list[ToolSpec], sampling: Sampling) -> dict:
        body: dict = {
            **self.spec.extra_body,
            "model": self.spec.model,
            "messages": to_openai_messages(messages, native_tools=self.native_tools, images_in_tool_results=self.spec.images_in_tool_results),
            "temperature": sampling.temperature,
            self.max_tokens_field: sampling.max_tokens,
            "stream": False,
        }
        if sampling.top_p is not None:
            body["top_p"] = sampling.top_p
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if tools:
            body["tools"] = [t.to_openai() for t in tools]
        return body

    def _parse(self, raw: bytes, latency: float, attempts: int) -> Reply:
        """A chat completion from untrusted bytes: anything unexpected is a malformed reply, never a crash."""
        if len(raw) > 4 * self.spec.max_reply_chars + 65536:
            raise ModelError(FailureKind.REPLY_TOO_LARGE, f"{len(raw)} bytes", attempts=attempts)
        raw = redact_bytes(raw, self._key)  # a server that echoes our key must not get it into samples or the cache
        try:
            doc = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _Malformed(f"not JSON: {exc}") from None
        choices = doc.get("choices") if isinstance(doc, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise _Malformed("the reply has no choices")
        choice = choices[0]
        message = choice.get("message")
        if not isinstance(message, dict):
            raise _Malformed("the reply's first choice has no message")
        text = message.get("content") or ""
        if not isinstance(text, str):
            raise _Malformed("the reply's content is not text")
        if len(text) > self.spec.max_reply_chars:
            raise ModelError(FailureKind.REPLY_TOO_LARGE, f"{len(text)} characters (limit {self.spec.max_reply_chars})", attempts=attempts)
        calls = []
        for i, tc in enumerate(message.get("tool_calls") or []):
            fn = tc.get("function") if isinstance(tc, dict) else None
            if not isinstance(fn, dict):
                raise _Malformed("a tool call has no function")
            raw_args = fn.get("arguments")
            args, error = parse_arguments(raw_args)
            raw_text = raw_args if isinstance(raw_args, str) else json.dumps(raw_args)
            calls.append(ToolCall(str(tc.get("id") or f"call_{i}"), str(fn.get("name") or ""), args, raw_text, error))
        usage = doc.get("usage") if isinstance(doc.get("usage"), dict) else {}
        refusal = message.get("refusal") if isinstance(message.get("refusal"), str) else None
        finish = choice.get("finish_reason")
        if finish == "content_filter" and not refusal:
            refusal = "the provider's content filter stopped the reply"

        def count(name):
            value = usage.get(name)
            return value if isinstance(value, int) and value >= 0 else 0

        return Reply(
            text=text,
            tool_calls=tuple(calls),
            usage=Usage(count("prompt_tokens"), count("completion_tokens")),
            latency_s=latency,
            finish_reason=finish if isinstance(finish, str) else None,
            raw_id=str(doc["id"]) if doc.get("id") is not None else None,
            refusal=refusal,
            attempts=attempts,
        )

    async def _complete(self, messages, tools, sampling) -> Reply:
        body = self._request(messages, tools, sampling)
        openai = self._sdk
        attempt = failovers = 0
        failed = None  # the replica the last attempt failed on
        while True:
            attempt += 1
            retry_after = None
            status = None
            replica = self.replicas.pick(avoid=failed)
            url = replica.url
            limiter = limiter_for(url, self.spec.max_concurrency)  # each replica has its own limit
            t0 = time.perf_counter()
            try:
                replica.outstanding += 1
                try:
                    async with limiter:
                        t0 = time.perf_counter()
                        # post() rather than chat.completions.create(): the SDK's request transform and response
                        # model cost more CPU than everything else here, and we parse untrusted replies ourselves.
                        client = replica.clients[replica.served % len(replica.clients)]
                        replica.served += 1
                        raw = await client.post("/chat/completions", cast_to=bytes, body=body)
                finally:
                    replica.outstanding -= 1
                reply = self._parse(raw, time.perf_counter() - t0, attempt)
                limiter.on_success()
                return reply
            except openai.APIStatusError as exc:
                status = exc.status_code
                kind = classify_status(status)
                retry_after = parse_retry_after(exc.response.headers.get("retry-after"))
                reason = {RATE_LIMIT: FailureKind.RATE_LIMITED, TRANSIENT: FailureKind.SERVER_ERROR}.get(
                    kind, FailureKind.AUTH if status in (401, 403) else FailureKind.BAD_REQUEST)
                detail = f"HTTP {status} from {url}: {str(exc.message)[:500]}"
                if kind == RATE_LIMIT:
                    limiter.on_rate_limit()
            except openai.APITimeoutError:
                kind, reason, detail = TRANSIENT, FailureKind.TIMEOUT, f"no reply from {url} within {self.spec.timeout_s:g} s"
            except openai.APIConnectionError as exc:
                kind, reason, detail = TRANSIENT, FailureKind.CONNECTION, f"cannot reach {url} ({type(exc.__cause__ or exc).__name__})"
            except (openai.APIResponseValidationError, _Malformed) as exc:
                kind, reason, detail = TRANSIENT, FailureKind.MALFORMED_REPLY, f"{url} sent something that is not a chat completion ({str(exc)[:200]})"
            detail = redact(detail, self._key)
            failed = replica
            if reason in (FailureKind.TIMEOUT, FailureKind.CONNECTION) and len(self.replicas.replicas) > 1:
                if replica.live:
                    self.replicas.mark_down(replica)
                if self.replicas.any_live_besides(replica) and failovers < MAX_FAILOVERS:
                    failovers += 1  # at once on another replica, without using up one of the request's retries
                    continue
            if kind == PERMANENT or attempt - failovers > self.retry.max_retries:
                raise ModelError(reason, detail, attempts=attempt, status=status)
            if retry_after is not None and retry_after > self.retry.max_retry_after_s:
                raise ModelError(reason, f"{detail}; the server asked to wait {retry_after:g} s", attempts=attempt, status=status)
            await asyncio.sleep(self.retry.delay(attempt, retry_after))

    async def aclose(self) -> None:
        await self.replicas.aclose()
        for replica in self.replicas.replicas:
            for client in replica.clients:
                await client.close()
