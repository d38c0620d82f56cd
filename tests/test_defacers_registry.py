"""The defacer registry as users and plug-in authors rely on it: complete listings, clear errors, entry points."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import defacers
from defacers import DefacerError, defacer_registry, register_defacer
from defacers.base import FAMILIES, RUNS_WHERE
from defacers.catalog import catalog, measured, readme_table
from defacers.original import Original
from harness.core.registry import RegistryError

ROOT = Path(__file__).resolve().parents[1]
BUILT_IN = {
    "original": "defacers.original",
    "quickshear": "defacers.quickshear",
    "deface": "defacers.deface",
    "reface": "defacers.reface",
    "external:pydeface": "defacers.external",
    "external:mri_reface": "defacers.external",
    "external:afni_refacer": "defacers.external",
    "external:quickshear-cli": "defacers.external",
    "external:cmd": "defacers.external",
    "precomputed:NAME": "defacers.precomputed",
}


def _python(*args, extra_path: Path | None = None) -> subprocess.CompletedProcess:
    """A fresh interpreter on this checkout (and `extra_path`, e.g. a plug-in's site folder)."""
    path = [str(ROOT)] + ([str(extra_path)] if extra_path else []) + [os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=env)


def test_a_fresh_interpreter_lists_every_built_in_defacer():
    proc = _python("-c", "import json, defacers; print(json.dumps({e.name: e.origin for e in defacers.defacer_registry.entries()}))")
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)
    assert {name: listed.get(name) for name in BUILT_IN} == BUILT_IN


def test_a_second_object_under_a_taken_name_is_refused_naming_both():
    class Impostor(Original):
        name = "quickshear"

    with pytest.raises(RegistryError, match=r"defacer 'quickshear' is registered twice: by defacers\.quickshear and by tests\.test_defacers_registry"):
        register_defacer(Impostor)
    assert defacers.get("quickshear").identity["name"] == "quickshear"  # the built-in is still the one used


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(DefacerError, match=r"unknown defacer 'blur'; available: (?=.*\bquickshear\b)(?=.*\breface\b)(?=.*external:cmd)"):
        defacers.get("blur")


def test_a_factory_is_called_with_the_parameters_and_must_make_a_defacer():
    with defacer_registry.override("lab:identity", lambda **params: Original(**params)):
        assert isinstance(defacers.get("lab:identity"), Original)
    with defacer_registry.override("lab:broken", lambda **params: "not a defacer"):
        with pytest.raises(DefacerError, match="made str, not a Defacer"):
            defacers.get("lab:broken")
    assert "lab:identity" not in defacers.names()


PLUGIN = '''
from defacers import Defacer, DefacerOutput


class Blur(Defacer):
    name = "lab-blur"
    version = "0.1"
    accepts = ("sigma",)

    def __init__(self, sigma: float = 1.0):
        super().__init__(sigma=float(sigma))

    def _deface(self, volume):
        return DefacerOutput(volume.data, face=None)


def make(strength=2):
    return Blur(sigma=strength)
'''


def test_plug_in_defacers_come_through_entry_points(tmp_path):
    (tmp_path / "mylab_defacer.py").write_text(PLUGIN)
    info = tmp_path / "mylab_defacer-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mylab-defacer\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[harness.defacers]\nlab-blur = mylab_defacer:Blur\nlab-factory = mylab_defacer:make\n")

    code = "import defacers; print(defacers.names()); print(defacers.get('lab-factory', strength=3).identity)"
    proc = _python("-c", code, extra_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "'lab-blur'" in proc.stdout and "'quickshear'" in proc.stdout
    assert "{'name': 'lab-blur', 'version': '0.1', 'params': {'sigma': 3.0}}" in proc.stdout

    listing = _python("-m", "harness", "defacers", extra_path=tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert "from: plug-in mylab-defacer (harness.defacers entry point lab-blur = mylab_defacer:Blur)" in listing.stdout
    assert "parameters: sigma=1.0" in listing.stdout and "parameters: strength=2" in listing.stdout


def test_harness_defacers_lists_versions_parameters_origins_and_tools():
    proc = _python("-m", "harness", "defacers")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for name, module in BUILT_IN.items():
        row = next(i for i, line in enumerate(lines) if line.split() and line.split()[0] == name)
        assert defacers.get(name, **({"command": "t {input} {output}"} if name == "external:cmd" else {})).version in lines[row]
        assert f"from: built-in ({module})" in "\n".join(lines[row:row + 4])
    assert "parameters: buffer_mm=10.0" in proc.stdout
    assert "runs: quickshear (installed)" in proc.stdout or "runs: quickshear - cannot run here" in proc.stdout
    assert "mri_reface (installed)" in proc.stdout or "nitrc.org" in proc.stdout  # the install hint when missing
    # the defacer table: one row per defacer with the figures benchmarks/defacers.py stored
    figures = measured()
    header = next(line for line in lines if line.startswith("defacer ") and "family" in line)
    rows = {line.split()[0]: line for line in lines[lines.index(header) + 1:] if line.split()}
    for name in BUILT_IN:
        assert name in rows
    reface = figures["defacers"]["reface"]
    assert rows["reface"].split()[1:5] == ["replace", "MR,", "CT", "native"]
    assert f"{reface['seconds_per_scan']['colin27']:.1f}" in rows["reface"]
    assert f"brain max {reface['sample_qc']['ct-report']['brain_voxels_changed_max']:,}" in rows["reface"]
    assert figures["measured_on"] in proc.stdout


def test_every_built_in_declares_family_modalities_and_where_it_runs():
    for info in catalog():
        if info.built_in:
            assert info.family in FAMILIES and info.runs in RUNS_WHERE, info
            assert info.modalities and set(info.modalities) <= {"MR", "CT"}, info


def test_the_readme_table_is_the_measured_one_for_every_built_in():
    figures = measured()
    assert {name for name in figures["defacers"]} == {info.name for info in catalog() if info.built_in}, (
        "defacers/measured.json does not cover the registered defacers: run python benchmarks/defacers.py --write")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme_table(figures) in readme, "README's defacer table is stale: run python benchmarks/defacers.py --table-only"
