"""Where frames come from: a camera, a video file, an RTSP / HTTP stream or an image folder.

Each video source reads in a thread of its own into a bounded queue. A live source (camera,
network stream) keeps only its newest frame, so a slow model shows the present rather than a
growing backlog, and a dropped connection is reopened with exponential back-off; its
``status`` says which it is doing. A file is read frame by frame, with back-pressure instead of
drops. ``next_frame`` takes a frame without waiting longer than asked, which is how one loop
serves several sources at once (``engine.StreamSet``).
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

import cv2
import numpy as np

from ...errors import InvalidImageError, MipdEdgeError, StreamError
from ...files import regular_file
from ..image import IMAGE_SUFFIXES, image_files, load_image

log = logging.getLogger(__name__)

_END = object()
MAX_VIDEO_BYTES = 1 << 40  # files are read frame by frame: only a sanity bound
# what a source is doing: reading frames, reopening after a drop, given up, or at its end
LIVE, RECONNECTING, GAVE_UP, ENDED = "live", "reconnecting", "gave up", "ended"


class SourceEnded(Exception):
    """A source has no more frames: a file at its end, a folder read through (not an error)."""


@dataclass
class Frame:
    index: int
    image: np.ndarray
    source: str
    timestamp: float = field(default_factory=time.time)


class Source:
    """What every source has: ``next_frame`` (a ``Frame``, None when none is ready within the
    timeout, ``SourceEnded`` at the end), iteration over its frames, ``status``, ``reconnects``,
    ``fps`` (0 where unknown), ``on_frame`` (called after a frame is queued, by sources read in a
    thread of their own) and ``close``."""

    status = LIVE
    reconnects = 0
    fps = 0.0
    on_frame: Optional[Callable[[], None]] = None

    def next_frame(self, timeout: Optional[float] = None) -> Optional[Frame]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Frame]:
        while True:
            try:
                frame = self.next_frame()
            except SourceEnded:
                return
            if frame is not None:
                yield frame

    def close(self) -> None:
        pass


def capture(spec: Union[int, str], timeout_s: float) -> cv2.VideoCapture:
    """OpenCV's capture of ``spec``; a network stream through FFmpeg with open and read timeouts,
    so that one which stalls without closing its connection counts as dropped."""
    if isinstance(spec, str) and "://" in spec:
        ms = int(timeout_s * 1000)
        return cv2.VideoCapture(spec, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms,
                                                       cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
    return cv2.VideoCapture(spec)


class VideoSource(Source):
    """Frames from a camera index, a video file or a stream URL, read by a thread.

    A live source that is down at start or drops later is reopened with exponential
    back-off; after ``max_retries`` failed attempts in a row, or if the reader thread fails,
    iterating raises a ``StreamError`` with the reason instead of ending as if the source
    had simply finished. ``status`` is ``live``, ``reconnecting``, ``gave up`` or ``ended``;
    ``on_frame``, where set, is called after each frame is queued (a loop over several sources
    waits on it)."""

    def __init__(self, spec: Union[int, str], live: Optional[bool] = None, queue_size: int = 8,
                 max_retries: Optional[int] = 10, backoff: float = 0.5, max_backoff: float = 8.0,
                 open_capture: Optional[Callable[[Union[int, str]], Any]] = None, timeout_s: float = 10.0):
        """``timeout_s``: how long a network stream may stay silent (at opening, or between two
        frames) before it counts as dropped and is reopened."""
        self.spec = spec
        self.live = live if live is not None else (isinstance(spec, int) or "://" in str(spec))
        self.max_retries, self.backoff, self.max_backoff = max_retries, backoff, max_backoff
        self.open_capture = open_capture or (lambda spec: capture(spec, timeout_s))
        self.frames: queue.Queue = queue.Queue(maxsize=1 if self.live else queue_size)
        self.stop_event = threading.Event()
        self.fps = 0.0
        self.reconnects = 0
        self.error: Optional[str] = None
        self.status = LIVE
        self.first = None
        self.capture = None
        try:
            self.capture = self._open()
        except StreamError as exc:
            if not self.live:
                raise
            log.warning("%s; retrying", exc)  # a camera or server that is not up yet: the reader retries
            self.status = RECONNECTING
        if self.capture is not None:
            self.fps = float(self.capture.get(cv2.CAP_PROP_FPS) or 0.0)
        if not self.live:  # a file that opens but decodes nothing should fail here, not end silently
            ok, self.first = self.capture.read()
            if not ok or self.first is None:
                self.capture.release()
                raise StreamError(f"cannot open video source {spec!r}: no frame could be decoded")
        self.thread = threading.Thread(target=self._read, name=f"read {spec}", daemon=True)
        self.thread.start()

    def _open(self):
        capture = self.open_capture(self.spec)
        if not capture.isOpened():
            capture.release()
            raise StreamError(f"cannot open video source {self.spec!r}")
        return capture

    def _read(self) -> None:
        try:
            self._read_frames()
        except Exception as exc:  # whatever breaks the reader ends the stream with that reason
            log.exception("video source %s: the reader failed", self.spec)
            self.error = f"reading {self.spec} failed: {type(exc).__name__}: {exc}"
        finally:
            if self.capture is not None:
                self.capture.release()
            self.status = GAVE_UP if self.error else ENDED
            self._put(_END)

    def _read_frames(self) -> None:
        index, failures = 0, 0
        while not self.stop_event.is_set():
            if self.first is not None:
                ok, image, self.first = True, self.first, None
            elif self.capture is not None:
                ok, image = self.capture.read()
            else:
                ok, image = False, None
            if ok and image is not None:
                failures = 0
                self.status = LIVE
                self._put(Frame(index, image, str(self.spec)))
                index += 1
                continue
            if not self.live:
                return  # the end of a file
            failures += 1
            if self.max_retries is not None and failures > self.max_retries:
                self.error = (f"video source {self.spec}: gave up after {self.max_retries} reconnection attempts "
                              f"({index} frames read)")
                log.error("%s", self.error)
                return
            self.status = RECONNECTING
            delay = min(self.max_backoff, self.backoff * 2 ** (failures - 1))
            log.warning("video source %s %s; reconnecting in %.1f s (attempt %d)", self.spec,
                        "dropped" if index else "is not available", delay, failures)
            if self.stop_event.wait(delay):
                return
            if self.capture is not None:
                self.capture.release()
                self.capture = None
            try:
                self.capture = self._open()
                if index:
                    self.reconnects += 1
            except StreamError as exc:
                log.warning("%s", exc)

    def _put(self, item: Any) -> None:
        """A file waits for the consumer; a live source (and a stopped one) lets the newest item win."""
        if not self.live:
            while not self.stop_event.is_set():
                try:
                    self.frames.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue
            if item is not _END:
                return
        while True:
            try:
                self.frames.put_nowait(item)
                break
            except queue.Full:
                try:
                    self.frames.get_nowait()
                except queue.Empty:
                    pass
        if self.on_frame is not None:
            self.on_frame()

    def next_frame(self, timeout: Optional[float] = None) -> Optional[Frame]:
        """The next frame (a live source's newest), or None if none came within ``timeout``
        seconds; ``SourceEnded`` at the end of a file, a ``StreamError`` where the source gave up
        or its reader failed."""
        try:
            item = self.frames.get(timeout=timeout) if timeout != 0 else self.frames.get_nowait()
        except queue.Empty:
            return None
        if item is _END:
            self.frames.put(_END)  # asked again, it answers the same
            if self.error:
                raise StreamError(self.error)
            raise SourceEnded(str(self.spec))
        return item


    def close(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=5)


class ImageSource(Source):
    """The images of a folder (sorted) or one image file; unreadable files are skipped. Read
    in the caller's thread: a frame is always ready."""

    def __init__(self, path: Union[str, Path]):
        path = Path(path)
        if not path.exists():
            raise MipdEdgeError(f"no such image or folder: {path}")
        self.paths = image_files(path) if path.is_dir() else [path]
        if not self.paths:
            raise MipdEdgeError(f"no images in {path} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
        self.live = False
        self.at = 0

    def next_frame(self, timeout: Optional[float] = None) -> Frame:
        """The next readable image as a frame (``SourceEnded`` after the last)."""
        while self.at < len(self.paths):
            i, path = self.at, self.paths[self.at]
            self.at += 1
            try:
                return Frame(i, load_image(path), str(path))
            except InvalidImageError as exc:
                log.warning("skipping %s", exc)
        self.status = ENDED
        raise SourceEnded(str(self.paths[-1].parent))


class IterableSource(Source):
    """Any iterable of ``Frame`` objects as a source, read in the caller's thread (a frame is
    always ready); its ``close`` is called, where it has one."""

    def __init__(self, frames):
        self.frames, self.iterator = frames, iter(frames)
        self.fps = float(getattr(frames, "fps", 0.0) or 0.0)

    def next_frame(self, timeout: Optional[float] = None) -> Frame:
        try:
            return next(self.iterator)
        except StopIteration:
            self.status = ENDED
            raise SourceEnded("the frames ended") from None

    def close(self) -> None:
        close = getattr(self.frames, "close", None)
        if close is not None:
            close()


MAX_SOURCES_FILE_BYTES = 1 << 20
NAMED = re.compile(r"^([A-Za-z0-9_.-]{1,64})=(.+)$")


def read_sources_file(path: Union[str, Path]) -> list[str]:
    """The sources listed in a file, one per line (``NAME=SPEC`` or ``SPEC``); blank lines and
    lines starting with ``#`` are skipped."""
    path = regular_file(path, "sources file", MAX_SOURCES_FILE_BYTES, MipdEdgeError)
    lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    specs = [line for line in lines if line and not line.startswith("#")]
    if not specs:
        raise MipdEdgeError(f"{path} lists no source (one per line: a camera index, a file or a URL)")
    return specs


def named_sources(specs: list[str]) -> dict[str, str]:
    """``NAME=SPEC`` or ``SPEC`` per source -> {name: spec}, in order. A name not given is the
    file's stem, ``camera<N>`` for a camera index, ``stream<K>`` for a URL; a repeated name gets
    ``-2``, ``-3``. (A URL's query, ``rtsp://host/s?channel=1``, is not taken for a name.)"""
    named: dict[str, str] = {}
    urls = 0
    for spec in specs:
        match = NAMED.match(spec)
        if match:
            name, spec = match.groups()
        elif spec.isdigit():
            name = f"camera{spec}"
        elif "://" in spec:
            urls += 1
            name = f"stream{urls}"
        else:
            name = Path(spec).stem or "source"
        unique, n = name, 1
        while unique in named:
            n += 1
            unique = f"{name}-{n}"
        named[unique] = spec
    return named


def open_source(spec: Union[int, str, Path], **options: Any):
    """``0`` (a camera), a video file, ``rtsp://`` / ``http://`` URL, an image folder or an image."""
    text = str(spec)
    if isinstance(spec, int) or text.isdigit():
        return VideoSource(int(text), live=True, **options)
    if "://" in text:
        return VideoSource(text, live=True, **options)
    path = Path(text)
    if not path.exists():
        raise StreamError(f"no such source: {text} (a camera index, a file, a folder or a URL)")
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource(path)
    regular_file(path, "video file", MAX_VIDEO_BYTES, StreamError)  # a FIFO or a device would block the reader
    return VideoSource(text, live=False, **options)


