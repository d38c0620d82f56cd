"""Failure kinds: one typed list whose values are the strings already stored in samples.jsonl."""

from __future__ import annotations

import json

import pytest

from harness.core.failures import FailureKind
from harness.models import ModelError

# What run folders written so far hold in error.kind: renaming one of these would orphan old samples.
STORED = {
    "rate_limited", "server_error", "timeout", "connection", "bad_request", "auth", "malformed_reply",
    "reply_too_large", "refusal", "empty_reply", "backend_error", "budget_exceeded", "no_answer",
    "bad_input", "task_error", "score_error", "defacer_refused", "defacer_error", "unparsable",
}


def test_every_stored_kind_reads_back_as_itself():
    assert {k.value for k in FailureKind} == STORED
    for value in STORED:
        kind = FailureKind(value)
        assert kind == value and str(kind) == value and f"{kind}" == value and kind.meaning
    assert json.loads(json.dumps({"kind": FailureKind.TIMEOUT})) == {"kind": "timeout"}


def test_model_errors_carry_a_failure_kind():
    err = ModelError("timeout", "no reply", attempts=3)
    assert err.reason is FailureKind.TIMEOUT and str(err) == "timeout: no reply (after 3 attempts)"
    with pytest.raises(ValueError):
        ModelError("timed_out", "a typo is caught where it is made")
