"""Where a stream's answers go: overlays, a video file, JSON lines, a window.

Video is H.264 in MP4 through PyAV where it is installed (``pip install 'mipd-edge[streams]'``),
the codec every browser plays; without PyAV, OpenCV's ``mp4v``, which browsers do not play, with
a warning. Every file is written under a temporary name, read back, and renamed into place.
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import ExitStack
from fractions import Fraction
from pathlib import Path
from typing import Optional, Union

import cv2
import numpy as np

from ...errors import MipdEdgeError, StreamError
from ...files import atomic_output, check_output
from ...situation import Interactions, Situation
from .sources import Frame

log = logging.getLogger(__name__)


# what each container holds: H.264 (OpenCV's mp4v where PyAV is missing), or Motion JPEG
VIDEO_SUFFIXES = {".mp4": "h264", ".m4v": "h264", ".mov": "h264", ".avi": "MJPG", ".mkv": "MJPG"}


def h264_encoder() -> Optional[str]:
    """PyAV's H.264 encoder where PyAV is installed with one, else None."""
    try:
        import av
    except ImportError:
        return None
    return next((name for name in ("libx264", "libopenh264") if name in av.codecs_available), None)


class VideoEncoder:
    """One video file being written, frame by frame: H.264 (yuv420p, ``+faststart`` so a browser
    starts playing before the whole file has arrived) through PyAV, or OpenCV's writer for
    Motion JPEG and where PyAV is missing. ``codec`` says which."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int], kind: str):
        self.size = size
        encoder = h264_encoder() if kind == "h264" else None
        if kind == "h264" and encoder is None:
            log.warning("PyAV is not installed: writing mp4v, which browsers do not play "
                        "(pip install 'mipd-edge[streams]' for H.264)")
        if encoder:
            import av

            w, h = size[0] - size[0] % 2, size[1] - size[1] % 2  # yuv420p takes even sizes
            self.container = av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"})
            self.stream = self.container.add_stream(encoder, rate=Fraction(fps).limit_denominator(1001))
            self.stream.width, self.stream.height, self.stream.pix_fmt = w, h, "yuv420p"
            self.stream.options = {"preset": "veryfast", "crf": "23"} if encoder == "libx264" else {}
            self.frame_type, self.even, self.codec = av.VideoFrame, (w, h), "h264"
            self.writer = None
        else:
            self.codec = "mp4v" if kind == "h264" else kind
            self.writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*self.codec), fps, size)
            if not self.writer.isOpened():
                raise StreamError(f"cannot write video {path}: OpenCV could not open a writer for it")

    def write(self, bgr: np.ndarray) -> None:
        if (bgr.shape[1], bgr.shape[0]) != self.size:  # a source that changed resolution
            bgr = cv2.resize(bgr, self.size)
        if self.writer is not None:
            self.writer.write(bgr)
            return
        w, h = self.even
        frame = self.frame_type.from_ndarray(np.ascontiguousarray(bgr[:h, :w]), format="bgr24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            return
        try:
            for packet in self.stream.encode():  # what the encoder still holds
                self.container.mux(packet)
        finally:
            self.container.close()


class StreamWriter:
    """The drawing / writing stage: overlays, a video file, JSON lines, a window.

    Files are written under temporary names and renamed into place by ``close`` once they
    are complete and the video has been read back; existing files are replaced only with
    ``overwrite``. Every failure to open or write is a ``StreamError``."""

    def __init__(self, save: Optional[Union[str, Path]] = None, json_lines: Optional[Union[str, Path]] = None,
                 show: bool = False, fps: float = 25.0, draw: bool = True, overwrite: bool = False,
                 title: str = "mipd-edge"):
        self.save = Path(save) if save else None
        self.fps, self.draw, self.show, self.title = fps or 25.0, draw, show, title
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
        self.video: Optional[VideoEncoder] = None
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
                self.video = VideoEncoder(self.video_tmp, self.fps, (image.shape[1], image.shape[0]),
                                          VIDEO_SUFFIXES[self.save.suffix.lower()])
            self.video.write(image)
            self.frames_written += 1
        if self.json:
            try:
                self.json.write(json.dumps({"frame": frame.index, "source": frame.source, "time": frame.timestamp,
                                            **situation.to_json()}) + "\n")
            except OSError as exc:
                raise StreamError(f"writing the JSON lines failed: {exc}") from exc
        if self.show:
            cv2.imshow(self.title, image)
            cv2.waitKey(1)

    def close(self, keep: bool = True) -> None:
        """Finish the files: with ``keep``, check them and rename them into place (what was
        written before a stop or a failed frame is a whole, playable file); else remove them."""
        try:
            if self.video is not None:
                self.video.close()
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


