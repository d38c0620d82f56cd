"""harness: measure what facial de-identification does to AI results on head MRI and CT."""

__version__ = "0.1.0"
