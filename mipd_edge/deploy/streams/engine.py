"""Several sources through one Predictor: ``StreamSet``, and ``run_stream`` for one.

Each tick takes the frame each source has ready (a live source's newest, a file's next) and
answers them as one batch through the Predictor, so eight cameras cost one inference call per
tick instead of eight. Reading happens in each source's thread, drawing and writing in each
source's writer thread; queues between them are bounded, so memory stays flat however long it
runs. A source that ends, gives up or whose output fails is finished on its own: the others
go on, and ``StreamStats.sources`` says what became of each. SIGINT / SIGTERM stop every
source after the current tick, and their files are closed whole.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Union

from ...config import SmoothingConfig
from ...errors import MipdEdgeError, MissingDependencyError, StreamError
from ...situation import Interactions, Situation
from .smoothing import VerbSmoother
from .sources import ENDED, GAVE_UP, Frame, IterableSource, SourceEnded
from .tracks import InteractionTracks
from .writers import StreamWriter

log = logging.getLogger(__name__)

Answer = Union[Situation, Interactions]
FAILED = "failed"  # a source whose output could not be written
STOPPED = "stopped"  # a source stopped before its end: removed, max_frames, a stop or a signal
_END = object()


@dataclass
class SourceStats:
    """What one source did: its status (live, reconnecting; at the end: ended, gave up, failed
    or stopped), frames answered and skipped, reconnections, and the summed time from reading
    a frame to its answer."""

    status: str = "live"
    frames: int = 0
    skipped: int = 0
    reconnects: int = 0
    latency_ms: float = 0.0
    error: Optional[str] = None

    def to_json(self) -> dict[str, Any]:
        out = {"status": self.status, "frames": self.frames, "skipped": self.skipped, "reconnects": self.reconnects,
               "mean_latency_ms": round(self.latency_ms / max(1, self.frames), 2)}
        return {**out, "error": self.error} if self.error else out


@dataclass
class StreamStats:
    """What a stream did: frames answered and skipped, its time, what stopped it, and per source."""

    frames: int = 0
    skipped: int = 0
    seconds: float = 0.0
    stopped_by: Optional[str] = None  # the signal that stopped the stream, if one did
    stage_ms: dict = field(default_factory=lambda: {"read_wait": 0.0, "inference": 0.0, "draw_write": 0.0})
    sources: dict[str, SourceStats] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        """Frames answered per second of stream time, end to end, over all sources."""
        return self.frames / self.seconds if self.seconds else 0.0

    @property
    def failed(self) -> dict[str, str]:
        """The sources that gave up or whose output failed, with why."""
        return {name: s.error or s.status for name, s in self.sources.items() if s.status in (GAVE_UP, FAILED)}

    def to_json(self) -> dict[str, Any]:
        """Counts, seconds, FPS, the mean milliseconds per frame of each stage, and each source."""
        n = max(1, self.frames)
        return {"frames": self.frames, "skipped": self.skipped, "seconds": round(self.seconds, 3),
                "fps": round(self.fps, 2), "mean_ms": {k: round(v / n, 2) for k, v in self.stage_ms.items()},
                "sources": {name: s.to_json() for name, s in self.sources.items()}}


class _Stream:
    """One source in a set: its writer thread and queue, its stats, its frame-rate window."""

    def __init__(self, name: str, source, writer: Optional[StreamWriter], stats: SourceStats, queue_size: int,
                 draw_ms: list[float], smoothing: SmoothingConfig):
        self.name, self.source, self.writer, self.stats = name, source, writer, stats
        self.smoothing = smoothing
        self.smoother = VerbSmoother(smoothing)
        self.tracks: Optional[InteractionTracks] = None
        self.untracked = False
        self.results: queue.Queue = queue.Queue(maxsize=queue_size)
        self.errors: list[BaseException] = []
        self.recent: list[float] = []
        self.removed = False
        self.thread = threading.Thread(target=self._write_loop, args=(draw_ms,), name=f"draw/write {name}",
                                       daemon=True)
        self.thread.start()

    def _write_loop(self, draw_ms: list[float]) -> None:
        while True:
            item = self.results.get()
            if item is _END:
                return
            t = time.perf_counter()
            try:
                if self.writer is not None:
                    self.writer.write(*item)
            except Exception as exc:  # a sink failing must not block the stream, nor end it silently
                self.errors.append(exc)
                return
            draw_ms[0] += (time.perf_counter() - t) * 1e3

    def hand_over(self, item: Any) -> None:
        """Queue an item for the writer, unless the writer has stopped (then nothing would take it)."""
        while self.thread.is_alive():
            try:
                self.results.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def steady(self, answer: Answer) -> Answer:
        """The answer with this source's verb smoothed over its frames; an HOI answer's people and
        objects tracked, each interaction's verb smoothed over its own frames (``tracks.py``)."""
        if isinstance(answer, Situation):
            return self.smoother(answer)
        if not isinstance(answer, Interactions):  # another predictor's answer: as it is
            return answer
        if self.tracks is None and not self.untracked:
            try:
                self.tracks = InteractionTracks(self.smoothing)
            except MissingDependencyError as exc:
                self.untracked = True
                log.warning("source %s: interactions are not tracked: %s", self.name, exc)
        return answer if self.tracks is None else self.tracks(answer)

    def fps(self, now: float) -> float:
        self.recent = (self.recent + [now])[-30:]
        return (len(self.recent) - 1) / (self.recent[-1] - self.recent[0]) if len(self.recent) > 1 else 0.0

    def finish(self, status: Optional[str] = None, error: Optional[str] = None) -> None:
        """Stop reading, drain the writer, close the files (whole, or removed if writing failed)."""
        self.hand_over(_END)
        self.thread.join()
        self.source.close()
        if self.errors:
            status, error = FAILED, f"writing failed: {self.errors[0]}"
        if self.writer is not None:
            try:  # a source that answered nothing (a camera never up) leaves no empty files behind
                self.writer.close(keep=not self.errors and self.stats.frames > 0)
            except StreamError as exc:
                status, error = FAILED, str(exc)
        self.stats.status = status or STOPPED
        self.stats.reconnects = getattr(self.source, "reconnects", 0)
        if error:
            self.stats.error = error
            log.error("source %s: %s", self.name, error)


class StreamSet:
    """Several sources answered together, tick by tick, each with its own outputs.

        streams = StreamSet(predictor)
        streams.add("door", open_source("rtsp://door/stream"), StreamWriter("door.mp4"))
        streams.add("yard", open_source("rtsp://yard/stream"), StreamWriter("yard.mp4"))
        stats = streams.run()          # until every source ends, gives up or is removed

    ``add`` and ``remove`` may be called from other threads while ``run`` runs; a source added
    then joins the next tick. ``max_frames`` stops each source after that many answers;
    ``on_result(name, frame, answer)`` sees every answer in the inference thread; ``smoothing``
    steadies each source's verb over its frames (``SmoothingConfig(smooth="off")``: as answered)."""

    def __init__(self, predictor, max_frames: Optional[int] = None,
                 on_result: Optional[Callable[[str, Frame, Answer], None]] = None, queue_size: int = 4,
                 smoothing: SmoothingConfig = SmoothingConfig()):
        self.predictor, self.max_frames, self.on_result, self.queue_size = predictor, max_frames, on_result, queue_size
        self.smoothing = smoothing
        self.stats = StreamStats()
        self.streams: dict[str, _Stream] = {}
        self.lock = threading.Lock()
        self.wake = threading.Event()  # set when any source queues a frame
        self.draw_ms = [0.0]

    def add(self, name: str, source, writer: Optional[StreamWriter] = None) -> None:
        """Answer ``source`` (one of ``sources.py``'s, or any iterable of ``Frame``) from the next
        tick on; its answers go to ``writer`` (and ``on_result``)."""
        if not hasattr(source, "next_frame"):
            source = IterableSource(source)
        with self.lock:
            if name in self.streams:
                raise MipdEdgeError(f"a source named {name!r} is already in this stream set")
            stats = self.stats.sources[name] = SourceStats()
            self.streams[name] = _Stream(name, source, writer, stats, self.queue_size, self.draw_ms, self.smoothing)
        source.on_frame = self.wake.set
        self.wake.set()

    def remove(self, name: str) -> None:
        """Stop answering ``name``: its files are finished at the end of the current tick."""
        with self.lock:
            if name not in self.streams:
                raise MipdEdgeError(f"no source named {name!r} in this stream set")
            self.streams[name].removed = True
        self.wake.set()

    def run(self, stop: Optional[threading.Event] = None) -> StreamStats:
        """Answer every source until each has ended, given up or been removed, or ``stop`` is set,
        or SIGINT / SIGTERM arrives; however it ends, every source's files are closed whole."""
        stop = stop or threading.Event()
        start = time.perf_counter()
        try:
            with stop_on_signals(stop):
                while not stop.is_set() and self._tick(stop):
                    pass
        finally:
            with self.lock:
                left = list(self.streams.values())
                self.streams.clear()
            for stream in left:
                stream.finish()
            self.stats.seconds = time.perf_counter() - start
            self.stats.stage_ms["draw_write"] = self.draw_ms[0]
        self.stats.stopped_by = getattr(stop, "signal", None)
        log.info("stream done: %s", self.stats.to_json())
        return self.stats

    def _tick(self, stop: threading.Event) -> bool:
        """Answer the frames that are ready now, one batch; False once no source is left."""
        t0 = time.perf_counter()
        self.wake.clear()  # before looking: a frame queued after the look wakes the wait below
        batch = self._ready_frames()
        if batch is None:
            return False
        if not batch:
            self.wake.wait(0.5)
            self.stats.stage_ms["read_wait"] += (time.perf_counter() - t0) * 1e3
            return True
        t1 = time.perf_counter()
        self.stats.stage_ms["read_wait"] += (t1 - t0) * 1e3
        answers = self._answer([frame.image for _, frame in batch])
        t2 = time.perf_counter()
        self.stats.stage_ms["inference"] += (t2 - t1) * 1e3
        timings = dict(self.predictor.timings)
        for (stream, frame), answer in zip(batch, answers):
            if isinstance(answer, MipdEdgeError):
                stream.stats.skipped += 1
                self.stats.skipped += 1
                log.warning("source %s: frame %d skipped: %s", stream.name, frame.index, answer)
                continue
            answer = stream.steady(answer)
            stream.stats.frames += 1
            stream.stats.latency_ms += (time.time() - frame.timestamp) * 1e3
            self.stats.frames += 1
            if self.on_result:
                self.on_result(stream.name, frame, answer)
            stream.hand_over((frame, answer, stream.fps(t2), timings))
            if self.max_frames is not None and stream.stats.frames >= self.max_frames:
                stream.removed = True
        if self.stats.frames and self.stats.frames % 100 < len(batch):
            log.info("%d frames from %d sources, inference %.1f ms per tick", self.stats.frames, len(batch),
                     timings.get("total_ms", 0.0))
        return True

    def _ready_frames(self) -> Optional[list[tuple[_Stream, Frame]]]:
        """(stream, frame) for each source with a frame ready; None when no source is left.
        Sources that ended, gave up, failed or were removed are finished here."""
        with self.lock:
            streams = list(self.streams.values())
        if not streams:
            return None
        batch = []
        for stream in streams:
            ended: Optional[tuple[Optional[str], Optional[str]]] = None
            if stream.removed or stream.errors:
                ended = (STOPPED, None)
            else:
                try:
                    frame = stream.source.next_frame(0)
                    if frame is not None:
                        batch.append((stream, frame))
                except SourceEnded:
                    ended = (ENDED, None)
                except StreamError as exc:
                    ended = (GAVE_UP, str(exc))
                stream.stats.status = getattr(stream.source, "status", stream.stats.status)
            if ended is not None:
                with self.lock:
                    self.streams.pop(stream.name, None)
                stream.finish(*ended)
        return batch

    def _answer(self, images: list) -> list[Union[Answer, MipdEdgeError]]:
        """One batch through the Predictor; where it refuses the batch, image by image, so one
        bad frame costs only itself."""
        try:
            return list(self.predictor.predict(images))
        except MipdEdgeError as exc:
            if len(images) == 1:
                return [exc]
        answers: list[Union[Answer, MipdEdgeError]] = []
        for image in images:
            try:
                answers.append(self.predictor.predict([image])[0])
            except MipdEdgeError as exc:
                answers.append(exc)
        return answers


def run_stream(predictor, source, writer: StreamWriter, max_frames: Optional[int] = None,
               on_result: Optional[Callable[[Frame, Answer], None]] = None, queue_size: int = 4,
               stop: Optional[threading.Event] = None, smoothing: SmoothingConfig = SmoothingConfig()) -> StreamStats:
    """One source: read -> infer -> draw/write until the source ends, ``max_frames`` are done,
    ``stop`` is set, or SIGINT / SIGTERM arrives (a ``StreamSet`` of one).

    However it ends, the files are closed whole. A frame the model cannot take (a
    ``MipdEdgeError``) is skipped and counted; a source that gives up or an output that fails
    is raised as a ``StreamError`` once the files are closed."""
    streams = StreamSet(predictor, max_frames, (lambda _, frame, answer: on_result(frame, answer)) if on_result
                        else None, queue_size, smoothing)
    streams.add(str(getattr(source, "spec", "source")), source, writer)
    stats = streams.run(stop)
    if stats.failed:
        raise StreamError(next(iter(stats.failed.values())))
    return stats


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
