"""Prompt templates (Jinja, prompts/<task>/*.j2): data, not code. A package only so that a regular (non-editable)
install carries them."""
