"""Errors that stop a run (as opposed to a failed sample, which is recorded and the run goes on)."""

from harness.core.errors import HarnessError


class EvalError(HarnessError):
    """The run cannot start or continue as asked (unknown mode, empty cohort, a resume that would mix versions)."""


class FailFast(HarnessError):
    """--fail-fast: the first failed sample or defacer stops the run."""
