"""The brain-tumour MRI tasks: tumor-slice and tumor-dx read the same cases (T1, T1c, T2, FLAIR) and phantoms."""

# Imported in this order so that listings and messages name tumor-slice before tumor-dx.
import tasks.tumor.slice  # noqa: F401
import tasks.tumor.dx  # noqa: F401
