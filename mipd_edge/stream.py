"""Cameras, video files, RTSP / HTTP streams and image folders through a Predictor.

Reading, inference and drawing / writing run in three threads joined by bounded queues,
so decoding the next frame and encoding the last one overlap with inference and memory
stays flat however long the stream runs. A live source (camera, network stream) keeps
only its newest frame, so a slow model shows the present rather than a growing backlog,
and a dropped connection is reopened with exponential back-off. A file is read frame by
frame, with back-pressure instead of drops. A frame that cannot be processed is logged
and skipped; the stream goes on.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

import cv2
import numpy as np

from .draw import draw_result
from .errors import InvalidImageError, MipdEdgeError
from .image import load_image
from .situation import Situation

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
_END = object()


@dataclass
class Frame:
    index: int
    image: np.ndarray
    source: str
    timestamp: float = field(default_factory=time.time)


class VideoSource:
    """Frames from a camera index, a video file or a stream URL, read by a thread."""

    def __init__(self, spec: Union[int, str], live: Optional[bool] = None, queue_size: int = 8,
                 max_retries: Optional[int] = 10, backoff: float = 0.5, max_backoff: float = 8.0,
                 open_capture: Callable[[Union[int, str]], Any] = cv2.VideoCapture):
        self.spec = spec
        self.live = live if live is not None else (isinstance(spec, int) or "://" in str(spec))
        self.max_retries, self.backoff, self.max_backoff = max_retries, backoff, max_backoff
        self.open_capture = open_capture
        self.frames: queue.Queue = queue.Queue(maxsize=1 if self.live else queue_size)
        self.stop_event = threading.Event()
        self.fps = 0.0
        self.reconnects = 0
        self.capture = self._open()
        self.fps = float(self.capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.first = None
        if not self.live:  # a file that opens but decodes nothing should fail here, not end silently
            ok, self.first = self.capture.read()
            if not ok or self.first is None:
                self.capture.release()
                raise MipdEdgeError(f"cannot open video source {spec!r}: no frame could be decoded")
        self.thread = threading.Thread(target=self._read, name=f"read {spec}", daemon=True)
        self.thread.start()

    def _open(self):
        capture = self.open_capture(self.spec)
        if not capture.isOpened():
            raise MipdEdgeError(f"cannot open video source {self.spec!r}")
        return capture

    def _read(self) -> None:
        index, failures = 0, 0
        while not self.stop_event.is_set():
            if self.first is not None:
                ok, image, self.first = True, self.first, None
            else:
                ok, image = self.capture.read()
            if ok and image is not None:
                failures = 0
                self._put(Frame(index, image, str(self.spec)))
                index += 1
                continue
            if not self.live:
                break  # the end of a file
            failures += 1
            if self.max_retries is not None and failures > self.max_retries:
                log.error("video source %s: gave up after %d reconnection attempts", self.spec, self.max_retries)
                break
            delay = min(self.max_backoff, self.backoff * 2 ** (failures - 1))
            log.warning("video source %s dropped; reconnecting in %.1f s (attempt %d)", self.spec, delay, failures)
            if self.stop_event.wait(delay):
                break
            self.capture.release()
            try:
                self.capture = self._open()
                self.reconnects += 1
            except MipdEdgeError as exc:
                log.warning("%s", exc)
        self.capture.release()
        self._put(_END)

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
                return
            except queue.Full:
                try:
                    self.frames.get_nowait()
                except queue.Empty:
                    pass

    def __iter__(self) -> Iterator[Frame]:
        while True:
            item = self.frames.get()
            if item is _END:
                return
            yield item

    def close(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=5)


class ImageSource:
    """The images of a folder (sorted) or one image file; unreadable files are skipped."""

    def __init__(self, path: Union[str, Path]):
        path = Path(path)
        self.paths = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else [path]
        self.fps = 0.0
        self.live = False

    def __iter__(self) -> Iterator[Frame]:
        for i, p in enumerate(self.paths):
            try:
                yield Frame(i, load_image(p), str(p))
            except InvalidImageError as exc:
                log.warning("skipping %s", exc)

    def close(self) -> None:
        pass


def open_source(spec: Union[int, str, Path], **options: Any):
    """``0`` (a camera), a video file, ``rtsp://`` / ``http://`` URL, an image folder or an image."""
    text = str(spec)
    if isinstance(spec, int) or text.isdigit():
        return VideoSource(int(text), live=True, **options)
    if "://" in text:
        return VideoSource(text, live=True, **options)
    path = Path(text)
    if not path.exists():
        raise MipdEdgeError(f"no such source: {text} (a camera index, a file, a folder or a URL)")
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource(path)
    return VideoSource(text, live=False, **options)


@dataclass
class StreamStats:
    frames: int = 0
    skipped: int = 0
    seconds: float = 0.0
    stage_ms: dict = field(default_factory=lambda: {"read_wait": 0.0, "inference": 0.0, "draw_write": 0.0})

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    def to_json(self) -> dict[str, Any]:
        n = max(1, self.frames)
        return {"frames": self.frames, "skipped": self.skipped, "seconds": round(self.seconds, 3),
                "fps": round(self.fps, 2), "mean_ms": {k: round(v / n, 2) for k, v in self.stage_ms.items()}}


class StreamWriter:
    """The drawing / writing stage: overlays, an mp4 file, JSON lines, a window."""

    def __init__(self, save: Optional[Union[str, Path]] = None, json_lines: Optional[Union[str, Path]] = None,
                 show: bool = False, fps: float = 25.0, draw: bool = True):
        self.save, self.fps, self.draw, self.show = save, fps or 25.0, draw, show
        self.video: Optional[cv2.VideoWriter] = None
        self.json = open(json_lines, "w", encoding="utf-8") if json_lines else None
        if show and not _has_display():
            raise MipdEdgeError("--show needs OpenCV with GUI support and a display; this OpenCV is headless")

    def write(self, frame: Frame, situation: Union[Situation, list[Situation]], fps: float, timings: dict) -> None:
        """One frame's result: a situation, or an HOI bundle's list of interactions."""
        image = draw_result(frame.image, situation, fps, timings) if self.draw else frame.image
        if self.save:
            if self.video is None:
                Path(self.save).parent.mkdir(parents=True, exist_ok=True)
                h, w = image.shape[:2]
                self.video = cv2.VideoWriter(str(self.save), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
                self.size = (w, h)
            if (image.shape[1], image.shape[0]) != self.size:  # a source that changed resolution
                image = cv2.resize(image, self.size)
            self.video.write(image)
        if self.json:
            result = ({"interactions": [s.to_json() for s in situation]} if isinstance(situation, list)
                      else situation.to_json())
            self.json.write(json.dumps({"frame": frame.index, "source": frame.source, "time": frame.timestamp,
                                        **result}) + "\n")
        if self.show:
            cv2.imshow("mipd-edge", image)
            cv2.waitKey(1)

    def close(self) -> None:
        if self.video is not None:
            self.video.release()
        if self.json:
            self.json.close()


def _has_display() -> bool:
    try:
        return "GUI" in cv2.getBuildInformation() and "NONE" not in cv2.getBuildInformation().split("GUI:")[1][:40]
    except (cv2.error, IndexError):
        return False


def run_stream(predictor, source, writer: StreamWriter, max_frames: Optional[int] = None,
               on_result: Optional[Callable[[Frame, Situation], None]] = None, queue_size: int = 4) -> StreamStats:
    """Read -> infer -> draw/write, each stage in its own thread, until the source ends."""
    stats = StreamStats()
    results: queue.Queue = queue.Queue(maxsize=queue_size)
    errors: list[BaseException] = []

    def write_loop() -> None:
        while True:
            item = results.get()
            if item is _END:
                return
            frame, situation, fps, timings = item
            t = time.perf_counter()
            try:
                writer.write(frame, situation, fps, timings)
            except Exception as exc:  # a sink failing must not kill the stream silently
                errors.append(exc)
                return
            stats.stage_ms["draw_write"] += (time.perf_counter() - t) * 1e3

    writer_thread = threading.Thread(target=write_loop, name="draw/write", daemon=True)
    writer_thread.start()

    def hand_over(item) -> None:
        """Queue an item for the writer, unless the writer has stopped (then nothing would take it)."""
        while writer_thread.is_alive():
            try:
                results.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    start = time.perf_counter()
    recent: list[float] = []
    frames = iter(source)
    try:
        while max_frames is None or stats.frames < max_frames:
            t0 = time.perf_counter()
            frame = next(frames, None)
            if frame is None or errors:
                break
            t1 = time.perf_counter()
            stats.stage_ms["read_wait"] += (t1 - t0) * 1e3
            try:
                situation = predictor(frame.image)
            except MipdEdgeError as exc:
                stats.skipped += 1
                log.warning("frame %d skipped: %s", frame.index, exc)
                continue
            t2 = time.perf_counter()
            stats.stage_ms["inference"] += (t2 - t1) * 1e3
            recent = (recent + [t2])[-30:]
            fps = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 else 0.0
            stats.frames += 1
            if on_result:
                on_result(frame, situation)
            hand_over((frame, situation, fps, dict(predictor.timings)))
            if stats.frames % 100 == 0:
                log.info("%d frames, %.1f FPS, inference %.1f ms", stats.frames, fps,
                         predictor.timings.get("total_ms", 0.0))
    finally:
        hand_over(_END)
        writer_thread.join()
        source.close()
        writer.close()
        stats.seconds = time.perf_counter() - start
    if errors:
        raise MipdEdgeError(f"writing the stream failed: {errors[0]}") from errors[0]
    log.info("stream done: %s", stats.to_json())
    return stats
