"""Speed of the scoring layer: prints figures, asserts nothing.

    python benchmarks/scoring.py [--bertscore-pairs 64] [--skip-bertscore]

Figures: bootstrap CI of a mean paired difference for 1,000 cases x 2,000 resamples (percentile and BCa) and of a
generic (non-vectorised) statistic; ROUGE-L pairs/s; BERTScore pairs/s when every text is new and as a ct-report run
scores (one reference per case, one original answer per defacer: texts come back; model load reported apart);
findings labeler sentences/s and reports/s.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.scoring import findings, stats, text  # noqa: E402

SENTENCES = [
    "No acute intracranial haemorrhage, mass effect or midline shift.",
    "Acute right frontoparietal subdural haematoma measuring 9 mm with 6 mm leftward midline shift.",
    "The ventricles are normal in size.",
    "Possible small subarachnoid haemorrhage in the left sylvian fissure.",
    "Old lacunar infarct in the left basal ganglia. No acute infarct.",
    "The paranasal sinuses and mastoid air cells are clear.",
    "Mucosal thickening of the left maxillary sinus.",
    "Large right parietal scalp haematoma without underlying skull fracture.",
    "The orbits are unremarkable.",
    "Grey-white matter differentiation is preserved.",
    "A small extradural haematoma cannot be excluded.",
    "Basal cisterns are patent.",
]


def report(rng: random.Random, n_sentences: int = 8) -> str:
    return " ".join(rng.choice(SENTENCES) for _ in range(n_sentences))


def timed(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bertscore-pairs", type=int, default=64)
    parser.add_argument("--skip-bertscore", action="store_true")
    args = parser.parse_args()

    rng_np = np.random.default_rng(0)
    orig = rng_np.normal(0.3, 0.05, 1000)
    defaced = orig + rng_np.normal(0.002, 0.01, 1000)
    for method in ("percentile", "bca"):
        t = timed(lambda: stats.paired_difference_ci(orig, defaced, n_resamples=2000, method=method))
        print(f"bootstrap mean difference, 1,000 cases x 2,000 resamples, {method}: {t * 1000:.1f} ms")
    labels_a = rng_np.integers(0, 2, 1000)
    labels_b = np.where(rng_np.random(1000) < 0.9, labels_a, 1 - labels_a)
    agree = lambda a, b: float(np.mean(a == b))  # noqa: E731
    t = timed(lambda: stats.bootstrap_ci((labels_a, labels_b), agree, paired=True, n_resamples=2000), repeat=1)
    print(f"bootstrap generic paired statistic (agreement), 1,000 cases x 2,000 resamples: {t * 1000:.0f} ms")
    t = timed(lambda: stats.wilcoxon_signed_rank(orig, defaced))
    print(f"Wilcoxon signed-rank, 1,000 pairs: {t * 1000:.1f} ms")

    rng = random.Random(0)
    refs = [report(rng) for _ in range(500)]
    cands = [report(rng) for _ in range(500)]
    words = sum(len(r.split()) for r in refs) / len(refs)
    rouge = text.get_metric("rougeL")
    t = timed(lambda: rouge.score(cands, refs), repeat=1)
    print(f"ROUGE-L: {len(refs) / t:.0f} pairs/s ({words:.0f}-word reports)")

    n_sent = sum(len(findings.split_sentences(r)) for r in refs)
    t = timed(lambda: [findings.label_report(r) for r in refs], repeat=1)
    print(f"findings labeler: {n_sent / t:.0f} sentences/s, {len(refs) / t:.0f} reports/s")
    t = timed(lambda: findings.score_findings(cands, refs), repeat=1)
    print(f"findings F1 (label both + compare): {len(refs) / t:.0f} pairs/s")

    if not args.skip_bertscore:
        t0 = time.perf_counter()
        bert = text.get_metric("bertscore")
        loaded = time.perf_counter()
        bert.score([report(rng) for _ in range(4)], [report(rng) for _ in range(4)])  # warm-up on other texts
        print(f"BERTScore model load ({bert.model_id}, layer {bert.num_layers}): {loaded - t0:.1f} s, then its encoder "
              f"exported to ONNX Runtime at first use: {time.perf_counter() - loaded:.1f} s (with 4 pairs)")
        n = args.bertscore_pairs
        t = timed(lambda: bert.score(cands[:n], refs[:n]), repeat=1)
        print(f"BERTScore, every text new: {n / t:.1f} pairs/s ({words:.0f}-word reports, batch {bert.batch_size})")
        grid_pairs, t = bertscore_grid(rng, cases=12, conditions=4, models=2)
        print(f"BERTScore as a ct-report run scores it (12 cases x 4 conditions x 2 models, every answer new: one "
              f"call per sample, then the fidelity pairs in one batch): {grid_pairs / t:.1f} pairs/s "
              f"({grid_pairs} pairs)")


def bertscore_grid(rng: random.Random, cases: int, conditions: int, models: int) -> tuple[int, float]:
    """Time the BERTScore work of a ct-report run on a fresh metric (nothing remembered): each sample's answer
    against its case's reference as the sample finishes, then every defaced answer against its original answer."""
    bert = text.BertScore()
    bert.score(["warm-up"], ["warm-up"])
    truths = [report(rng) for _ in range(cases)]
    answers = {(c, d, m): report(rng) for c in range(cases) for d in range(conditions) for m in range(models)}
    t0 = time.perf_counter()
    for (c, _, _), answer in answers.items():
        bert.score([answer], [truths[c]])
    fidelity = [(answers[c, d, m], answers[c, 0, m]) for c in range(cases) for d in range(1, conditions)
                for m in range(models)]
    bert.score([d for d, _ in fidelity], [o for _, o in fidelity])
    return len(answers) + len(fidelity), time.perf_counter() - t0

if __name__ == "__main__":
    main()
