"""Pieces every task uses: rendering a case's volumes into message images, prompt-built messages, and reading
the images a scripted baseline was shown. Task modules call these instead of writing their own twins."""

from __future__ import annotations

import io
from typing import Iterable, Mapping, Sequence

import numpy as np
from PIL import Image

from harness.models.types import ImagePart, Message
from harness.core.prompts import render_prompt
from harness.imaging.render import RenderSpec, render
from harness.core.volume import Volume


def render_parts(volume: Volume, spec: RenderSpec, label: str, role: str) -> list[ImagePart]:
    """The spec's images of the case volume `role` as message parts, labelled for transcripts (labels are never sent
    instead of images)."""
    images = render(volume, spec)
    if len(images) == 1:
        return [ImagePart.from_rendered(images[0], label=label, role=role, spec=spec)]
    return [ImagePart.from_rendered(img, label=f"{label} slice {img.slices[0]}", role=role, spec=spec, index=i)
            for i, img in enumerate(images)]


def render_views(volumes: Mapping[str, Volume], views: Sequence[tuple[str, RenderSpec, str]]) -> tuple[list[ImagePart], list[str]]:
    """Render (role, spec, label) views; returns the image parts and the render spec keys (for cache keys)."""
    parts: list[ImagePart] = []
    keys: list[str] = []
    for role, spec, label in views:
        parts.extend(render_parts(volumes[role], spec, label, role))
        keys.append(spec.key)
    return parts, keys


def prompt_messages(system_template: str | None, user_template: str, images: Iterable[ImagePart] = (), /,
                    prompt_root=None, **context) -> list[Message]:
    """[system, user] messages from prompt templates (prompt_root: a plug-in task's own prompt folder; default the
    repository's prompts/); images follow the user text."""
    messages = []
    if system_template:
        messages.append(Message.system(render_prompt(system_template, root=prompt_root, **context)))
    messages.append(Message.user(render_prompt(user_template, root=prompt_root, **context), *images))
    return messages


def image_array(part: ImagePart) -> np.ndarray:
    """A message image as a uint8 greyscale array (what a scripted baseline analyses)."""
    with Image.open(io.BytesIO(part.png)) as im:
        return np.asarray(im.convert("L"))


def split_tiles(image: np.ndarray, rows: int, cols: int, n: int | None = None) -> list[np.ndarray]:
    """The tiles of a montage image, left to right and top to bottom (the first n; default all rows x cols)."""
    th, tw = image.shape[0] // rows, image.shape[1] // cols
    count = rows * cols if n is None else n
    return [image[(k // cols) * th:(k // cols + 1) * th, (k % cols) * tw:(k % cols + 1) * tw] for k in range(count)]


def shown_images(messages: Sequence[Message]) -> list[ImagePart]:
    """Every image the model has been shown so far, in order (user messages and tool results)."""
    return [part for m in messages for part in m.content if isinstance(part, ImagePart)]


def text_of(message: Message) -> str:
    return "\n".join(part for part in message.content if isinstance(part, str))
