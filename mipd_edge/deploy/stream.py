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
import os
import queue
import signal
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

import cv2
import numpy as np

from ..errors import InvalidImageError, MipdEdgeError, StreamError
from ..files import atomic_output, check_output, regular_file
from ..situation import Interactions, Situation
from .image import IMAGE_SUFFIXES, image_files, load_image

log = logging.getLogger(__name__)

_END = object()
MAX_VIDEO_BYTES = 1 << 40  # files are read frame by frame: only a sanity bound


@dataclass
class Frame:
    index: int
    image: np.ndarray
    source: str
    timestamp: float = field(default_factory=time.time)


class VideoSource:
    """Frames from a camera index, a video file or a stream URL, read by a thread.

    A live source that is down at start or drops later is reopened with exponential
    back-off; after ``max_retries`` failed attempts in a row, or if the reader thread fails,
    iterating raises a ``StreamError`` with the reason instead of ending as if the source
    had simply finished."""

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
        self.error: Optional[str] = None
        self.first = None
        self.capture = None
        try:
            self.capture = self._open()
        except StreamError as exc:
            if not self.live:
                raise
            log.warning("%s; retrying", exc)  # a camera or server that is not up yet: the reader retries
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
                if self.error:
                    raise StreamError(self.error)
                return
            yield item

    def close(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=5)


class ImageSource:
    """The images of a folder (sorted) or one image file; unreadable files are skipped."""

    def __init__(self, path: Union[str, Path]):
        path = Path(path)
        if not path.exists():
            raise MipdEdgeError(f"no such image or folder: {path}")
        self.paths = image_files(path) if path.is_dir() else [path]
        if not self.paths:
            raise MipdEdgeError(f"no images in {path} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
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
        raise StreamError(f"no such source: {text} (a camera index, a file, a folder or a URL)")
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource(path)
    regular_file(path, "video file", MAX_VIDEO_BYTES, StreamError)  # a FIFO or a device would block the reader
    return VideoSource(text, live=False, **options)


@dataclass
class StreamStats:
    """What a stream did: frames answered and skipped, its time, and what stopped it."""

    frames: int = 0
    skipped: int = 0
    seconds: float = 0.0
    stopped_by: Optional[str] = None  # the signal that stopped the stream, if one did
    stage_ms: dict = field(default_factory=lambda: {"read_wait": 0.0, "inference": 0.0, "draw_write": 0.0})

    @property
    def fps(self) -> float:
        """Frames answered per second of stream time, end to end."""
        return self.frames / self.seconds if self.seconds else 0.0

    def to_json(self) -> dict[str, Any]:
        """Counts, seconds, FPS and the mean milliseconds per frame of each stage."""
        n = max(1, self.frames)
        return {"frames": self.frames, "skipped": self.skipped, "seconds": round(self.seconds, 3),
                "fps": round(self.fps, 2), "mean_ms": {k: round(v / n, 2) for k, v in self.stage_ms.items()}}


VIDEO_SUFFIXES = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


class StreamWriter:
    """The drawing / writing stage: overlays, a video file, JSON lines, a window.

    Files are written under temporary names and renamed into place by ``close`` once they
    are complete and the video has been read back; existing files are replaced only with
    ``overwrite``. Every failure to open or write is a ``StreamError``."""

    def __init__(self, save: Optional[Union[str, Path]] = None, json_lines: Optional[Union[str, Path]] = None,
                 show: bool = False, fps: float = 25.0, draw: bool = True, overwrite: bool = False):
        self.save = Path(save) if save else None
        self.fps, self.draw, self.show = fps or 25.0, draw, show
        if show and not _has_display():
            raise MipdEdgeError("--show needs OpenCV with GUI support and a display; this OpenCV is headless")
        if self.save and self.save.suffix.lower() not in VIDEO_SUFFIXES:
            raise StreamError(f"cannot write video {self.save}: unknown container '{self.save.suffix}' "
                              f"(use {', '.join(sorted(VIDEO_SUFFIXES))})")
        if self.save and json_lines and self.save.resolve() == Path(json_lines).resolve():
            raise StreamError("the video and the JSON lines cannot go to the same file")
        for path, what in ((self.save, "video"), (json_lines, "JSON lines file")):
            if path:
                check_output(path, overwrite, what)
        self.files = ExitStack()  # the temporary files, renamed into place on success
        self.video: Optional[cv2.VideoWriter] = None
        self.video_tmp = self.files.enter_context(atomic_output(self.save)) if self.save else None
        self.frames_written = 0
        self.json = None
        if json_lines:
            tmp = self.files.enter_context(atomic_output(json_lines))
            try:
                self.json = open(tmp, "w", encoding="utf-8")
            except OSError as exc:
                self.files.close()
                raise StreamError(f"cannot write {json_lines}: {exc}") from exc
            self.files.callback(self.json.close)  # closed before the rename

    def write(self, frame: Frame, situation: Union[Situation, Interactions], fps: float, timings: dict) -> None:
        """One frame's result: a situation, or an HOI bundle's interactions."""
        image = situation.plot(frame.image, fps, timings) if self.draw else frame.image
        if self.save:
            if self.video is None:
                h, w = image.shape[:2]
                fourcc = cv2.VideoWriter_fourcc(*VIDEO_SUFFIXES[self.save.suffix.lower()])
                self.video = cv2.VideoWriter(str(self.video_tmp), fourcc, self.fps, (w, h))
                if not self.video.isOpened():
                    raise StreamError(f"cannot write video {self.save}: OpenCV could not open a writer for it")
                self.size = (w, h)
            if (image.shape[1], image.shape[0]) != self.size:  # a source that changed resolution
                image = cv2.resize(image, self.size)
            self.video.write(image)
            self.frames_written += 1
        if self.json:
            try:
                self.json.write(json.dumps({"frame": frame.index, "source": frame.source, "time": frame.timestamp,
                                            **situation.to_json()}) + "\n")
            except OSError as exc:
                raise StreamError(f"writing the JSON lines failed: {exc}") from exc
        if self.show:
            cv2.imshow("mipd-edge", image)
            cv2.waitKey(1)

    def close(self, keep: bool = True) -> None:
        """Finish the files: with ``keep``, check them and rename them into place (what was
        written before a stop or a failed frame is a whole, playable file); else remove them."""
        try:
            if self.video is not None:
                self.video.release()
            if keep:
                if self.json:
                    self.json.flush()
                    os.fsync(self.json.fileno())
                if self.save:
                    self._check_video()
        except BaseException as exc:
            if not self.files.__exit__(type(exc), exc, exc.__traceback__):
                raise StreamError(f"finishing the stream's files failed: {exc}") from exc
            return
        if keep:
            self.files.close()
        else:
            self.files.__exit__(StreamError, StreamError("discarded"), None)

    def _check_video(self) -> None:
        """The video plays: OpenCV reads back as many frames as were written (a full disk or
        a codec failure otherwise leaves a file that looks written and plays nothing)."""
        if self.frames_written == 0:
            raise StreamError(f"no video written to {self.save}: the stream gave no frame")
        capture = cv2.VideoCapture(str(self.video_tmp))
        try:
            readable = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
        finally:
            capture.release()
        if readable < self.frames_written:
            raise StreamError(f"writing video {self.save} failed: {readable} of {self.frames_written} frames "
                              "can be read back (is the disk full?)")


def _has_display() -> bool:
    try:
        return "GUI" in cv2.getBuildInformation() and "NONE" not in cv2.getBuildInformation().split("GUI:")[1][:40]
    except (cv2.error, IndexError):
        return False


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop`` (the stream then drains and closes its files) instead
    of killing the process mid-write; the previous handlers come back afterwards. Only the
    main thread can install handlers: elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    def handler(signum, _frame) -> None:
        log.warning("%s: stopping the stream after the current frame", signal.Signals(signum).name)
        stop.set()
        stop.signal = signal.Signals(signum).name  # type: ignore[attr-defined]
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_stream(predictor, source, writer: StreamWriter, max_frames: Optional[int] = None,
               on_result: Optional[Callable[[Frame, Situation], None]] = None, queue_size: int = 4,
               stop: Optional[threading.Event] = None) -> StreamStats:
    """Read -> infer -> draw/write, each stage in its own thread, until the source ends,
    ``max_frames`` are done, ``stop`` is set, or SIGINT / SIGTERM arrives.

    However it ends, the queues drain and the files are closed whole. A frame the model
    cannot take (a ``MipdEdgeError``) is skipped and counted; any other failure, in any
    stage, ends the stream and is raised (a ``StreamError`` where reading or writing failed)."""
    stats = StreamStats()
    stop = stop or threading.Event()
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
    failure: Optional[BaseException] = None
    with stop_on_signals(stop):
        frames = iter(source)
        try:
            while (max_frames is None or stats.frames < max_frames) and not stop.is_set() and not errors:
                t0 = time.perf_counter()
                frame = next(frames, None)
                if frame is None:
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
        except BaseException as exc:  # raised below, once the files are closed
            failure = exc
        finally:
            hand_over(_END)
            writer_thread.join()
            source.close()
            try:
                writer.close(keep=not errors)
            except StreamError as exc:
                if failure is None and not errors:
                    failure = exc
                else:
                    log.error("%s", exc)
            stats.seconds = time.perf_counter() - start
    stats.stopped_by = getattr(stop, "signal", None)
    if errors:
        raise StreamError(f"writing the stream failed: {errors[0]}") from errors[0]
    if failure is not None:
        raise failure
    log.info("stream done: %s", stats.to_json())
    return stats
