"""`harness info` and `harness render`: look at a volume."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import typer

from harness.imaging.io import load_volume
from harness.imaging.render import RenderSpec, Slices, parse_montage, parse_window, render, write_pngs

VOLUME_HELP = "A NIfTI file (.nii/.nii.gz), a DICOM file, or a folder of DICOM files."


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".dcm"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def info(
    volume: Path = typer.Argument(..., help=VOLUME_HELP),
    modality: Optional[str] = typer.Option(None, help="Override the modality: MR or CT."),
    series: Optional[str] = typer.Option(None, help="DICOM SeriesInstanceUID to load when a folder holds several."),
    frame: Optional[int] = typer.Option(None, help="Frame (0-based) to take from a 4D volume."),
):
    """Print shape, spacing, orientation, modality and intensity range. No patient information is ever shown."""
    v = load_volume(volume, modality=modality, series_uid=series, frame=frame)
    lo, hi = v.intensity_range
    p1, p99 = np.percentile(v.data[::2, ::2, ::2], [1, 99])
    fov = [n * s for n, s in zip(v.shape, v.spacing)]
    rows = [
        ("file", str(volume)),
        ("format", str(v.meta.get("source_format", "?"))),
        ("modality", v.modality + (" (HU)" if v.modality == "CT" else "")),
        ("shape", " x ".join(str(n) for n in v.shape)),
        ("spacing (mm)", " x ".join(f"{s:.3g}" for s in v.spacing)),
        ("field of view (mm)", " x ".join(f"{f:.1f}" for f in fov)),
        ("orientation", f"{v.orientation} (stored as {v.meta.get('stored_orientation', '?')})"),
        ("intensity range", f"{lo:.6g} .. {hi:.6g} (1st-99th percentile {p1:.6g} .. {p99:.6g})"),
        ("content hash", v.content_hash[:16]),
    ]
    for key in ("gantry_tilt_deg", "frame", "n_frames", "slice_thickness_mm"):
        if key in v.meta:
            rows.append((key.replace("_", " "), str(v.meta[key])))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        typer.echo(f"{key:<{width}}  {value}")


def render_cmd(
    volume: Path = typer.Argument(..., help=VOLUME_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the PNG files (created if missing)."),
    plane: str = typer.Option("axial", help="axial, coronal or sagittal."),
    slices: str = typer.Option("mid", help="mid | all | 40,52 (indices) | 25%,50% | -12mm,30mm (world mm) | every:4 | every:5mm."),
    window: str = typer.Option("auto", help="auto (CT: brain, MR: robust percentiles) | brain | subdural | stroke | bone | soft | CENTER/WIDTH."),
    size: int = typer.Option(512, help="Long side of each image (or montage tile) in pixels."),
    montage: Optional[str] = typer.Option(None, help="Tile all slices into one image: ROWSxCOLS or auto."),
    labels: bool = typer.Option(False, "--labels/--no-labels", help="Draw slice number, position and R/L (or A/P) letters."),
    modality: Optional[str] = typer.Option(None, help="Override the modality: MR or CT."),
    series: Optional[str] = typer.Option(None, help="DICOM SeriesInstanceUID to load when a folder holds several."),
    frame: Optional[int] = typer.Option(None, help="Frame (0-based) to take from a 4D volume."),
):
    """Render slices as PNG (radiological convention: patient right on image left) and print their paths."""
    v = load_volume(volume, modality=modality, series_uid=series, frame=frame)
    spec = RenderSpec(plane=plane, slices=Slices.parse(slices), window=parse_window(window), size=size, montage=parse_montage(montage), labels=labels)  # type: ignore[arg-type]
    for path in write_pngs(render(v, spec), out, _stem(volume)):
        typer.echo(str(path))


def register(app: typer.Typer) -> None:
    app.command("info")(info)
    app.command("render")(render_cmd)
