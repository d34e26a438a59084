"""Dynamic batching: requests wait up to ``max_delay_ms`` (or until ``max_batch`` wait), run as
one batch on the Predictor, and each gets its own answer.

The first image of a batch waits for more only while more are on their way (``arriving``:
requests admitted by the server and still being read or decoded); a lone request runs at once,
so batching costs a single client no latency.

Admission is bounded: at most ``max_queue`` images wait or run at once, and one more is refused
at once (``QueueFull``, the server's 503) instead of growing memory. A request whose client went
away cancels its future; a cancelled image is skipped when its batch forms and frees its slot
the moment it is cancelled. ``workers`` threads form and run batches, so several batches are in
flight where the backend runs inferences in parallel (the Predictor may be called from many
threads). Plain threads and ``concurrent.futures``: the HTTP layer awaits the futures, and the
queue works the same under any server, or none.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from ..errors import MipdEdgeError

log = logging.getLogger(__name__)


class QueueFull(MipdEdgeError):
    """Every slot of the batching queue is taken: try again shortly."""


@dataclass(frozen=True)
class BatchSettings:
    """How requests are gathered into batches."""

    max_batch: int = 8  # images per batch at most
    max_delay_ms: float = 5.0  # how long the first image of a batch waits for more
    max_queue: int = 64  # images waiting or running at once; one more is refused (503)
    workers: int = 1  # batches formed and run at once

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_queue < 1 or self.workers < 1 or self.max_delay_ms < 0:
            raise MipdEdgeError(f"batching needs max_batch, max_queue and workers >= 1 and max_delay_ms >= 0, "
                                f"got {self}")


_STOP = object()


class BatchQueue:
    """``submit(item) -> Future`` of its answer; ``run_batch(items) -> answers`` does the work
    (``Predictor.predict``, say). An answer that is an exception fails its own item only; an
    exception raised by ``run_batch`` fails the whole batch. ``on_batch(size, seconds)`` hears of
    every batch that ran."""

    def __init__(self, run_batch: Callable[[Sequence[Any]], Sequence[Any]], settings: BatchSettings,
                 on_batch: Optional[Callable[[int, float], None]] = None):
        self.run_batch, self.settings, self.on_batch = run_batch, settings, on_batch
        self.items: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self.slots = threading.BoundedSemaphore(settings.max_queue)
        self.lock = threading.Lock()
        self.taken = 0  # slots held: images waiting or running
        self.arriving = 0  # images announced (``expect``) and not yet submitted
        self.closed = False
        self.threads = [threading.Thread(target=self._work, name=f"mipd-edge-batcher-{i}", daemon=True)
                        for i in range(settings.workers)]
        for thread in self.threads:
            thread.start()

    @property
    def depth(self) -> int:
        """Images waiting or running now."""
        return self.taken

    def expect(self, count: int) -> None:
        """``count`` images are on their way (being read and decoded); ``arrived`` when they are
        submitted or given up. A forming batch waits for them, up to the delay."""
        with self.lock:
            self.arriving += count

    def arrived(self, count: int) -> None:
        """``count`` of the images ``expect``ed were submitted, or will not be."""
        with self.lock:
            self.arriving -= count

    def submit(self, image: Any) -> Future:
        """Queue one image; the future gives its answer. ``QueueFull`` at once when every slot is
        taken or the queue is closing; cancelling the future frees its slot."""
        if self.closed:
            raise QueueFull("the server is shutting down")
        if not self.slots.acquire(blocking=False):
            raise QueueFull(f"all {self.settings.max_queue} queue slots are taken; try again shortly")
        with self.lock:
            self.taken += 1
        future: Future = Future()
        future.add_done_callback(self._release)  # done, failed or cancelled: the slot is free again
        self.items.put((image, future))
        return future

    def _release(self, _future: Future) -> None:
        with self.lock:
            self.taken -= 1
        self.slots.release()

    def _next_batch(self) -> Optional[list[tuple[Any, Future]]]:
        """The next batch: the first live item, then whatever else arrives before the delay ends
        or the batch is full; None when the queue is closed."""
        batch: list[tuple[Any, Future]] = []
        deadline = None
        while len(batch) < self.settings.max_batch:
            timeout = None if deadline is None else deadline - time.perf_counter()
            if timeout is not None and timeout <= 0:
                break
            try:
                item = self.items.get(timeout=timeout)
            except queue.Empty:
                break
            if item is _STOP:
                self.items.put(_STOP)  # for the other workers
                return batch or None
            image, future = item
            if not future.set_running_or_notify_cancel():  # its client went away
                continue
            batch.append((image, future))
            if deadline is None:
                deadline = time.perf_counter() + self.settings.max_delay_ms / 1e3
            if self.arriving == 0 and self.items.empty():  # nothing more on its way: run what there is
                break
        return batch

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if not batch:
                continue
            started = time.perf_counter()
            try:
                answers = self.run_batch([image for image, _ in batch])
            except Exception as exc:  # every image of the batch gets the error; the worker goes on
                log.warning("a batch of %d failed: %s", len(batch), exc)
                for _, future in batch:
                    future.set_exception(exc)
                continue
            if self.on_batch is not None:
                self.on_batch(len(batch), time.perf_counter() - started)
            for (_, future), answer in zip(batch, answers):
                if isinstance(answer, BaseException):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)

    def close(self, timeout: float = 30.0) -> None:
        """Refuse new images, let the workers finish what is queued, and stop them."""
        self.closed = True
        self.items.put(_STOP)
        for thread in self.threads:
            thread.join(timeout=timeout)
