"""Tools an agent uses on a case's volumes, in physical units: volume_info, view_slice, view_montage, measure,
submit. Tasks may add their own (or replace submit) with Tool.from_function.

A tool's JSON schema comes from its signature (types, defaults, Literal choices) and its docstring (the first
paragraph describes the tool; an `Args:` section describes each argument). Arguments from a model are untrusted:
they are validated against the schema, and every problem goes back to the model as an error result instead of
raising.

Image pixel coordinates (measure) refer to the image view_slice returns for the same plane and slice: x runs left
to right, y top to bottom, both from 0 at the top-left corner. The display is radiological (see harness.imaging.render).
"""

from __future__ import annotations

import inspect
import math
import re
import types
import typing
from dataclasses import dataclass, replace
from typing import Any, Callable, Literal, Mapping

import numpy as np

from harness.core.errors import HarnessError
from harness.models.types import ImagePart, ToolCall, ToolSpec
from harness.imaging.render import (
    PLANE_AXIS,
    PLANES,
    WINDOW_PRESETS,
    RenderError,
    RenderSpec,
    Slices,
    display_size,
    display_slice,
    parse_window,
    render,
    slice_positions_mm,
)
from harness.core.volume import Volume

Plane = Literal["axial", "coronal", "sagittal"]


class ToolError(HarnessError):
    """A tool call that cannot be carried out; the message goes back to the model."""


@dataclass(frozen=True)
class ToolResult:
    text: str
    images: tuple[ImagePart, ...] = ()
    error: bool = False
    submitted: bool = False
    answer: Any = None


# --- schemas from signatures and docstrings ---------------------------------------------------------------------

def _json_type(tp) -> dict:
    origin = typing.get_origin(tp)
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is str:
        return {"type": "string"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is dict or origin is dict:
        return {"type": "object"}
    if origin is Literal:
        values = list(typing.get_args(tp))
        return {**_json_type(type(values[0])), "enum": values}
    if origin in (list, tuple):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return {"type": "array", **({"items": _json_type(args[0])} if args else {})}
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _json_type(args[0])
        return {"anyOf": [_json_type(a) for a in args]}
    raise TypeError(f"no JSON schema for {tp!r}")


def _doc_sections(fn) -> tuple[str, dict[str, str]]:
    doc = inspect.cleandoc(fn.__doc__ or "")
    head, _, rest = doc.partition("\nArgs:")
    description = " ".join(head.split("\n\n")[0].split())
    params: dict[str, str] = {}
    current = None
    for line in rest.splitlines():
        m = re.match(r"^\s{2,}(\w+)\s*(?:\([^)]*\))?:\s*(.*)$", line)
        if m:
            current = m.group(1)
            params[current] = m.group(2).strip()
        elif current and line.strip():
            params[current] += " " + line.strip()
        elif not line.strip():
            current = None
    return description, params


def schema_from_function(fn, skip: tuple[str, ...] = ("self",)) -> tuple[str, dict]:
    description, docs = _doc_sections(fn)
    hints = typing.get_type_hints(fn)
    props, required = {}, []
    for name, p in inspect.signature(fn).parameters.items():
        if name in skip:
            continue
        if name not in hints:
            raise TypeError(f"tool {fn.__name__}: argument {name!r} has no type annotation")
        prop = _json_type(hints[name])
        if name in docs:
            prop["description"] = docs[name]
        if p.default is inspect.Parameter.empty:
            required.append(name)
        elif p.default is not None:
            prop["default"] = p.default
        props[name] = prop
    schema = {"type": "object", "properties": props, "required": required, "additionalProperties": False}
    return description, schema


# --- argument validation ----------------------------------------------------------------------------------------

def _check(value, schema: dict, where: str):
    if "anyOf" in schema:
        errors = []
        for option in schema["anyOf"]:
            try:
                return _check(value, option, where)
            except ToolError as exc:
                errors.append(str(exc))
        raise ToolError(errors[0])
    t = schema.get("type")
    if t == "integer":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not value.is_integer()):
            raise ToolError(f"{where} must be an integer, got {value!r}")
        value = int(value)
    elif t == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ToolError(f"{where} must be a finite number, got {value!r}")
        value = float(value)
    elif t == "string":
        if not isinstance(value, str):
            raise ToolError(f"{where} must be a string, got {value!r}")
    elif t == "boolean":
        if not isinstance(value, bool):
            raise ToolError(f"{where} must be true or false, got {value!r}")
    elif t == "array":
        if not isinstance(value, list):
            raise ToolError(f"{where} must be a list, got {value!r}")
        if "items" in schema:
            value = [_check(v, schema["items"], f"{where}[{i}]") for i, v in enumerate(value)]
    elif t == "object":
        if not isinstance(value, dict):
            raise ToolError(f"{where} must be an object, got {value!r}")
    if "enum" in schema and value not in schema["enum"]:
        raise ToolError(f"{where} must be one of {', '.join(map(str, schema['enum']))}; got {value!r}")
    return value


def validate_arguments(schema: dict, args: Mapping) -> dict:
    props = schema.get("properties", {})
    unknown = sorted(set(args) - set(props))
    if unknown:
        raise ToolError(f"unknown argument(s) {', '.join(unknown)}; this tool takes {', '.join(props) or 'no arguments'}")
    missing = [k for k in schema.get("required", []) if k not in args]
    if missing:
        raise ToolError(f"missing required argument(s) {', '.join(missing)}")
    return {k: (None if v is None and k not in schema.get("required", []) else _check(v, props[k], k)) for k, v in args.items()}


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict
    fn: Callable[..., Any]
    submits: bool = False  # calling it ends the sample; its return value is the answer

    @classmethod
    def from_function(cls, fn, *, name: str | None = None, submits: bool = False) -> "Tool":
        description, schema = schema_from_function(fn)
        return cls(name or fn.__name__, description, schema, fn, submits)

    @property
    def spec(self) -> ToolSpec:
        return ToolSpec(self.name, self.description, self.parameters)

    def invoke(self, args: Mapping) -> ToolResult:
        out = self.fn(**validate_arguments(self.parameters, args))
        if isinstance(out, ToolResult):
            return out
        if self.submits:
            return ToolResult("answer received", submitted=True, answer=out)
        return ToolResult(str(out))


# --- the volume tools -------------------------------------------------------------------------------------------

def pixel_to_voxel(volume: Volume, plane: str, index: int, x: float, y: float, image_size: int) -> np.ndarray:
    """Fractional voxel indices of image pixel (x, y) on a view_slice image of `image_size` (long side).

    Pixel centres sit at integer coordinates. The image is the display array (harness.imaging.render.display_slice, both
    slice axes reversed and transposed) resized to display_size, so each axis maps linearly back.
    """
    arr, row_sp, col_sp = display_slice(volume, plane, index)
    rows, cols = arr.shape
    width, height = display_size(arr.shape, row_sp, col_sp, image_size)
    c = (x + 0.5) * cols / width - 0.5
    r = (y + 0.5) * rows / height - 0.5
    ni, nj, nk = volume.shape
    if plane == "axial":
        return np.array([ni - 1 - c, nj - 1 - r, index], dtype=float)
    if plane == "coronal":
        return np.array([ni - 1 - c, index, nk - 1 - r], dtype=float)
    return np.array([index, nj - 1 - c, nk - 1 - r], dtype=float)


class Toolbox:
    """The tools for one case: its volumes by role (e.g. {"t1": volume}). Images are `image_size` pixels on the
    long side; a montage holds at most `max_montage_tiles` slices."""

    def __init__(self, volumes: Mapping[str, Volume], *, image_size: int = 512, max_montage_tiles: int = 16,
                 extra_tools: tuple[Tool, ...] = (), submit: Tool | None = None):
        if not volumes:
            raise HarnessError("a Toolbox needs at least one volume")
        self.volumes = dict(volumes)
        self.image_size = image_size
        self.max_montage_tiles = max_montage_tiles
        roles = list(self.volumes)
        base = [
            Tool.from_function(self.volume_info),
            Tool.from_function(self.view_slice),
            Tool.from_function(self.view_montage),
            Tool.from_function(self.measure),
            submit or Tool.from_function(submit_answer, name="submit", submits=True),
        ]
        self.tools: dict[str, Tool] = {}
        for tool in [*base, *extra_tools]:
            props = tool.parameters.get("properties", {})
            if props.get("volume", {}).get("type") == "string":  # offer this case's roles as the choices
                props = {**props, "volume": {**props["volume"], "enum": roles, "default": roles[0]}}
                tool = replace(tool, parameters={**tool.parameters, "properties": props})
            self.tools[tool.name] = tool

    def specs(self, names: tuple[str, ...] | None = None) -> list[ToolSpec]:
        return [t.spec for n, t in self.tools.items() if names is None or n in names]

    @property
    def submit_names(self) -> tuple[str, ...]:
        return tuple(n for n, t in self.tools.items() if t.submits)

    def call(self, call: ToolCall) -> ToolResult:
        """Run one call from a model. Never raises for the model's mistakes: they come back as error results."""
        if call.error:
            return ToolResult(f"error: {call.error}", error=True)
        tool = self.tools.get(call.name)
        if tool is None:
            return ToolResult(f"error: unknown tool {call.name!r}; available: {', '.join(self.tools)}", error=True)
        try:
            return tool.invoke(call.arguments or {})
        except (ToolError, RenderError) as exc:
            return ToolResult(f"error: {exc}", error=True)
        except TypeError as exc:
            return ToolResult(f"error: bad arguments for {call.name}: {exc}", error=True)

    def _volume(self, role: str | None) -> tuple[str, Volume]:
        role = role or next(iter(self.volumes))
        if role not in self.volumes:
            raise ToolError(f"no volume {role!r}; this case has {', '.join(self.volumes)}")
        return role, self.volumes[role]

    def _index(self, volume: Volume, plane: str, index: int | None, mm: float | None) -> int:
        n = volume.shape[PLANE_AXIS[plane]]
        if (index is None) == (mm is None):
            raise ToolError("give exactly one of index (0-based slice number) or mm (world position along the plane's normal)")
        if index is not None:
            if not 0 <= index < n:
                raise ToolError(f"index {index} is outside the {plane} range 0..{n - 1}")
            return index
        try:
            return Slices("mm", (mm,)).resolve(volume, plane)[0]
        except RenderError as exc:
            raise ToolError(str(exc)) from None

    @staticmethod
    def _window(window: str):
        try:
            return parse_window(window)
        except RenderError as exc:
            raise ToolError(str(exc)) from None

    def volume_info(self, volume: str | None = None) -> ToolResult:
        """Geometry of a volume: modality, size, voxel spacing, and the slice range of each plane in indices and mm.

        Args:
            volume: Which of the case's volumes (default: the first).
        """
        role, v = self._volume(volume)
        lines = [
            f"volume {role}: {v.modality}" + (" (Hounsfield units)" if v.modality == "CT" else ""),
            f"voxels: {' x '.join(map(str, v.shape))} (index grows towards patient left->right, posterior->anterior, inferior->superior)",
            f"spacing: {' x '.join(f'{s:.3g}' for s in v.spacing)} mm",
        ]
        for plane in PLANES:
            pos = slice_positions_mm(v, plane)
            axis = PLANE_AXIS[plane]
            arr, row_sp, col_sp = display_slice(v, plane, 0)
            w, h = display_size(arr.shape, row_sp, col_sp, self.image_size)
            lines.append(
                f"{plane}: {len(pos)} slices, index 0..{len(pos) - 1} = {'xyz'[axis]} {pos[0]:+.1f}..{pos[-1]:+.1f} mm; "
                f"view_slice images are {w}x{h} pixels"
            )
        lines.append("display: radiological (patient right on image left), anterior/superior at the top")
        lines.append(f"windows: auto, {', '.join(WINDOW_PRESETS)}, or CENTER/WIDTH")
        return ToolResult("\n".join(lines))

    def view_slice(self, plane: Plane, index: int | None = None, mm: float | None = None, window: str = "auto",
                   volume: str | None = None) -> ToolResult:
        """Look at one slice as an image. Give either its index or its position in mm.

        Args:
            plane: axial, coronal or sagittal.
            index: 0-based slice index along the plane's normal.
            mm: World position in mm along the plane's normal (x for sagittal, y for coronal, z for axial).
            window: Intensity window: auto, a preset (brain, subdural, stroke, bone, soft) or CENTER/WIDTH.
            volume: Which of the case's volumes (default: the first).
        """
        role, v = self._volume(volume)
        i = self._index(v, plane, index, mm)
        spec = RenderSpec(plane=plane, slices=Slices("index", (i,)), window=self._window(window), size=self.image_size, labels=True)
        img = render(v, spec)[0]
        label = f"{role} {plane} slice {i}"
        arr, row_sp, col_sp = display_slice(v, plane, i)
        px = row_sp * arr.shape[0] / img.height
        text = (f"{label} ({'xyz'[PLANE_AXIS[plane]]}={img.positions_mm[0]:+.1f} mm), window {img.window[0]:g}/{img.window[1]:g}, "
                f"{img.width}x{img.height} pixels, {px:.3g} mm per pixel")
        return ToolResult(text, (ImagePart.from_rendered(img, label, role=role, spec=spec),))

    def view_montage(self, plane: Plane, start: int | None = None, stop: int | None = None, step: int | None = None,
                     window: str = "auto", volume: str | None = None) -> ToolResult:
        """Look at several slices at once, tiled left to right, top to bottom, each labelled with its index and mm.

        Args:
            plane: axial, coronal or sagittal.
            start: First slice index (default 0).
            stop: Last slice index, included (default the last slice).
            step: Slices between tiles (default: spread at most 16 tiles over the range).
            window: Intensity window: auto, a preset (brain, subdural, stroke, bone, soft) or CENTER/WIDTH.
            volume: Which of the case's volumes (default: the first).
        """
        role, v = self._volume(volume)
        n = v.shape[PLANE_AXIS[plane]]
        start = 0 if start is None else start
        stop = n - 1 if stop is None else stop
        if not (0 <= start <= stop < n):
            raise ToolError(f"need 0 <= start <= stop <= {n - 1} for {plane}; got start={start}, stop={stop}")
        if step is None:
            step = max(1, math.ceil((stop - start + 1) / self.max_montage_tiles))
        if step < 1:
            raise ToolError(f"step must be at least 1, got {step}")
        indices = tuple(range(start, stop + 1, step))
        if len(indices) > self.max_montage_tiles:
            raise ToolError(f"that is {len(indices)} slices; a montage holds at most {self.max_montage_tiles} - use a larger step or a shorter range")
        cols = math.ceil(math.sqrt(len(indices)))
        tile = max(64, self.image_size // cols)
        spec = RenderSpec(plane=plane, slices=Slices("index", indices), window=self._window(window), size=tile, montage=(0, 0), labels=True)
        img = render(v, spec)[0]
        label = f"{role} {plane} montage {indices[0]}..{indices[-1]} step {step}"
        text = f"{label}: {len(indices)} slices ({', '.join(map(str, indices))}), {img.width}x{img.height} pixels"
        return ToolResult(text, (ImagePart.from_rendered(img, label, role=role, spec=spec),))

    def measure(self, plane: Plane, index: int, points: list[list[float]], volume: str | None = None) -> ToolResult:
        """Distance in mm between two points picked on a view_slice image of this plane and slice.

        Args:
            plane: axial, coronal or sagittal.
            index: The slice index the points were picked on.
            points: Two points as [[x1, y1], [x2, y2]] in that image's pixels (x to the right, y down, from the top-left corner).
            volume: Which of the case's volumes (default: the first).
        """
        role, v = self._volume(volume)
        i = self._index(v, plane, index, None)
        if len(points) != 2 or any(len(p) != 2 for p in points):
            raise ToolError("points must be two [x, y] pairs, e.g. [[120, 200], [380, 200]]")
        arr, row_sp, col_sp = display_slice(v, plane, i)
        w, h = display_size(arr.shape, row_sp, col_sp, self.image_size)
        for x, y in points:
            if not (-0.5 <= x <= w - 0.5 and -0.5 <= y <= h - 0.5):
                raise ToolError(f"point ({x:g}, {y:g}) is outside the {w}x{h} image")
        world = [v.voxel_to_world(pixel_to_voxel(v, plane, i, x, y, self.image_size)) for x, y in points]
        dist = float(np.linalg.norm(world[1] - world[0]))
        fmt = lambda p: "(" + ", ".join(f"{c:+.1f}" for c in p) + ")"
        return ToolResult(f"distance {dist:.1f} mm between {fmt(world[0])} and {fmt(world[1])} (world x, y, z in mm) on {role} {plane} slice {i}")


def submit_answer(answer: str) -> str:
    """Submit your final answer. This ends the task; call it once, when you are sure.

    Args:
        answer: Your final answer, in the format the task asked for.
    """
    return answer
