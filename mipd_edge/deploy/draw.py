"""Overlays: the verb as a caption, each grounded role's box labelled ``role: noun``,
and the frame rate and per-stage latency when they are known. An HOI bundle's result (a
list of situations, one per interaction) gets one colour per interaction.

``Situation.plot`` / ``Interactions.plot`` call these, so this module sits below the result
types and imports them only for annotations."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Optional, Sequence

import cv2
import numpy as np

from ..errors import MipdEdgeError
from ..files import PathLike, atomic_write_bytes, check_output

if TYPE_CHECKING:
    from ..situation import Situation

PALETTE = [(64, 200, 255), (80, 220, 100), (255, 160, 60), (200, 90, 255), (60, 90, 250), (250, 230, 80)]


def _label(image: np.ndarray, text: str, org: tuple[int, int], color: tuple[int, int, int], scale: float) -> None:
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x, y = org
    y = max(h + base, y)
    cv2.rectangle(image, (x, y - h - base), (x + w + 2, y + base - 1), color, -1)
    cv2.putText(image, text, (x + 1, y - 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)


def _canvas(image: np.ndarray, zoom: float) -> tuple[np.ndarray, float, int]:
    out = cv2.resize(image, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_CUBIC) if zoom != 1.0 else image.copy()
    scale = max(0.35, min(out.shape[:2]) / 600)
    return out, scale, max(1, int(round(scale * 2)))


def _box(out: np.ndarray, box, text: str, color, zoom: float, scale: float, thickness: int) -> None:
    x1, y1, x2, y2 = (int(round(v * zoom)) for v in box)
    cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness)
    _label(out, text, (x1, y1), color, scale * 0.9)


def _footer(out: np.ndarray, fps: Optional[float], timings: Optional[Mapping[str, float]], scale: float) -> None:
    if fps is not None or timings:
        parts = [f"{fps:.1f} FPS"] if fps is not None else []
        if timings:
            parts += [f"{k.replace('_ms', '')} {v:.1f}ms" for k, v in timings.items() if k.endswith("_ms")]
        _label(out, " | ".join(parts), (4, out.shape[0] - 6), (200, 200, 200), scale * 0.8)


def draw_situation(image: np.ndarray, situation: Situation, fps: Optional[float] = None,
                   timings: Optional[Mapping[str, float]] = None, zoom: float = 1.0) -> np.ndarray:
    """A copy of the BGR image with the situation drawn on it; ``zoom`` enlarges small
    images first so that the labels stay legible."""
    out, scale, thickness = _canvas(image, zoom)
    for i, (role, value) in enumerate(situation.roles.items()):
        if value.box is not None:
            _box(out, value.box, f"{role}: {value.label or value.noun or '-'}", PALETTE[i % len(PALETTE)], zoom,
                 scale, thickness)
    caption = f"{situation.verb} {situation.score:.2f}"
    others = ", ".join(f"{r}={v.label}" for r, v in situation.roles.items() if v.box is None and v.label)
    _label(out, caption + (f" ({others})" if others else ""), (4, int(22 * scale) + 4), (255, 255, 255), scale)
    _footer(out, fps, timings, scale)
    return out


def draw_interactions(image: np.ndarray, situations: Sequence[Situation], fps: Optional[float] = None,
                      timings: Optional[Mapping[str, float]] = None, zoom: float = 1.0) -> np.ndarray:
    """Each interaction in its colour: the person labelled with the verb and score, the object with its name;
    a tracked interaction keeps its colour from frame to frame and shows its id."""
    out, scale, thickness = _canvas(image, zoom)
    for i, s in enumerate(situations):
        color = PALETTE[(i if s.track is None else s.track) % len(PALETTE)]
        tag = "" if s.track is None else f"#{s.track} "
        for role, value in s.roles.items():
            if value.box is not None:
                text = f"{tag}{s.verb} {s.score:.2f}" if role == "agent" else (value.label or value.noun)
                _box(out, value.box, text, color, zoom, scale, thickness)
    _label(out, f"{len(situations)} interaction{'s' * (len(situations) != 1)}", (4, int(22 * scale) + 4),
           (255, 255, 255), scale)
    _footer(out, fps, timings, scale)
    return out


def write_image(path: PathLike, image: np.ndarray, overwrite: bool = False, clean: bool = True) -> Path:
    """Encode ``image`` by the file's suffix (PNG when it has none) and write it atomically;
    an existing file is replaced only with ``overwrite``. ``clean=False``: the caller writes
    many files into one folder and cleans its leftovers once (``files.atomic_output``)."""
    path = check_output(path, overwrite, "image file")
    ok, encoded = cv2.imencode(path.suffix or ".png", image)
    if not ok:
        raise MipdEdgeError(f"cannot encode an image as {path.suffix or '.png'} for {path}")
    atomic_write_bytes(path, encoded.tobytes(), clean=clean)
    return path
