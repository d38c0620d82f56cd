"""`harness deface`: deface one volume with a named defacer, write it, print the privacy/damage QC."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from harness.core.errors import HarnessError
from harness.core.files import atomic_write_bytes
from harness.imaging.io import load_volume, save_nifti


def defacer_from_options(spec: str, param_items: list[str]):
    """The defacer named by --defacer NAME or NAME(key=value, ...), with --param KEY=VALUE items added to its
    parameters (both read by defacers.spec, so `quickshear(buffer_mm=5)` and `-p buffer_mm=5` are one defacer)."""
    import defacers  # on use: it loads every defacer, which `harness --help` should not wait for
    from defacers.spec import parse_defacer_spec, parse_param

    name, params = parse_defacer_spec(spec)
    for item in param_items:
        key, value = parse_param(item)
        if key in params and params[key] != value:
            raise HarnessError(f"defacer parameter {key!r} is given twice: {params[key]!r} in --defacer {spec!r} and {value!r} in --param")
        params[key] = value
    return defacers.get(name, **params)


def deface_cmd(
    volume: Path = typer.Argument(..., help="A NIfTI file, a DICOM file, or a folder of DICOM files."),
    defacer: str = typer.Option("reface", "--defacer", "-d", help="A defacer name, parameters in brackets if any: reface, quickshear(buffer_mm=5), external:cmd(command=tool {input} {output}). `harness defacers` lists them all."),
    out: Path = typer.Option(..., "--out", "-o", help="Defaced volume to write (.nii or .nii.gz)."),
    qc_png: Optional[Path] = typer.Option(None, "--qc-png", help="Also write a QC sheet: mid-sagittal and anterior surface, before/after."),
    qc_json: Optional[Path] = typer.Option(None, "--qc-json", help="Also write the QC record as JSON."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Reuse/keep defaced volumes here (keyed by content and defacer)."),
    param: List[str] = typer.Option([], "--param", "-p", help="Defacer parameter KEY=VALUE (repeatable), e.g. buffer_mm=5 or command='tool {input} {output}'; the same as NAME(KEY=VALUE). Values: integer, decimal, true/false, otherwise text."),
    modality: Optional[str] = typer.Option(None, help="Override the modality: MR or CT."),
    brain_from: Optional[Path] = typer.Option(None, "--brain-from", help="Measure brain voxels changed with this volume's brain mask: the T1 of the same case when VOLUME is its co-registered T2, FLAIR or post-contrast T1 (whose own masks take in scalp)."),
):
    """Deface a head volume and report how much face went and whether any brain changed.

    `harness defacers` lists the defacers, their parameters and whether external tools are installed.
    """
    import defacers
    from defacers.qc import qc_png as make_qc_png

    if not out.name.lower().endswith((".nii", ".nii.gz")):
        raise HarnessError(f"{out}: output name must end in .nii or .nii.gz")
    v = load_volume(volume, modality=modality)
    reference = load_volume(brain_from, modality=v.modality) if brain_from is not None else None
    d = defacer_from_options(defacer, param)
    try:
        result = defacers.deface_cached(d, v, cache_dir, reference) if cache_dir is not None else d.deface(v, reference)
    except HarnessError as exc:
        raise HarnessError(f"{volume}: {exc}") from None
    save_nifti(result.volume, out)
    typer.echo(f"wrote {out}" + (" (from cache)" if result.from_cache else ""))
    qc = result.qc
    for key in ("voxels_changed", "brain_voxels_changed", "brain_mask_from", "face_fraction_changed", "face_surface_change_mm"):
        if key in qc:
            value = qc[key]
            typer.echo(f"{key:<24} {value:.3f}" if isinstance(value, float) else f"{key:<24} {value}")
    if "registration" in qc:
        reg = qc["registration"]
        typer.echo(f"{'registration metric':<24} {reg['metric']:.3f} (refused above {reg['max_metric']})")
    typer.echo(f"{'seconds':<24} {result.timings.get('total', 0.0):.2f}")
    if qc.get("nothing_changed"):
        typer.echo("warning: nothing changed - the defaced volume equals the original")
    if "resampled_from" in qc:
        grid = qc["resampled_from"]
        typer.echo(f"note: resampled onto the original's grid from {' x '.join(map(str, grid['shape']))} voxels of "
                   f"{' x '.join(f'{s:g}' for s in grid['spacing_mm'])} mm (interpolation changes voxels by itself)")
    if "face_measures" in qc:
        typer.echo(f"note: face measures {qc['face_measures']}")
    if qc_json is not None:
        atomic_write_bytes(qc_json, json.dumps({"qc": qc, "timings": result.timings}, indent=1, default=float).encode())
    if qc_png is not None:
        atomic_write_bytes(qc_png, make_qc_png(v, result.volume, title=defacer))
        typer.echo(f"wrote {qc_png}")


def register(app: typer.Typer) -> None:
    app.command("deface")(deface_cmd)
