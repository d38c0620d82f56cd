"""Scoring layer shared by every task.

- :mod:`harness.scoring.stats`    paired statistics over cases (bootstrap CIs, Wilcoxon + Benjamini-Hochberg,
                                  McNemar, Cohen's kappa, ICC, Bland-Altman, coverage).
- :mod:`harness.scoring.text`     report metrics behind a lazy registry (ROUGE-L, BERTScore, findings F1).
- :mod:`harness.scoring.findings` negation- and hedge-aware head-CT findings labeler and finding-level F1.

Answer parsing lives in :mod:`harness.core.parsing`. Submodules are imported on demand so that loading one does not
pull in the heavy dependencies of another (torch, transformers).
"""
