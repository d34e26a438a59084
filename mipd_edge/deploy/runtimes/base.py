"""One interface for every backend: named numpy inputs in, named numpy outputs out.

A runtime loads the two graphs of a bundle (encoder, decoder) in one precision and runs
them. Everything around it (pre-processing, vocabulary matching, drawing) is shared and
torch-free; a runtime only moves tensors through an engine.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from abc import ABC, abstractmethod
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Generic, Iterator, Mapping, Optional, Sequence, TypeVar

import numpy as np

from ...errors import BundleError, InvalidImageError
from ..backends import backend_info
from ..bundle import PRECISIONS, BundleManifest, check_input_shapes
from ..preprocess import Preprocess

if TYPE_CHECKING:
    from ..postprocess import VocabularyTables

T = TypeVar("T")


class Pool(Generic[T]):
    """Objects that serve one caller at a time (an infer request, an execution context),
    made on demand and reused: as many exist as callers ever ran at once, so one runtime
    serves any number of threads without a lock around the inference itself."""

    def __init__(self, make: Callable[[], T]):
        self.make = make
        self.free: list[T] = []
        self.lock = threading.Lock()

    @contextmanager
    def take(self) -> Iterator[T]:
        with self.lock:
            item = self.free.pop() if self.free else None
        if item is None:
            item = self.make()
        try:
            yield item
        finally:
            with self.lock:
                self.free.append(item)


class Runtime(ABC):
    name: str = ""  # its row in deploy/backends.py (a backend registered under another name is given that one)

    @property
    def extra(self) -> str:
        """The pip extra that installs this backend (``deploy/backends.py``)."""
        return backend_info(self.name).extra
    takes_canvas: bool = False  # True where the encoder graph itself normalises the uint8 canvas
    matches_in_graph: bool = False  # True where the backend can append the vocabulary matching (match_with)

    def __init__(self, bundle: Path, manifest: BundleManifest, device: str = "CPU",
                 precision: Optional[str] = None, threads: Optional[int] = None, canvas_input: bool = False):
        """``canvas_input`` asks the backend to take letterboxed BGR uint8 canvases (N, H, W, 3)
        and normalise them inside its graph where it can (OpenVINO does); ``encoder_input``
        gives whichever input the encoder takes, so callers need not know."""
        self.bundle, self.manifest, self.device = Path(bundle), manifest, device
        self.precision = precision or manifest.precision
        if self.precision not in PRECISIONS:
            raise BundleError(f"precision must be fp32, fp16 or int8, got {self.precision!r}")
        self.threads = threads
        self.canvas_input = canvas_input
        self.preprocess = Preprocess.from_json(manifest.preprocess)
        self.task = manifest.task
        self.output_names_of = self.task.outputs
        self.inputs = dict(self.task.inputs)  # a backend may add graphs of its own
        # graphs ending in the vocabulary matching (match_with), per VocabularyTables, alive while it is
        self.matched: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.matched_graphs: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
        self.match_lock = threading.Lock()
        self.serials = itertools.count()

    def encoder_input(self, fitted: Sequence[np.ndarray]) -> np.ndarray:
        """Images fitted to the input square (``Preprocess.fit``) -> what this runtime's encoder
        takes: their BGR uint8 canvases (N, H, W, 3), or the normalised batch (N, 3, H, W)."""
        if not self.takes_canvas:
            return self.preprocess.blob(fitted)
        canvases = [self.preprocess.pad(image) for image in fitted]
        return canvases[0][None] if len(canvases) == 1 else np.stack(canvases)

    def match_with(self, tables: "VocabularyTables", top_k: int) -> tuple[str, str]:
        """The names of an encoder graph giving (memory, verb_ids, verb_probs: the top-k verbs) and
        a decoder graph giving (noun_ids, noun_probs: the best noun per role; boxes, exists): the
        bundle's graphs followed by the vocabulary matching against ``tables`` (see
        ``GraphMatchedDecoder``), for backends with ``matches_in_graph``.

        Right after an inference every numpy call in Python costs five to ten times its warm
        time (the inference has flushed the caches); inside the graph the same matching costs a
        fraction of that. A vocabulary edit makes new tables, and the next call builds graphs
        for them (a fraction of a second); the bundle's graphs stay as they are, and graphs of
        older tables live on while a call still uses them, so a call in flight keeps its graphs
        when another thread edits the vocabulary."""
        if not self.matches_in_graph:
            raise NotImplementedError(f"{self.name} matches the vocabulary in numpy")
        names = self.matched.get(tables)
        if names is not None:
            return names[0]
        with self.match_lock:
            if tables in self.matched:
                return self.matched[tables][0]
            heads = {"encoder": ("glance", tables.verb_logits, min(top_k, len(tables.verbs)), "verb"),
                     "decoder": ("nouns", tables.noun_logits, 1, "noun")}
            serial = next(self.serials)
            graphs = {f"matched_{graph}#{serial}": self.matched_graph(graph, *head) for graph, head in heads.items()}
            self.matched_graphs.update(graphs)
            names = tuple(graphs)
            self.matched[tables] = (names, list(graphs.values()))
            return names

    def matched_graph(self, graph: str, output: str, table: np.ndarray, k: int, name: str) -> Any:
        """``graph`` with its ``output`` embeddings scored against ``table`` (D, V: scaled text
        embeddings), softmax over the vocabulary, and the top ``k`` as ``{name}_ids`` and
        ``{name}_probs`` in place of the embeddings (what ``SituationDecoder`` computes in
        numpy), ready to run: what ``run`` finds in ``matched_graphs``."""
        raise NotImplementedError(f"{self.name} matches the vocabulary in numpy")

    @abstractmethod
    def run(self, graph: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the encoder or decoder graph on named float32 inputs."""

    def encode(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self.run("encoder", {"images": images})
        return out["memory"], out["glance"]

    def run_async(self, graph: str, inputs: Mapping[str, np.ndarray],
                  callback: Callable[[dict[str, np.ndarray]], None]) -> None:
        """Submit work and return; ``callback`` gets the outputs. Backends with their own
        asynchronous queues override this; the default runs inline."""
        callback(self.run(graph, inputs))

    def wait(self) -> None:
        """Block until every ``run_async`` submission has called back."""

    def example_inputs(self, batch: int = 1) -> dict[str, dict[str, np.ndarray]]:
        """Inputs of the right shapes for both graphs: for warm-up and timing (the graphs are
        dense, so their cost does not depend on the values)."""
        size = self.preprocess.size
        images = self.encoder_input([np.zeros((size, size, 3), np.uint8)] * batch)
        memory, _ = self.encode(images[:1])  # batch 1: every encoder graph takes it
        memory = np.repeat(memory, batch, axis=0)
        return {"encoder": {"images": images},
                "decoder": self.task.decoder_example(memory, self.manifest.max_roles, self.manifest.text_dim)}

    def warmup(self, batch: int = 1, iterations: int = 3) -> None:
        inputs = self.example_inputs(batch)
        for _ in range(iterations):
            self.run("encoder", inputs["encoder"])
            self.run("decoder", inputs["decoder"])

    def close(self) -> None:
        pass

    def check_inputs(self, graph: str, inputs: Mapping[str, np.ndarray],
                     names: Optional[list[str]] = None) -> dict[str, np.ndarray]:
        """The graph's inputs (``names``, default its bundle inputs) in its order, of the right
        dtype, C-contiguous and writable (so a backend may read them in place); a copy only
        where an array is not."""
        out = {}
        names = self.inputs[graph] if names is None else names
        for name in names:
            if name not in inputs:
                raise BundleError(f"{graph} graph needs inputs {[n for n in names if n not in inputs]}")
            a = inputs[name]
            if not isinstance(a, np.ndarray):
                a = np.asarray(a)
            dtype = np.uint8 if self.takes_canvas and name == "images" else np.float32
            if a.dtype != dtype:
                raise InvalidImageError(f"{graph} input '{name}' must be {np.dtype(dtype).name}, got {a.dtype}")
            out[name] = a if a.flags.c_contiguous and a.flags.writeable else np.array(a, order="C")
        return out

    def check_shapes(self, graph: str, shapes: Mapping[str, Any]) -> None:
        """A loaded graph's input shapes (None for free dimensions) agree with the manifest."""
        check_input_shapes(self.bundle, self.manifest, graph, shapes)

    def outputs(self, graph: str, values) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names_of[graph], values))

    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
