"""What `harness defacers` shows: every registered defacer with its version, parameters, origin and readiness, and
the defacer table (family, modalities, where it runs, seconds per scan and QC on the sample cohorts as measured by
benchmarks/defacers.py into defacers/measured.json; the README's table is the same, written by that script).
"""

from __future__ import annotations

import importlib.resources
import inspect
import json
from dataclasses import dataclass

from defacers.external import ExternalTool
from defacers.registry import defacer_registry
from harness.core.registry import Entry

NO_DEFAULT = inspect.Parameter.empty


@dataclass(frozen=True)
class DefacerInfo:
    name: str
    version: str  # "" when only the defacer it makes knows (a plug-in's factory function)
    parameters: dict[str, object]  # name -> default (NO_DEFAULT: none known)
    open_ended: bool  # takes further KEY=VALUE parameters beyond the named ones
    origin: str  # the defining module, or the plug-in distribution and its entry point
    built_in: bool
    program: str | None  # the external program it runs ("" when its `command` parameter names it); None: native
    missing: str | None  # for a tool: what to install before it can run; None when it can
    family: str = ""  # defacers.base.FAMILIES; "" when a plug-in does not say
    modalities: tuple[str, ...] = ()
    runs: str = ""  # defacers.base.RUNS_WHERE


def describe(entry: Entry) -> DefacerInfo:
    obj = entry.obj
    if isinstance(obj, type):  # a Defacer subclass
        parameters = obj.parameters()
        named, open_ended = parameters or {}, parameters is None
    elif isinstance(obj, ExternalTool):
        named, open_ended = obj.parameters(), True  # other KEY=VALUE fill {KEY} in its command
    else:  # a plug-in's factory function
        named, open_ended = _from_signature(obj)
    tool = obj if isinstance(obj, ExternalTool) else None
    return DefacerInfo(
        name=entry.name,
        version=str(getattr(obj, "version", "") or ""),
        parameters=named,
        open_ended=open_ended,
        origin=entry.origin,
        built_in=entry.built_in,
        program=tool.executable if tool is not None else None,
        missing=tool.missing() if tool is not None else None,
        family=str(getattr(obj, "family", "") or ""),
        modalities=tuple(getattr(obj, "modalities", ()) or ()),
        runs=str(getattr(obj, "runs", "") or ""),
    )


def catalog() -> list[DefacerInfo]:
    return [describe(entry) for entry in defacer_registry.entries()]


def _from_signature(factory) -> tuple[dict[str, object], bool]:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # a callable without a readable signature: say it takes anything
        return {}, True
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    named = {p.name: p.default for p in signature.parameters.values() if p.kind in kinds}
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    return named, open_ended


MEASURED_FILE = "measured.json"
NOT_MEASURED = "-"


def measured() -> dict:
    """What benchmarks/defacers.py measured on this kind of machine ({} when it never ran)."""
    try:
        return json.loads((importlib.resources.files("defacers") / MEASURED_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _seconds(figures: dict, head: str) -> str:
    seconds = figures.get("seconds_per_scan", {}).get(head)
    return NOT_MEASURED if seconds is None else f"{seconds:.1f}"


def _qc(figures: dict, cohort: str) -> str:
    qc = figures.get("sample_qc", {}).get(cohort)
    if not qc:
        return NOT_MEASURED
    if qc.get("not_applicable"):
        return f"n/a ({qc['not_applicable']})"
    if not qc.get("ok"):
        return f"refused {qc['refused']}/{qc['volumes']}"
    cell = f"brain max {qc['brain_voxels_changed_max']:,}, face {qc['face_fraction_changed_mean']:.0%}"
    return cell + (f", refused {qc['refused']}/{qc['volumes']}" if qc.get("refused") else "")


def table(infos: list[DefacerInfo] | None = None, figures: dict | None = None) -> list[dict[str, str]]:
    """One row per defacer: name, family, modalities, where it runs, seconds per scan on each benchmark head and
    QC on each sample cohort (brain voxels changed, worst volume; share of the face region changed, mean), as
    benchmarks/defacers.py measured them; "-" where it did not (the reason is in `figures["defacers"]`)."""
    infos = catalog() if infos is None else infos
    figures = measured() if figures is None else figures
    heads, cohorts = figures.get("heads", {}), figures.get("cohorts", {})
    rows = []
    for info in infos:
        mine = figures.get("defacers", {}).get(info.name, {})
        row = {"defacer": info.name, "family": info.family or "?", "modalities": ", ".join(info.modalities) or "?",
               "runs": info.runs or "?"}
        row.update({f"s/scan {h['label']}": _seconds(mine, key) for key, h in heads.items()})
        row.update({f"QC {c['label']}": _qc(mine, key) for key, c in cohorts.items()})
        rows.append(row)
    return rows


def not_measured(figures: dict | None = None) -> dict[str, str]:
    """Defacer -> why benchmarks/defacers.py has no figures for it."""
    figures = measured() if figures is None else figures
    return {name: f["not_measured"] for name, f in figures.get("defacers", {}).items() if f.get("not_measured")}


def markdown_table(rows: list[dict[str, str]]) -> str:
    header = list(rows[0]) if rows else []
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(f"`{v}`" if k == "defacer" else v for k, v in row.items()) + " |" for row in rows]
    return "\n".join(lines)


TABLE_START, TABLE_END = "<!-- defacer-table: benchmarks/defacers.py --write -->", "<!-- /defacer-table -->"


def readme_table(figures: dict | None = None) -> str:
    """The README's defacer table, between its markers: the rows `harness defacers` prints, with the date and machine."""
    from defacers.registry import names

    figures = measured() if figures is None else figures
    order = {n: i for i, n in enumerate(names())}
    rows = table(sorted(catalog(), key=lambda info: order.get(info.name, len(order))), figures)
    notes = "; ".join(f"`{name}` ({why.split(';')[0]})" for name, why in not_measured(figures).items())
    return "\n".join([
        TABLE_START,
        markdown_table(rows),
        "",
        f"Measured {figures.get('measured_on', '?')} on {figures.get('machine', '?')}"
        + (f" (load average {' -> '.join(map(str, figures['load_average']))})" if figures.get("load_average") else "")
        + f" by `{figures.get('command', '?')}`: "
        "seconds per scan = one whole call (registration, defacing, QC) in a fresh process, fastest run; QC = brain "
        "voxels changed (worst volume) and share of the face region changed (mean) over every volume of "
        + "; ".join(f"the {c['label']}: {c['about']}" for c in figures.get("cohorts", {}).values())
        + ". Not measured here: " + (notes or "none") + ".",
        TABLE_END,
    ])
