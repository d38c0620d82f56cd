"""Negation- and hedge-aware head-CT findings labeler (rule based, NegEx-like scope) and finding-level F1.

Labels and groups (vocabulary and cue lists live in ``findings_lexicon.json``):

- intracranial: intracranial_haemorrhage (any), intraparenchymal / subdural / epidural / subarachnoid /
  intraventricular haemorrhage, midline_shift, mass_effect, hydrocephalus, infarct (any age), acute_infarct,
  chronic_infarct.
- skull: skull_fracture - its own group: the vault and skull base are neither brain nor face; defacers that cut
  low (skull base, frontal bone above the orbits) can touch it, so it is reported apart from both.
- extracranial: sinus_disease, orbital_abnormality, scalp_soft_tissue (scalp haematoma / soft-tissue swelling),
  facial_fracture - the region defacers remove.

Each report gets, per label, one of ``present``, ``absent``, ``uncertain`` (hedged: "possible", "cannot be
excluded", "may represent", "?SDH") or ``not_mentioned``.

How it works: the report is split into sentences; concept patterns find mentions; for each mention the nearest
cue before it (within 15 words) or after it (within 8 words) decides its state, unless a terminator ("but",
"however", ";", "there is", ...) or a verb ("is", "are", "shows", "measures", ...) lies between cue and mention
- so "no haemorrhage, mass effect or midline shift" negates all three, while "SDH is present, hydrocephalus is
not seen" negates only hydrocephalus. Pseudo-negations ("no interval change in the subdural haematoma") are not
negations. Structures rather than findings ("the paranasal sinuses", "the ventricles", "midline structures")
only ever say *absent*, through a negation or a normal-statement cue ("are clear", "normal in size",
"central"). A generic statement implies its subtypes weakly: "no acute intracranial haemorrhage" makes all
five haemorrhage subtypes absent unless a subtype is stated elsewhere; a present subtype makes
intracranial_haemorrhage present. Across mentions: present > uncertain > absent > implied absent.

Scoring (:func:`compare_findings`, :func:`score_findings`): a label is *positive* when present; an uncertain
label counts as positive by default (``uncertain="positive"``, U-ones: a hedged finding still triggers
follow-up), or as negative (``"negative"``), or the label is left out of that pair (``"exclude"``). Absent and
not mentioned are both negative. Per group: tp/fp/fn/tn, precision, recall, F1 = 2tp / (2tp + fp + fn), and
agreement (share of labels with the same binary call). A pair in which neither report has a positive label in a
group is *vacuous*: F1, precision and recall are 1.0 there (both agree nothing is wrong). Corpus-level figures
are micro-averaged from summed counts. Parent labels (intracranial_haemorrhage, infarct) are scored with their
subtypes, which gives partial credit for "haemorrhage, wrong subtype".
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = [
    "PRESENT", "ABSENT", "UNCERTAIN", "NOT_MENTIONED", "GROUPS",
    "Mention", "ReportFindings", "GroupScore", "FindingsComparison", "FindingsScore",
    "split_sentences", "label_report", "compare_findings", "score_findings", "finding_labels",
]

PRESENT, ABSENT, UNCERTAIN, NOT_MENTIONED = "present", "absent", "uncertain", "not_mentioned"
GROUPS = ("intracranial", "skull", "extracranial")
_LEXICON_PATH = Path(__file__).with_name("findings_lexicon.json")
# Bump when the rules in this module change what a report is labelled (the lexicon is identified by its hash).
# 2: a one-word answer after a colon ("Fracture: none, ...") negates only its label.
LABELER_VERSION = 2
# rank used to merge mentions of one label: explicit beats implied, present beats uncertain beats absent
_RANK = {NOT_MENTIONED: 0, "implied_absent": 1, ABSENT: 2, UNCERTAIN: 3, PRESENT: 4}
_MAX_REPORT_CHARS = 50_000

_GAP = r"(?:[\s\-]+(?!(?:no|not|without|nor|but|negative|free)\b)[\w'/]+){0,4}?[\s\-]+"


def _compile(pattern: str) -> str:
    """Lexicon mini-language -> regex: a space matches spaces/hyphens, '~' a gap of up to 4 words."""
    out, in_class, escaped, skip = [], False, False, False
    for i, ch in enumerate(pattern):
        if skip:
            skip = False
        elif escaped:
            out.append(ch)
            escaped = False
        elif ch == "\\":
            out.append(ch)
            escaped = True
        elif ch == "[":
            in_class = True
            out.append(ch)
        elif ch == "]":
            in_class = False
            out.append(ch)
        elif ch == " " and not in_class and pattern[i + 1 : i + 2] == "?":
            out.append(r"[\s\-]*")  # "intra ?cranial": intracranial, intra-cranial, intra cranial
            skip = True
        elif ch == " " and not in_class:
            out.append(r"[\s\-]+")
        elif ch == "~" and not in_class:
            out.append(_GAP)
        else:
            out.append(ch)
    body = "".join(out)
    if pattern.startswith("\\"):  # punctuation cues such as the query mark carry their own context
        return f"(?:{body})"
    left = r"(?<![\w\-])" if re.match(r"[\w(]", pattern) else ""
    right = r"(?![\w])" if re.search(r"[\w)?*+}]$", pattern) else ""
    return f"{left}(?:{body}){right}"


@dataclass(frozen=True)
class _Concept:
    id: str
    family: str
    regex: re.Pattern[str]
    present: tuple[str, ...]
    absent: tuple[str, ...]
    implied_absent: tuple[str, ...]
    asserts_absent: tuple[str, ...]
    anatomy: bool
    suppresses: tuple[str, ...]


@dataclass(frozen=True)
class _Lexicon:
    labels: dict[str, str]
    concepts: tuple[_Concept, ...]
    cues: dict[str, re.Pattern[str]]
    pre_words: int
    post_words: int


@lru_cache(maxsize=1)
def _lexicon() -> _Lexicon:
    raw = json.loads(_LEXICON_PATH.read_text(encoding="utf-8"))
    labels = dict(raw["labels"])
    concepts = []
    for c in raw["concepts"]:
        for key in ("present", "absent", "implied_absent", "asserts_absent"):
            unknown = set(c.get(key, [])) - set(labels)
            if unknown:
                raise ValueError(f"{_LEXICON_PATH.name}: concept {c['id']} names unknown labels {sorted(unknown)}")
        regex = re.compile("|".join(_compile(p) for p in c["patterns"]), re.IGNORECASE)
        concepts.append(_Concept(c["id"], c["family"], regex, tuple(c.get("present", [])), tuple(c.get("absent", [])),
                                 tuple(c.get("implied_absent", [])), tuple(c.get("asserts_absent", [])),
                                 bool(c.get("anatomy", False)), tuple(c.get("suppresses", []))))
    cues = {}
    for kind, patterns in raw["cues"].items():
        # longest alternatives first so "no evidence of" wins over "no"
        ordered = sorted(patterns, key=len, reverse=True)
        cues[kind] = re.compile("|".join(_compile(p) for p in ordered), re.IGNORECASE)
    scope = raw.get("scope_words", {})
    return _Lexicon(labels, tuple(concepts), cues, int(scope.get("pre", 15)), int(scope.get("post", 8)))


@lru_cache(maxsize=1)
def lexicon_hash() -> str:
    """The lexicon's content hash: a run's task identity names it, so a changed rule never mixes with old scores."""
    import hashlib

    return hashlib.sha256(_LEXICON_PATH.read_bytes()).hexdigest()[:16]


def finding_labels() -> dict[str, str]:
    """Label -> group, in lexicon order."""
    return dict(_lexicon().labels)


# ------------------------------------------------------------------------------------------ sentence split

_ABBREVIATIONS = ("e.g.", "i.e.", "approx.", "dr.", "vs.", "cf.", "fig.", "no.", "ca.", "incl.", "resp.", "mr.", "st.")
_SPLIT = re.compile(r"(?<=[.!?])[\"')\]]*\s+")


def split_sentences(text: str) -> list[str]:
    """Split a report into sentences: at line breaks and at . ! ? followed by space - but not inside decimals
    ("3.5 mm"), after common abbreviations ("e.g.", "vs."), or at a query mark glued to a word ("?SDH")."""
    sentences: list[str] = []
    for line in re.split(r"[\r\n]+", text):
        line = re.sub(r"^\s*(?:[-*\u2022]|\d+[.)])\s+", "", line).strip()  # bullets and list numbers
        if not line:
            continue
        start = 0
        for m in _SPLIT.finditer(line):
            piece = line[start : m.start()].rstrip()
            last = piece.rsplit(None, 1)[-1].lower() if piece.split() else ""
            if last in _ABBREVIATIONS or re.fullmatch(r"[a-z]\.", last):
                continue  # "e.g." or an initial
            if piece:
                sentences.append(piece)
            start = m.end()
        tail = line[start:].strip()
        if tail:
            sentences.append(tail)
    return sentences


# ------------------------------------------------------------------------------------------------- labeler


@dataclass(frozen=True)
class Mention:
    """One concept found in one sentence, with the cue that decided its state (None = plain assertion)."""

    concept: str
    text: str
    state: str  # present / absent / uncertain
    cue: str | None
    sentence_index: int
    sentence: str


@dataclass(frozen=True)
class ReportFindings:
    states: dict[str, str]
    mentions: list[Mention] = field(default_factory=list)
    truncated: bool = False

    def positive(self, uncertain: str = "positive") -> set[str]:
        keep = {PRESENT, UNCERTAIN} if uncertain == "positive" else {PRESENT}
        return {label for label, s in self.states.items() if s in keep}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Span:
    start: int
    end: int
    kind: str
    text: str


def _mirror(a: _Span, b: _Span) -> bool:
    """Same words as a before-cue and an after-cue of the same meaning."""
    return (a.start, a.end) == (b.start, b.end) and {a.kind, b.kind} in (
        {"pre_uncertain", "post_uncertain"}, {"pre_negation", "post_negation"}, {"normal_pre", "normal_post"})


def _cue_spans(sentence: str, lex: _Lexicon) -> list[_Span]:
    """Negation/hedge/normal cues of a sentence. Overlapping cues: the longer wins; pseudo-negations ("no interval
    change") remove what they overlap and are not cues themselves."""
    found: list[_Span] = []
    for kind in ("pseudo", "post_uncertain", "pre_uncertain", "post_negation", "pre_negation", "normal_post",
                 "normal_pre"):
        for m in lex.cues[kind].finditer(sentence):
            if m.end() > m.start():
                found.append(_Span(m.start(), m.end(), kind, m.group(0)))
    # keep the longest span among overlaps (ties: order above, uncertainty before negation)
    order = {k: i for i, k in enumerate(("pseudo", "post_uncertain", "pre_uncertain", "post_negation",
                                         "pre_negation", "normal_post", "normal_pre"))}
    found.sort(key=lambda s: (-(s.end - s.start), order[s.kind]))
    kept: list[_Span] = []
    for s in found:
        # the same words may serve as a cue before and after ("possible SDH" / "SDH is possible"): keep both
        if not any(s.start < k.end and k.start < s.end and not _mirror(s, k) for k in kept):
            kept.append(s)
    # "Fracture: none, ..." answers the label before the colon: it negates nothing after it
    return sorted((s for s in kept if s.kind != "pseudo"
                   and not (s.kind == "pre_negation" and re.fullmatch(r"none|nil|negative|absent", s.text.lower())
                            and re.search(r":\s*$", sentence[:s.start]))),
                  key=lambda s: s.start)


def _mentions(sentence: str, lex: _Lexicon) -> list[tuple[_Concept, int, int]]:
    found = []
    for concept in lex.concepts:
        for m in concept.regex.finditer(sentence):
            if m.end() > m.start():
                found.append((concept, m.start(), m.end()))
    kept = []
    for c, s, e in found:
        dominated = any(
            (c2 is not c or (s2, e2) != (s, e)) and s2 <= s and e <= e2 and (e2 - s2) > (e - s)
            and (c2.family == c.family or c.family in c2.suppresses)
            for c2, s2, e2 in found
        )
        same_span_earlier = any(c2.family == c.family and (s2, e2) == (s, e) and lex.concepts.index(c2) <
                                lex.concepts.index(c) for c2, s2, e2 in found)
        if not dominated and not same_span_earlier:
            kept.append((c, s, e))
    return kept


def _words(text: str) -> int:
    return len(re.findall(r"[\w']+", text))


_TRAILING_AUX = re.compile(r"(?:\s*\b(?:is|are|was|were|has|have|been|be|also|both|all|appear|appears|remain|remains|"
                           r"look|looks|otherwise|seen|identified|,)\b|\s*,)+\s*$", re.IGNORECASE)


def _in_scope(gap: str, lex: _Lexicon, limit: int, post: bool) -> bool:
    if _words(gap) > limit:
        return False
    if lex.cues["terminators"].search(gap):
        return False
    check = _TRAILING_AUX.sub("", gap) if post else gap
    if lex.cues["scope_breakers"].search(check):
        return False
    if post and re.search(r"\bwith\b", check, re.IGNORECASE):
        return False
    return True


def _decide(sentence: str, start: int, end: int, anatomy: bool, cues: list[_Span], lex: _Lexicon):
    usable = {"pre_negation", "pre_uncertain", "post_negation", "post_uncertain"}
    if anatomy:
        usable |= {"normal_pre", "normal_post"}
    pre = next((c for c in reversed(cues) if c.end <= start and c.kind in usable and c.kind.startswith(("pre", "normal_pre"))
                and _in_scope(sentence[c.end:start], lex, lex.pre_words, post=False)), None)
    post = next((c for c in cues if c.start >= end and c.kind in usable and c.kind.startswith(("post", "normal_post"))
                 and _in_scope(sentence[end:c.start], lex, lex.post_words, post=True)), None)
    if pre is not None and pre.kind in ("pre_negation", "normal_pre"):
        return ABSENT, pre.text
    if pre is not None and pre.kind == "pre_uncertain":
        return UNCERTAIN, pre.text
    if post is not None and post.kind == "post_uncertain":
        return UNCERTAIN, post.text
    if post is not None and post.kind in ("post_negation", "normal_post"):
        return ABSENT, post.text
    return PRESENT, None


def label_report(text: str | None) -> ReportFindings:
    """Label one report. Empty or non-text input gives every label ``not_mentioned``; reports longer than
    50,000 characters are labelled on their first 50,000 (``truncated=True``)."""
    lex = _lexicon()
    best: dict[str, str] = {label: NOT_MENTIONED for label in lex.labels}
    if not isinstance(text, str) or not text.strip():
        return ReportFindings(best, [], False)
    truncated = len(text) > _MAX_REPORT_CHARS
    text = text[:_MAX_REPORT_CHARS]
    mentions: list[Mention] = []

    def put(label: str, state: str) -> None:
        if _RANK[state] > _RANK[best[label]]:
            best[label] = state

    for index, sentence in enumerate(split_sentences(text)):
        cues = _cue_spans(sentence, lex)
        for concept, start, end in _mentions(sentence, lex):
            state, cue = _decide(sentence, start, end, concept.anatomy, cues, lex)
            if concept.anatomy and state != ABSENT:
                continue  # naming a structure is not a finding
            mentions.append(Mention(concept.id, sentence[start:end], state, cue, index, sentence))
            if state == ABSENT:
                for label in concept.absent:
                    put(label, ABSENT)
                for label in concept.implied_absent:
                    put(label, "implied_absent")
            else:
                for label in concept.present:
                    put(label, state)
                for label in concept.asserts_absent:
                    put(label, "implied_absent")
    states = {label: (ABSENT if s == "implied_absent" else s) for label, s in best.items()}
    return ReportFindings(states, mentions, truncated)


# -------------------------------------------------------------------------------------------------- scoring

_POLICIES = ("positive", "negative", "exclude")


@dataclass(frozen=True)
class GroupScore:
    group: str
    tp: int
    fp: int
    fn: int
    tn: int
    precision: float
    recall: float
    f1: float
    agreement: float
    n_labels: int
    vacuous: bool

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


def _group_score(group: str, tp: int, fp: int, fn: int, tn: int) -> GroupScore:
    n = tp + fp + fn + tn
    vacuous = tp + fp + fn == 0
    if vacuous:
        precision = recall = f1 = 1.0 if n else float("nan")
    else:
        precision = tp / (tp + fp) if tp + fp else float("nan")
        recall = tp / (tp + fn) if tp + fn else float("nan")
        f1 = 2 * tp / (2 * tp + fp + fn)
    agreement = (tp + tn) / n if n else float("nan")
    return GroupScore(group, tp, fp, fn, tn, precision, recall, f1, agreement, n, vacuous)


@dataclass(frozen=True)
class FindingsComparison:
    """One candidate report vs one reference report; ``groups`` has intracranial, skull, extracranial, all."""

    groups: dict[str, GroupScore]
    candidate: ReportFindings
    reference: ReportFindings
    uncertain: str

    def to_dict(self) -> dict[str, Any]:
        return {"groups": {g: s.to_dict() for g, s in self.groups.items()}, "uncertain": self.uncertain,
                "candidate": self.candidate.states, "reference": self.reference.states}


def _counts(cand: ReportFindings, ref: ReportFindings, uncertain: str) -> dict[str, list[int]]:
    labels = _lexicon().labels
    counts = {g: [0, 0, 0, 0] for g in (*GROUPS, "all")}
    for label, group in labels.items():
        c, r = cand.states[label], ref.states[label]
        if uncertain == "exclude" and UNCERTAIN in (c, r):
            continue
        cp = c == PRESENT or (c == UNCERTAIN and uncertain == "positive")
        rp = r == PRESENT or (r == UNCERTAIN and uncertain == "positive")
        slot = 0 if cp and rp else 1 if cp else 2 if rp else 3
        counts[group][slot] += 1
        counts["all"][slot] += 1
    return counts


def _labelled(report: str | ReportFindings | None) -> ReportFindings:
    return report if isinstance(report, ReportFindings) else label_report(report)


def compare_findings(candidate: str | ReportFindings | None, reference: str | ReportFindings | None,
                     uncertain: str = "positive") -> FindingsComparison:
    """Finding-level precision/recall/F1 of a candidate report against a reference, per group."""
    if uncertain not in _POLICIES:
        raise ValueError(f"uncertain must be one of {_POLICIES}, not {uncertain!r}")
    cand, ref = _labelled(candidate), _labelled(reference)
    counts = _counts(cand, ref, uncertain)
    return FindingsComparison({g: _group_score(g, *c) for g, c in counts.items()}, cand, ref, uncertain)


@dataclass(frozen=True)
class FindingsScore:
    """Corpus-level: ``micro`` = scores from counts summed over pairs; ``per_sample_f1`` per group, input order."""

    micro: dict[str, GroupScore]
    per_sample_f1: dict[str, list[float]]
    n: int
    uncertain: str

    def mean_f1(self, group: str = "all") -> float:
        values = self.per_sample_f1[group]
        return sum(values) / len(values) if values else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {"micro": {g: s.to_dict() for g, s in self.micro.items()}, "per_sample_f1": self.per_sample_f1,
                "n": self.n, "uncertain": self.uncertain}


def score_findings(candidates: Sequence[str | ReportFindings | None], references: Sequence[str | ReportFindings | None],
                   uncertain: str = "positive") -> FindingsScore:
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates for {len(references)} references")
    totals = {g: [0, 0, 0, 0] for g in (*GROUPS, "all")}
    per_sample: dict[str, list[float]] = {g: [] for g in totals}
    for cand, ref in zip(candidates, references):
        comparison = compare_findings(cand, ref, uncertain)
        for g, score in comparison.groups.items():
            per_sample[g].append(score.f1)
            for i, v in enumerate((score.tp, score.fp, score.fn, score.tn)):
                totals[g][i] += v
    return FindingsScore({g: _group_score(g, *c) for g, c in totals.items()}, per_sample, len(candidates), uncertain)
