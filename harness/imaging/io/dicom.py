"""DICOM series -> Volume: series selection, slice ordering along the normal, multi-frame (enhanced) files,
rescale to Hounsfield units, gantry-tilt correction, and a clear refusal for everything that is not a 3D image.

Geometry: pixel (row r, column c) of a slice lies at IPP + c * dc * row_dir + r * dr * col_dir (LPS mm), where
row_dir/col_dir are the two halves of ImageOrientationPatient and PixelSpacing = (dr, dc). The array is built as
data[c, r, k] so the affine's columns are row_dir*dc, col_dir*dr and the slice step; LPS is then flipped to RAS.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from harness.core.errors import HarnessWarning, VolumeError
from harness.imaging.io.nifti import check_finite
from harness.core.volume import Volume, to_canonical

NON_IMAGE_MODALITIES = {"SR", "SEG", "RTSTRUCT", "RTPLAN", "RTRECORD", "PR", "KO", "REG", "DOC", "RWV", "FID", "PLAN"}
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
ORIENTATION_TOLERANCE = 1e-3  # direction cosines within a series must agree to this
TILT_TOLERANCE_DEG = 0.05


@dataclass
class SliceRef:
    path: Path
    frame: int | None  # frame index inside a multi-frame file; None for a single-frame file
    ipp: np.ndarray
    iop: np.ndarray
    pixel_spacing: tuple[float, float]
    rows: int
    cols: int
    slope: float
    intercept: float
    order_key: tuple  # acquisition/temporal order, used to split repeated positions into 4D frames


def _float_list(value, n: int, what: str, path: Path) -> np.ndarray:
    try:
        arr = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        raise VolumeError(path, f"{what} is malformed ({value!r})") from None
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise VolumeError(path, f"{what} must have {n} finite numbers, got {value!r}")
    return arr


def _find_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".") and p.name.upper() != "DICOMDIR")
    if not files:
        raise VolumeError(path, "folder is empty: no DICOM files found")
    return files


DEFER_BYTES = 16384  # header values larger than this (pixel data) are read from the file when used
NATIVE_LITTLE_ENDIAN = (pydicom.uid.ExplicitVRLittleEndian, pydicom.uid.ImplicitVRLittleEndian)


def _has_dicom_magic(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(128)
        return fh.read(4) == b"DICM"


def _read_headers(files: list[Path], root: Path) -> list[tuple[Path, pydicom.Dataset]]:
    headers, skipped = [], []
    for f in files:
        try:
            # large values (pixel data) are read later from the file only for the chosen series, one file at a
            # time, without parsing the header a second time
            ds = pydicom.dcmread(f, defer_size=DEFER_BYTES)
        except InvalidDicomError as exc:
            if _has_dicom_magic(f):  # claims to be DICOM, so it is a broken one, not a stray file
                raise VolumeError(f, f"corrupt or truncated DICOM file ({exc})") from None
            skipped.append(f)
            continue
        except Exception as exc:  # truncated or corrupt header: the file claims to be DICOM but cannot be parsed
            raise VolumeError(f, f"corrupt or truncated DICOM file ({exc.__class__.__name__}: {exc})") from None
        if len(ds) == 0:  # pydicom returns an empty dataset for a file cut inside its meta header
            raise VolumeError(f, "truncated DICOM file: nothing after the file meta header")
        headers.append((f, ds))
    if not headers:
        raise VolumeError(root, f"no DICOM files found ({len(skipped)} other files ignored)")
    if skipped:
        warnings.warn(f"{root}: ignored {len(skipped)} files that are not DICOM (e.g. {skipped[0].name})", HarnessWarning, stacklevel=3)
    return headers


def _is_image(ds: pydicom.Dataset) -> bool:
    return str(ds.get("Modality", "")).upper() not in NON_IMAGE_MODALITIES and "Rows" in ds and "Columns" in ds


def _choose_series(headers, root: Path, series_uid: str | None):
    images = [(f, ds) for f, ds in headers if _is_image(ds)]
    if not images:
        kinds = Counter(str(ds.get("Modality", "?")) for _, ds in headers)
        raise VolumeError(root, f"no image series, only non-image DICOM objects ({', '.join(f'{k} x{n}' for k, n in kinds.items())})")
    by_series: dict[str, list] = defaultdict(list)
    for f, ds in images:
        by_series[str(ds.get("SeriesInstanceUID", ""))].append((f, ds))
    if series_uid is not None:
        if series_uid not in by_series:
            raise VolumeError(root, f"series {series_uid} not found; available: {', '.join(sorted(by_series))}")
        return series_uid, by_series[series_uid]
    if len(by_series) > 1:
        sizes = {uid: sum(int(ds.get("NumberOfFrames", 1) or 1) for _, ds in members) for uid, members in by_series.items()}
        uid = max(sorted(sizes), key=lambda u: sizes[u])
        listing = ", ".join(f"{u} ({n} images)" for u, n in sorted(sizes.items(), key=lambda kv: -kv[1]))
        warnings.warn(f"{root}: {len(by_series)} series found; using the largest, {uid}. Choose with --series. Series: {listing}", HarnessWarning, stacklevel=3)
        return uid, by_series[uid]
    uid = next(iter(by_series))
    return uid, by_series[uid]


def _group(ds: pydicom.Dataset, frame: int, name: str):
    """A functional-group macro of an enhanced multi-frame file: per-frame if present, else shared."""
    for container in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        seq = ds.get(container)
        if not seq:
            continue
        item = seq[frame] if container.startswith("PerFrame") else seq[0]
        if name in item and len(item[name].value):
            return item[name].value[0]
    return None


def _slices_of_file(f: Path, ds: pydicom.Dataset) -> list[SliceRef]:
    rows, cols = int(ds.Rows), int(ds.Columns)
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if n_frames > 1:
        if "PerFrameFunctionalGroupsSequence" not in ds:
            raise VolumeError(f, f"multi-frame file with {n_frames} frames but no per-frame positions (not an enhanced CT/MR object)")
        out = []
        for k in range(n_frames):
            pos, ori, meas = (_group(ds, k, n) for n in ("PlanePositionSequence", "PlaneOrientationSequence", "PixelMeasuresSequence"))
            if pos is None or ori is None or meas is None:
                raise VolumeError(f, f"frame {k} lacks plane position, orientation or pixel spacing")
            trans = _group(ds, k, "PixelValueTransformationSequence")
            slope = float(trans.get("RescaleSlope", 1.0)) if trans is not None else float(ds.get("RescaleSlope", 1.0))
            intercept = float(trans.get("RescaleIntercept", 0.0)) if trans is not None else float(ds.get("RescaleIntercept", 0.0))
            content = _group(ds, k, "FrameContentSequence")
            temporal = int(content.get("TemporalPositionIndex", 0) or 0) if content is not None else 0
            ps = _float_list(meas.PixelSpacing, 2, "PixelSpacing", f)
            out.append(
                SliceRef(f, k, _float_list(pos.ImagePositionPatient, 3, "ImagePositionPatient", f),
                         _float_list(ori.ImageOrientationPatient, 6, "ImageOrientationPatient", f),
                         (float(ps[0]), float(ps[1])), rows, cols, slope, intercept, (temporal, k))
            )
        return out
    for tag in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
        if tag not in ds:
            raise VolumeError(f, f"has no {tag}: not a cross-sectional image slice (a localizer or secondary capture?)")
    ps = _float_list(ds.PixelSpacing, 2, "PixelSpacing", f)
    order = (int(ds.get("AcquisitionNumber", 0) or 0), int(ds.get("TemporalPositionIdentifier", 0) or 0), int(ds.get("InstanceNumber", 0) or 0))
    return [
        SliceRef(f, None, _float_list(ds.ImagePositionPatient, 3, "ImagePositionPatient", f),
                 _float_list(ds.ImageOrientationPatient, 6, "ImageOrientationPatient", f),
                 (float(ps[0]), float(ps[1])), rows, cols, float(ds.get("RescaleSlope", 1.0) or 1.0), float(ds.get("RescaleIntercept", 0.0) or 0.0), order)
    ]


def _check_consistent(slices: list[SliceRef], root: Path) -> np.ndarray:
    first = slices[0]
    for s in slices[1:]:
        if (s.rows, s.cols) != (first.rows, first.cols):
            raise VolumeError(s.path, f"slice size {s.rows}x{s.cols} differs from {first.rows}x{first.cols} in {first.path.name}")
        if np.max(np.abs(s.iop - first.iop)) > ORIENTATION_TOLERANCE:
            raise VolumeError(root, f"inconsistent orientation within the series ({s.path.name} vs {first.path.name}); a series must be one stack of parallel slices")
        if np.max(np.abs(np.subtract(s.pixel_spacing, first.pixel_spacing))) > 1e-3:
            raise VolumeError(root, f"inconsistent pixel spacing within the series ({s.path.name}: {s.pixel_spacing} vs {first.pixel_spacing})")
    row_dir, col_dir = first.iop[:3], first.iop[3:]
    normal = np.cross(row_dir, col_dir)
    if not math.isclose(np.linalg.norm(normal), 1.0, abs_tol=1e-2):
        raise VolumeError(first.path, f"ImageOrientationPatient {first.iop.tolist()} is not two orthogonal unit vectors")
    return normal / np.linalg.norm(normal)


def _select_frame(slices: list[SliceRef], positions: np.ndarray, root: Path, frame: int | None, tol: float) -> tuple[list[SliceRef], int]:
    """Split repeated positions (4D acquisitions) into frames, or refuse duplicates."""
    order = np.argsort(positions, kind="stable")
    groups: list[list[int]] = []
    for idx in order:
        if groups and abs(positions[idx] - positions[groups[-1][0]]) <= tol:
            groups[-1].append(idx)
        else:
            groups.append([idx])
    counts = {len(g) for g in groups}
    if counts == {1}:
        if frame not in (None, 0):
            raise VolumeError(root, f"frame {frame} does not exist: the series is 3D")
        return [slices[g[0]] for g in groups], 1
    if len(counts) > 1:
        dup = next(g for g in groups if len(g) > 1)
        names = ", ".join(sorted({f"{slices[i].path.name}" + (f"[frame {slices[i].frame}]" if slices[i].frame is not None else "") for i in dup}))
        raise VolumeError(root, f"duplicate slices at position {positions[dup[0]]:.2f} mm ({names})")
    n = counts.pop()
    if frame is None:
        raise VolumeError(root, f"is 4D: {n} images at each of {len(groups)} positions; choose one with --frame N (0-based)")
    if not 0 <= frame < n:
        raise VolumeError(root, f"frame {frame} does not exist; the series has frames 0..{n - 1}")
    return [sorted((slices[i] for i in g), key=lambda s: s.order_key)[frame] for g in groups], n


def _check_spacing(positions: np.ndarray, root: Path) -> float:
    steps = np.diff(positions)
    step = float(np.median(steps))
    tol = max(0.02 * step, 0.01)
    bad = np.flatnonzero(np.abs(steps - step) > tol)
    if bad.size:
        i = int(bad[0])
        ratio = steps[i] / step
        if abs(ratio - round(ratio)) * step <= tol and round(ratio) >= 2:
            raise VolumeError(root, f"missing slice(s): gap of {steps[i]:.2f} mm between positions {positions[i]:.2f} and {positions[i + 1]:.2f} mm (expected {step:.2f} mm); about {round(ratio) - 1} missing")
        raise VolumeError(root, f"inconsistent slice spacing: steps range {steps.min():.3f}-{steps.max():.3f} mm; refusing rather than guessing a grid")
    return step


def _native_pixels(ds: pydicom.Dataset) -> np.ndarray | None:
    """Uncompressed little-endian integer pixels read straight from the buffer (pydicom's general decoder costs
    about 1 ms a slice); None for anything else, which pydicom decodes."""
    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    bits = int(ds.get("BitsAllocated", 0) or 0)
    if ts not in NATIVE_LITTLE_ENDIAN or bits not in (8, 16, 32) or int(ds.get("BitsStored", 0) or 0) != bits:
        return None
    rows, cols, frames = int(ds.Rows), int(ds.Columns), int(ds.get("NumberOfFrames", 1) or 1)
    dtype = np.dtype(f"<{'i' if int(ds.get('PixelRepresentation', 0) or 0) else 'u'}{bits // 8}")
    raw = ds.PixelData
    if len(raw) < rows * cols * frames * dtype.itemsize:
        raise ValueError(f"pixel data holds {len(raw)} bytes, {rows}x{cols}x{frames} pixels need {rows * cols * frames * dtype.itemsize}")
    arr = np.frombuffer(raw, dtype=dtype, count=rows * cols * frames)
    return arr.reshape((frames, rows, cols) if frames > 1 else (rows, cols))


def _read_pixels(path: Path, ds: pydicom.Dataset) -> np.ndarray:
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise VolumeError(path, f"colour image ({ds.get('PhotometricInterpretation')}); CT/MR volumes are greyscale")
    try:
        arr = _native_pixels(ds)
        if arr is None:
            arr = np.asarray(ds.pixel_array)
    except (OSError, EOFError) as exc:
        raise VolumeError(path, f"corrupt or truncated DICOM file ({exc.__class__.__name__}: {exc})") from None
    except Exception as exc:
        ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
        syntax = f" (transfer syntax {ts.name})" if ts is not None else ""
        raise VolumeError(path, f"pixel data cannot be decoded{syntax}: {exc.__class__.__name__}: {exc}") from None
    return arr


def _monochrome1(ds: pydicom.Dataset) -> bool:
    return str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1"


def _pixels(slices: list[SliceRef], datasets: dict[Path, pydicom.Dataset], modality: str) -> np.ndarray:
    """Rescaled pixel planes stacked as [rows, cols, k]; one decoded file is kept at a time.

    MONOCHROME1 (low values shown white) is flipped so that high values are bright, as everywhere else - over the
    series' stored range, so every slice maps alike (slice by slice, a slice's own range would shift its values).
    Not for CT: its rescale gives Hounsfield units whatever the display convention, and those stay as they are."""
    inverted = [_monochrome1(datasets[s.path]) for s in slices] if modality != "CT" else []
    current: tuple[Path | None, np.ndarray | None] = (None, None)
    planes = []
    for s in slices:
        if current[0] != s.path:
            if current[0] is not None and "PixelData" in datasets[current[0]]:
                del datasets[current[0]].PixelData  # keep one file's pixel bytes in memory, not the series'
            current = (s.path, _read_pixels(s.path, datasets[s.path]))
        arr = current[1]
        plane = arr[s.frame] if s.frame is not None else arr
        if plane.shape != (s.rows, s.cols):
            raise VolumeError(s.path, f"pixel data shape {plane.shape} does not match Rows x Columns {s.rows}x{s.cols}")
        planes.append(plane)
    # rescaled in one pass over the stacked stored values (the same float64 operations as slice by slice)
    slopes = np.array([s.slope for s in slices], dtype=np.float64)
    intercepts = np.array([s.intercept for s in slices], dtype=np.float64)
    pixels = np.stack(planes, axis=-1).astype(np.float64)
    if any(inverted):
        flip = np.array(inverted)
        stored = pixels[..., flip]
        pixels[..., flip] = stored.max() + stored.min() - stored
    pixels *= slopes
    pixels += intercepts
    return pixels


def _safe_meta(ds: pydicom.Dataset, modality: str) -> dict:
    meta: dict = {"source_format": "dicom"}
    fields = {
        "body_part": "BodyPartExamined",
        "slice_thickness_mm": "SliceThickness",
        "kvp": "KVP",
        "convolution_kernel": "ConvolutionKernel",
        "manufacturer": "Manufacturer",
        "manufacturer_model": "ManufacturerModelName",
        "field_strength_t": "MagneticFieldStrength",
        "repetition_time_ms": "RepetitionTime",
        "echo_time_ms": "EchoTime",
    }
    for key, tag in fields.items():
        value = ds.get(tag)
        if value in (None, ""):
            continue
        if isinstance(value, pydicom.multival.MultiValue):
            value = "\\".join(str(v) for v in value)
        try:
            meta[key] = float(value) if key.endswith(("_mm", "_t", "_ms")) or key == "kvp" else str(value)
        except (TypeError, ValueError):
            continue
    return meta


def load_dicom(path, *, modality: str | None = None, series_uid: str | None = None, frame: int | None = None) -> Volume:
    root = Path(path)
    headers = _read_headers(_find_files(root), root)
    uid, members = _choose_series(headers, root, series_uid)
    ds0 = members[0][1]
    dicom_modality = str(ds0.get("Modality", "")).upper()
    if modality is None:
        if dicom_modality not in ("CT", "MR"):
            raise VolumeError(root, f"modality {dicom_modality or 'unknown'} is not supported (CT or MR); override with --modality if you are sure")
        modality = dicom_modality
    slices = [s for f, ds in members for s in _slices_of_file(f, ds)]
    if len(slices) < 2:
        raise VolumeError(root, "holds a single 2D image; a 3D volume needs a series of slices")
    normal = _check_consistent(slices, root)
    positions = np.array([s.ipp @ normal for s in slices])
    dr, dc = slices[0].pixel_spacing
    slices, n_frames = _select_frame(slices, positions, root, frame, tol=max(1e-3, 0.01 * min(dr, dc)))
    if len(slices) < 2:
        raise VolumeError(root, "holds a single 2D image per frame; a 3D volume needs a series of slices")
    positions = np.array([s.ipp @ normal for s in slices])
    step = _check_spacing(positions, root)

    row_dir, col_dir = slices[0].iop[:3], slices[0].iop[3:]
    step_vec = (slices[-1].ipp - slices[0].ipp) / (len(slices) - 1)
    in_plane = step_vec - (step_vec @ normal) * normal
    tilt = math.degrees(math.atan2(np.linalg.norm(in_plane), abs(step)))
    pixels = _pixels(slices, dict(members), modality)  # [rows, cols, k]
    meta = _safe_meta(ds0, modality)
    if tilt > TILT_TOLERANCE_DEG:
        # Gantry tilt: slices are offset in-plane as they advance. Resample onto an orthogonal grid by shifting each
        # slice back (what dcm2niix does), so the volume keeps a plain, non-sheared affine.
        from scipy.ndimage import shift as nd_shift

        per_slice = np.array([in_plane @ col_dir / dr, in_plane @ row_dir / dc])
        fill = float(pixels.min())
        for k in range(pixels.shape[2]):
            pixels[:, :, k] = nd_shift(pixels[:, :, k], per_slice * k, order=1, mode="constant", cval=fill)
        meta["gantry_tilt_deg"] = round(tilt, 3)
        warnings.warn(f"{root}: gantry tilt of {tilt:.2f} degrees corrected by resampling slices onto an orthogonal grid", HarnessWarning, stacklevel=2)
    data = np.transpose(pixels, (1, 0, 2))  # -> [c, r, k]
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = row_dir * dc
    affine_lps[:3, 1] = col_dir * dr
    affine_lps[:3, 2] = normal * step
    affine_lps[:3, 3] = slices[0].ipp
    affine = LPS_TO_RAS @ affine_lps
    check_finite(data, root)
    data32 = data.astype(np.float32)
    data32, affine, stored = to_canonical(data32, affine)
    meta["stored_orientation"] = stored
    if n_frames > 1:
        meta.update(frame=frame, n_frames=n_frames)
    return Volume(data32, affine, modality, meta)
