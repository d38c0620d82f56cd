"""The head-CT finding labels of ct-report's ground truth. Intracranial and extracranial findings are kept apart
because defacers cut where the extracranial ones (sinuses, orbits, scalp) lie."""

INTRACRANIAL_FINDINGS = ("iph", "sdh", "edh", "sah", "ivh", "midline_shift", "hydrocephalus", "chronic_infarct", "skull_fracture")
EXTRACRANIAL_FINDINGS = ("sinus_disease", "orbital", "scalp_haematoma")
FINDING_KEYS = INTRACRANIAL_FINDINGS + EXTRACRANIAL_FINDINGS
