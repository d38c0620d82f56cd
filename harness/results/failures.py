"""Failed samples grouped by reason (the error kind), most frequent first, each with an example: one grouping for
`harness runs show` and `harness view`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable

from harness.core.sample import Sample


@dataclass(frozen=True)
class FailureGroup:
    kind: str
    count: int
    example: Sample  # the first failed sample of this kind


def failure_groups(samples: Iterable[Sample]) -> list[FailureGroup]:
    failed = [s for s in samples if s.status == "failed"]
    kinds = Counter(failure_kind(s) for s in failed)
    first = {}
    for s in failed:
        first.setdefault(failure_kind(s), s)
    return [FailureGroup(kind, n, first[kind]) for kind, n in kinds.most_common()]


def failure_kind(sample: Sample) -> str:
    return str((sample.error or {}).get("kind", "unknown"))
