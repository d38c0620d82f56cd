"""Every kind of failure a sample can record, in one place.

A failure is recorded with its kind and a message, counted as coverage and never scored as an answer. The values
are the strings stored in samples.jsonl (`error.kind`), so run folders written before this enum existed still
read: `FailureKind("timeout") is FailureKind.TIMEOUT`, and a member compares equal to, and serialises as, its
string. Each member carries a one-line `meaning` for listings and reports.
"""

from __future__ import annotations

from enum import StrEnum


class FailureKind(StrEnum):
    meaning: str

    def __new__(cls, value: str, meaning: str):
        member = str.__new__(cls, value)
        member._value_ = value
        member.meaning = meaning
        return member

    # --- a model request (harness.models) -------------------------------------------------------------------------
    RATE_LIMITED = "rate_limited", "the server kept answering 429 (rate limited) until the retry budget ran out"
    SERVER_ERROR = "server_error", "the server kept answering 5xx until the retry budget ran out"
    TIMEOUT = "timeout", "no reply in time (a request, a server that never became healthy, or a whole sample)"
    CONNECTION = "connection", "the server could not be reached or started"
    BAD_REQUEST = "bad_request", "the server rejected the request (4xx other than 429, 401, 403); not retried"
    AUTH = "auth", "the server refused the credentials (401/403); not retried"
    MALFORMED_REPLY = "malformed_reply", "the server answered with something that is not a chat completion"
    REPLY_TOO_LARGE = "reply_too_large", "the reply was longer than the model's max_reply_chars"
    REFUSAL = "refusal", "the model (or the provider's content filter) declined to answer"
    EMPTY_REPLY = "empty_reply", "the model answered with no text and no tool call"
    BACKEND_ERROR = "backend_error", "an in-process backend (transformers, vLLM, a scripted baseline) raised"

    # --- the agent loop (harness.agent.loop) --------------------------------------------------------------------
    BUDGET_EXCEEDED = "budget_exceeded", "the agent used up its steps, images, tokens or time without submitting"
    NO_ANSWER = "no_answer", "the conversation ended without an answer"

    # --- the runner's other stages (harness.engine.runner) --------------------------------------------------------
    BAD_INPUT = "bad_input", "a case's volume could not be read or turned into the task's inputs"
    DEFACER_REFUSED = "defacer_refused", "the defacer declined the volume (not a whole head, implausible fit, tool missing)"
    DEFACER_ERROR = "defacer_error", "the defacer raised an unexpected error (a bug, recorded; the run goes on)"
    TASK_ERROR = "task_error", "the task raised an unexpected error building the inputs or in its direct route"
    SCORE_ERROR = "score_error", "the task raised while scoring a parsed answer"

    # An answer that arrived but that the task's parser could not read. Its sample's status is "unparsable", not
    # "failed": it is counted apart from failures (a wrong answer and an unreadable one are different findings).
    UNPARSABLE = "unparsable", "the model answered, but the task's parser could not read the answer"
