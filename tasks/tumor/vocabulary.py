"""Names the brain-tumour tasks (tumor-slice, tumor-dx) and their phantoms share."""

DIAGNOSES = ("glioblastoma", "low-grade glioma", "metastases", "meningioma")
ROLES = ("t1", "t1c", "t2", "flair")
ROLE_NAMES = {"t1": "T1", "t1c": "T1 post-contrast", "t2": "T2", "flair": "FLAIR"}
