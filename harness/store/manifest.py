"""The run manifest: everything needed to know how a run's numbers were made, with secrets removed.

manifest.json holds the harness version and git commit, package versions, the config (redacted), cohort, task,
defacer and model identities, seeds, start/end times and machine facts. API keys must never reach it: `redact()`
removes values stored under secret-looking names and anything that looks like a key wherever it appears.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import harness
from harness.core.redact import redact
from harness.core.sample import utc_now

MANIFEST_SCHEMA = 1

# Packages whose versions can change a result (model clients, imaging, metrics).
PACKAGES = (
    "defacing-harness", "numpy", "scipy", "nibabel", "pydicom", "SimpleITK", "pillow", "torch", "transformers",
    "openai", "vllm", "datasets", "rouge-score", "bert-score", "scikit-image", "statsmodels", "jinja2",
)


def git_facts(start: Path | None = None) -> dict:
    """Commit and dirty flag of the checkout harness runs from; empty when it is not a git checkout."""
    root = Path(start or Path(harness.__file__).resolve().parent.parent)
    if not (root / ".git").exists():
        return {}
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return {}
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
        return {"git_sha": sha.stdout.strip(), "git_dirty": bool(dirty.stdout.strip()) if dirty.returncode == 0 else None}
    except (OSError, subprocess.SubprocessError):
        return {}


def package_versions(names=PACKAGES) -> dict:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def machine_facts() -> dict:
    """What the hardware was, without identifying it (no hostname, user or paths)."""
    facts = {
        "os": platform.platform(),
        "python": platform.python_version(),
        "arch": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    try:
        facts["memory_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return facts


def build_manifest(
    config: dict | None = None,
    *,
    tasks: Any = None,
    defacers: Any = None,
    models: Any = None,
    cohort: Any = None,
    seeds: dict | None = None,
    argv: list[str] | None = None,
) -> dict:
    """A new run's manifest (already redacted). Identities are whatever the registries report (name, version,
    params, hashes): lists of names or dicts of name -> identity."""
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "harness": {"version": harness.__version__, **git_facts()},
        "packages": package_versions(),
        "machine": machine_facts(),
        "argv": list(argv) if argv is not None else None,
        "config": config or {},
        "tasks": tasks,
        "defacers": defacers,
        "models": models,
        "cohort": cohort,
        "seeds": seeds or {},
        "started_at": utc_now(),
        "ended_at": None,
        "status": "running",
        "resumed_at": [],
    }
    return redact(manifest)


def names_of(entry: Any) -> list[str]:
    """Names from a manifest's tasks/defacers/models entry (a list of names, a dict of name -> identity, or None)."""
    if isinstance(entry, dict):
        return [str(k) for k in entry]
    if isinstance(entry, (list, tuple)):
        return [str(e.get("name", e)) if isinstance(e, dict) else str(e) for e in entry]
    return [] if entry is None else [str(entry)]
