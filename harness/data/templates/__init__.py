"""Jinja templates of the sample cohort's reference texts (a package only so that wheels ship the .j2 files)."""
