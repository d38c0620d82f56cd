"""`scripted:inspect-then-submit`: the generic baseline that works with any task's tools."""

from __future__ import annotations

from harness.models.scripted import Policy, call, register_scripted, steps_policy


@register_scripted("inspect-then-submit")
def inspect_then_submit(spec) -> Policy:
    """Look at the volume's geometry, one axial montage, then submit "unknown"."""
    return steps_policy(
        [
            call("volume_info", 0),
            call("view_montage", 1, plane="axial"),
            call("submit", 2, answer="unknown"),
        ]
    )
