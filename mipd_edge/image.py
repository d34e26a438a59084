"""Turning whatever a user hands us into one thing: a contiguous BGR uint8 array (H, W, 3).

Files and bytes are decoded with OpenCV, which honours the EXIF orientation of JPEGs.
Grayscale is expanded, an alpha channel is composited over mid-gray (transparent pixels
often hold garbage colours), and 16-bit images are scaled to 8 bits. Anything that cannot
become an image raises ``InvalidImageError`` and leaves the caller free to go on.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Union

import cv2
import numpy as np

from .errors import InvalidImageError

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray, Any]

MAX_PIXELS = 120_000_000
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def load_image(source: ImageSource) -> np.ndarray:
    """Any supported source -> BGR uint8 (H, W, 3), C-contiguous."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InvalidImageError(f"cannot read image file {path}: {exc}") from exc
        return decode_image(data, name=str(path))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode_image(bytes(source))
    if isinstance(source, np.ndarray):
        return to_bgr8(source)
    if hasattr(source, "convert") and hasattr(source, "mode"):  # a PIL image, without importing PIL
        rgb = np.asarray(source.convert("RGB"))
        return np.ascontiguousarray(rgb[:, :, ::-1])
    raise InvalidImageError(
        f"unsupported image source of type {type(source).__name__}: pass a file path, "
        "encoded bytes, a numpy array (BGR as OpenCV gives it) or a PIL image")


def decode_image(data: bytes, name: str = "image bytes") -> np.ndarray:
    if not data:
        raise InvalidImageError(f"{name}: empty (0 bytes)")
    buf = np.frombuffer(data, dtype=np.uint8)
    # PNG with an alpha channel (colour type 4 or 6) is decoded unchanged to composite the
    # alpha; everything else as colour, which applies the EXIF orientation.
    has_alpha = data[:8] == _PNG_MAGIC and len(data) > 25 and data[25] in (4, 6)
    flags = cv2.IMREAD_UNCHANGED if has_alpha else cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH
    try:
        image = cv2.imdecode(buf, flags)
    except cv2.error as exc:
        raise InvalidImageError(f"{name}: cannot be decoded ({exc})") from exc
    if image is None:
        raise InvalidImageError(f"{name}: not a readable image (corrupt, truncated or unknown format)")
    return to_bgr8(image, name)


def to_bgr8(image: np.ndarray, name: str = "image array") -> np.ndarray:
    """Validate an array and convert gray / BGRA / 16-bit to BGR uint8."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise InvalidImageError(
            f"{name}: expected shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InvalidImageError(f"{name}: empty image of shape {image.shape}")
    if image.shape[0] * image.shape[1] > MAX_PIXELS:
        raise InvalidImageError(
            f"{name}: {image.shape[1]}x{image.shape[0]} is larger than {MAX_PIXELS:,} pixels")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise InvalidImageError(f"{name}: expected dtype uint8 or uint16, got {image.dtype}")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        alpha = image[:, :, 3:4].astype(np.float32) / 255.0
        image = (image[:, :, :3].astype(np.float32) * alpha + 127.0 * (1.0 - alpha)).astype(np.uint8)
    return np.ascontiguousarray(image)
