"""Names the brain-tumour tasks (tumor-slice, tumor-dx) and their phantoms share."""

DIAGNOSES = ("glioblastoma", "low-grade glioma", "metastases", "meningioma")
ROLES = ("t1", "t1c", "t2", "flair")
BRAIN_MASK_ROLE = "t1"  # the contrasts are co-registered; the T1's brain mask measures the defacing QC of all four
ROLE_NAMES = {"t1": "T1", "t1c": "T1 post-contrast", "t2": "T2", "flair": "FLAIR"}
