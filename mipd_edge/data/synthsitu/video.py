"""A SynthSitu demo video: test images of many verbs, each held for a moment, as an mp4
that streams like a camera would (a fixed frame size, a steady frame rate)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ...deploy.image import load_image
from ...files import PathLike
from ..swig import SituDataset


def on_canvas(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` scaled to fit a grey (114) frame of ``size`` (width, height), centred: a
    camera's fixed frame size."""
    w, h = size
    scale = min(w / image.shape[1], h / image.shape[0])
    resized = cv2.resize(image, (int(image.shape[1] * scale), int(image.shape[0] * scale)))
    frame = np.full((h, w, 3), 114, np.uint8)
    y, x = (h - resized.shape[0]) // 2, (w - resized.shape[1]) // 2
    frame[y:y + resized.shape[0], x:x + resized.shape[1]] = resized
    return frame


def write_demo_video(data_dir: PathLike, out: PathLike, images: int = 24, frames_per_image: int = 6, fps: int = 6,
                     size: tuple[int, int] = (256, 192)) -> Path:
    test = SituDataset(data_dir, "test")
    step = max(1, len(test) // images)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    w, h = size
    for i in range(0, min(len(test), step * images), step):
        frame = on_canvas(load_image(test.image_dir / test.names[i]), size)
        for _ in range(frames_per_image):
            writer.write(frame)
    writer.release()
    return out
