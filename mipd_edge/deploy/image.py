"""Turning whatever a user hands us into one thing: a contiguous BGR uint8 array (H, W, 3).

Files and bytes are decoded with OpenCV, which honours the EXIF orientation of JPEGs.
Grayscale is expanded, an alpha channel is composited over mid-gray (transparent pixels
often hold garbage colours), and 16-bit images are scaled to 8 bits. Anything that cannot
become an image raises ``InvalidImageError`` and leaves the caller free to go on.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any, Optional, Union

import cv2
import numpy as np

from ..errors import InvalidImageError, MipdEdgeError
from ..files import regular_file

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray, Any]

# Limits checked before decoding (a 20000 x 20000 PNG would take seconds and gigabytes to
# reject after): the file size, and the pixel count read from the image's header.
# $MIPD_EDGE_MAX_IMAGE_BYTES / $MIPD_EDGE_MAX_PIXELS change them; so may assigning these.
MAX_FILE_BYTES = int(os.environ.get("MIPD_EDGE_MAX_IMAGE_BYTES", 256 << 20))
MAX_PIXELS = int(os.environ.get("MIPD_EDGE_MAX_PIXELS", 120_000_000))
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}  # what folders are read for
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_UINT8 = np.dtype(np.uint8)


def image_files(folder: Union[str, os.PathLike], recursive: bool = False) -> list[Path]:
    """The image files of a folder (and its subfolders, if ``recursive``), sorted, by suffix."""
    folder = Path(folder)
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def image_folder(folder: Union[str, os.PathLike], option: str) -> list[Path]:
    """The image files under a user's folder (searched recursively), or an error that names the
    command-line ``option`` it was given as."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MipdEdgeError(f"{option} {folder}: not a folder")
    files = image_files(folder, recursive=True)
    if not files:
        raise MipdEdgeError(f"{option} {folder}: no images (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def load_image(source: ImageSource) -> np.ndarray:
    """Any supported source -> BGR uint8 (H, W, 3), C-contiguous."""
    if isinstance(source, np.ndarray):  # first: the stream's and the benchmark's case, and the cheapest check
        return to_bgr8(source)
    if isinstance(source, (str, os.PathLike)):
        path = regular_file(source, "image file", MAX_FILE_BYTES, InvalidImageError)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InvalidImageError(f"cannot read image file {path}: {exc}") from exc
        return decode_image(data, name=str(path))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode_image(bytes(source))
    if hasattr(source, "convert") and hasattr(source, "mode"):  # a PIL image, without importing PIL
        rgb = np.asarray(source.convert("RGB"))
        return np.ascontiguousarray(rgb[:, :, ::-1])
    raise InvalidImageError(
        f"unsupported image source of type {type(source).__name__}: pass a file path, "
        "encoded bytes, a numpy array (BGR as OpenCV gives it) or a PIL image")


def decode_image(data: bytes, name: str = "image bytes") -> np.ndarray:
    if not data:
        raise InvalidImageError(f"{name}: empty (0 bytes)")
    if len(data) > MAX_FILE_BYTES:
        raise InvalidImageError(f"{name}: {len(data):,} bytes, more than the limit of {MAX_FILE_BYTES:,}")
    size = header_size(data)
    if size is not None and size[0] * size[1] > MAX_PIXELS:
        raise InvalidImageError(f"{name}: {size[0]}x{size[1]} is larger than {MAX_PIXELS:,} pixels "
                                "(read from its header; not decoded)")
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
    shape = image.shape
    if image.dtype is _UINT8 and len(shape) == 3 and shape[2] == 3 and 0 < shape[0] * shape[1] <= MAX_PIXELS:
        # BGR uint8, as OpenCV and cameras give it, with the fewest numpy calls: right after an
        # inference each costs microseconds (the general checks below took 20 us more there)
        return np.ascontiguousarray(image)
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


def header_size(data: bytes) -> Optional[tuple[int, int]]:
    """(width, height) from a PNG, JPEG, GIF, BMP or WebP header without decoding; None for
    other formats or a header too damaged to read (the decoder then has the last word, and
    ``to_bgr8`` checks the decoded size)."""
    try:
        if data[:8] == _PNG_MAGIC:
            return struct.unpack(">II", data[16:24])
        if data[:2] == b"\xff\xd8":
            return _jpeg_size(data)
        if data[:6] in (b"GIF87a", b"GIF89a"):
            return struct.unpack("<HH", data[6:10])
        if data[:2] == b"BM":
            w, h = struct.unpack("<ii", data[18:26])
            return abs(w), abs(h)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp_size(data)
    except struct.error:
        return None
    return None


def _jpeg_size(data: bytes) -> Optional[tuple[int, int]]:
    """The frame size of the first start-of-frame marker, walking the JPEG segments."""
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            at += 2
            continue
        length = struct.unpack(">H", data[at + 2:at + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[at + 5:at + 9])
            return w, h
        at += 2 + length
    return None


def _webp_size(data: bytes) -> Optional[tuple[int, int]]:
    chunk = data[12:16]
    if chunk == b"VP8X":
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 ":
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    return None
