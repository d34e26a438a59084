"""``Predictor``: a bundle, a runtime and the shared pre/post-processing, as one call.

    from mipd_edge import Predictor
    predictor = Predictor("bundle-int8")            # auto: the fastest backend x precision, measured here
    situation = predictor("photo.jpg")              # or a BGR array, or a PIL image
    print(situation.verb, situation.roles["agent"].label, predictor.timings)

``Predictor(bundle)`` is the class of the bundle's task: a ``SituationPredictor`` answers
a ``Situation`` per image; an HOI bundle's ``InteractionPredictor`` answers
``Interactions``, one situation per detected human-object interaction (verb; agent and item
with boxes), and ``detect`` gives the scored detections in the ``eval-hoi`` format.

Nothing here imports torch (unless you ask for the torch backend): a device with numpy,
OpenCV and one runtime can run a bundle. Bad input raises a ``MipdEdgeError`` subclass and
leaves the predictor ready for the next call. The vocabulary is live: edits through
``predictor.vocabulary`` apply from the next call, with no re-export.

One Predictor may be called from any number of threads on every backend: each call takes
its own infer request / execution context (OpenVINO, TensorRT) or shares a session that is
thread-safe (ONNX Runtime, eager torch), and decodes against one version of the
vocabulary even while another thread edits it. ``timings`` describes the last call to
finish. A bundle is checked before it answers (``bundle.read_manifest``): every value of
its manifest, every file's SHA-256, every path inside the bundle folder.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from ..errors import BundleError, MipdEdgeError, VocabularyError
from ..files import PathLike
from ..situation import Interactions, Situation
from ..text import LazyTextEncoder, OnnxTextEncoder, load_text_encoder
from ..vocabulary import Vocabulary
from .bundle import bundle_file, read_manifest
from .image import ImageSource, load_image
from .postprocess import GraphMatchedDecoder, SituationDecoder, recognize
from .preprocess import Letterbox
from .runtimes.selection import select_runtime

log = logging.getLogger(__name__)


class Predictor(ABC):
    """A bundle behind one call. ``Predictor(bundle)`` gives the class of the bundle's task:
    a ``SituationPredictor`` (``predictor(image)`` is a ``Situation``) or an
    ``InteractionPredictor`` (``predictor(image)`` is ``Interactions``, a list of them).
    Both answers have ``situations`` and ``to_json``, for code that takes either."""

    serves: str  # the task of the bundles a subclass answers for

    def __new__(cls, bundle: PathLike, *args: Any, **kwargs: Any) -> "Predictor":
        if cls is Predictor:  # the task's class (the manifest is read again, with its files' hashes, at __init__)
            cls = PREDICTORS[read_manifest(bundle, verify=False).task.name]
        return super().__new__(cls)

    def __init__(self, bundle: PathLike, backend: str = "auto", device: str = "CPU", precision: str = "auto",
                 threads: Optional[int] = None, top_k: int = 5, **runtime_options: Any):
        """``backend="auto"`` / ``precision="auto"`` measure every installed backend x precision
        the bundle holds (INT8 only within the bundle's accuracy gate) on the first load on a
        machine and keep the fastest; the choice is cached, so later loads are instant.
        ``selection`` says what was chosen and why. Explicit values always win."""
        self.bundle = Path(bundle)
        self.manifest = read_manifest(self.bundle)  # validated, every file's hash checked
        self.task = self.manifest.task.name
        if self.task != self.serves:
            raise BundleError(f"{self.bundle} is a {self.task} bundle; {type(self).__name__} serves {self.serves} "
                              f"bundles (Predictor picks the class of a bundle's task)")
        self.vocabulary = Vocabulary.load(bundle_file(self.bundle, self.manifest.vocabulary, "vocabulary"))
        if self.vocabulary.dim != self.manifest.text_dim:
            raise VocabularyError(f"{self.bundle}: the vocabulary holds {self.vocabulary.dim}-d embeddings, "
                                  f"the model expects {self.manifest.text_dim}-d")
        if self.vocabulary.encoder_id != self.manifest.text_encoder:
            raise VocabularyError(f"{self.bundle}: the vocabulary was embedded by {self.vocabulary.encoder_id}, "
                                  f"the model was trained with {self.manifest.text_encoder}")
        self.vocabulary.attach(LazyTextEncoder(self.vocabulary.encoder_id, self.vocabulary.dim, self._text_encoder))
        runtime_options.setdefault("canvas_input", True)  # normalisation inside the graph where the backend can
        self.selection = select_runtime(self.bundle, self.manifest, device, backend, precision or "auto", threads,
                                        runtime_options)
        self.runtime = self.selection.runtime
        self.backend, self.precision = self.runtime.name, self.runtime.precision
        self.preprocess = self.runtime.preprocess
        self.batch_free = self.manifest.dynamic_batch or self.backend == "torch"
        self.timings: dict[str, float] = {}
        self._build_decoder(top_k)

    @abstractmethod
    def _build_decoder(self, top_k: int) -> None:
        """What turns this task's graph outputs into answers, against the live vocabulary."""

    def __call__(self, image: ImageSource) -> Union[Situation, Interactions]:
        return self.predict([image])[0]

    @abstractmethod
    def predict(self, images: Union[ImageSource, Sequence[ImageSource]]) -> list:
        """The answers for a list of images (a single image gives a list of one)."""

    def _start(self, images) -> tuple[list, float, Optional[np.ndarray], list[Letterbox], float]:
        """The call's images as a list, its start time, the prepared batch and when it was ready."""
        images = list(images) if isinstance(images, (list, tuple)) else [images]
        start = time.perf_counter()
        batch, letterboxes = self.prepare(images) if images else (None, [])
        return images, start, batch, letterboxes, time.perf_counter()

    def _record(self, start: float, t_pre: float, inference: float, end: float, batch: int) -> None:
        """``timings`` of the last call: pre-processing, inference, post-processing, total (ms)."""
        self.timings = {"preprocess_ms": (t_pre - start) * 1e3, "inference_ms": inference * 1e3,
                        "postprocess_ms": (end - t_pre - inference) * 1e3, "total_ms": (end - start) * 1e3,
                        "batch": batch}

    def prepare(self, images: Sequence[ImageSource]) -> tuple[np.ndarray, list[Letterbox]]:
        """Images -> the encoder's input batch and where each image sits in it."""
        fitted = [self.preprocess.fit(load_image(img)) for img in images]
        return self.runtime.encoder_input([f[0] for f in fitted]), [f[1] for f in fitted]

    def encode(self, batch: np.ndarray, graph: str = "encoder") -> dict[str, np.ndarray]:
        """The outputs of an encoder graph on a ``prepare``d batch, one image at a time where the
        graph has batch 1."""
        if self.batch_free or len(batch) == 1:
            return self.runtime.run(graph, {"images": batch})
        outs = [self.runtime.run(graph, {"images": batch[i:i + 1]}) for i in range(len(batch))]
        return {name: np.concatenate([o[name] for o in outs]) for name in outs[0]}

    def graphs(self) -> tuple[str, str]:
        """The names of the encoder and decoder graphs a call runs now (the benchmark times these)."""
        return "encoder", "decoder"

    def _text_encoder(self):
        """The bundle's own ONNX text encoder, else sentence-transformers, else a clear error."""
        shipped = self.manifest.text_encoder_onnx
        if shipped:  # its id is the model's (validated), which is the vocabulary's (checked at load)
            folder = bundle_file(self.bundle, shipped["folder"], "text_encoder_onnx.folder")
            encoder = OnnxTextEncoder(folder, shipped["id"])
            if encoder.dim != self.vocabulary.dim:
                raise VocabularyError(f"{folder}: the text encoder gives {encoder.dim}-d embeddings, the vocabulary "
                                      f"holds {self.vocabulary.dim}-d")
            return encoder
        try:
            import sentence_transformers  # noqa: F401  (imports torch: only reached when editing text)
        except ImportError as e:
            raise VocabularyError("editing the vocabulary needs a text encoder: this bundle was exported without "
                                  "one (mipd-edge export --with-text-encoder) and sentence-transformers is not "
                                  "installed (pip install 'mipd-edge[train]')") from e
        return load_text_encoder(self.manifest.text_encoder_spec)

    def close(self) -> None:
        """Release the runtime (sessions, compiled models); ``with Predictor(...)`` calls it."""
        self.runtime.close()

    def __enter__(self) -> "Predictor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({str(self.bundle)!r}, backend={self.backend!r}, "
                f"precision={self.precision!r}, verbs={len(self.vocabulary.verbs)})")


class SituationPredictor(Predictor):
    """Grounded situation recognition: one ``Situation`` per image."""

    serves = "gsr"

    def _build_decoder(self, top_k: int) -> None:
        # where the backend can, the vocabulary matching runs at the end of its graphs
        decoder = GraphMatchedDecoder if self.runtime.matches_in_graph else SituationDecoder
        self.decoder = decoder(self.vocabulary, self.manifest.verb_scale, self.manifest.noun_scale,
                               self.manifest.max_roles, top_k)

    def __call__(self, image: ImageSource) -> Situation:
        return self.predict([image])[0]

    def predict(self, images: Union[ImageSource, Sequence[ImageSource]]) -> list[Situation]:
        """Situations for a list of images (a single image gives a list of one): the top
        verbs, and the roles of the best one."""
        return self._situations(images, "top1", None)

    def graphs(self, decoder=None) -> tuple[str, str]:
        """The encoder and decoder graphs a call runs now: where the backend matches the
        vocabulary inside its graphs, those compiled for the current vocabulary (``decoder``:
        a pinned one, else the live vocabulary's)."""
        decoder = decoder or self.decoder.pinned()
        if isinstance(decoder, GraphMatchedDecoder):  # compiles only after a vocabulary edit
            return self.runtime.match_with(decoder.tables, decoder.top_k)
        return "encoder", "decoder"

    def _situations(self, images: Union[ImageSource, Sequence[ImageSource]], roles_for: str,
                    gold_verbs: Optional[Sequence[str]]) -> list[Situation]:
        """``predict``'s work; ``roles_for="topk"`` also decodes the roles of every candidate
        verb, and ``gold_verbs`` adds ``gt_verb_roles``: what evaluation (``mipd_edge.evaluation``,
        within the package) scores."""
        images, start, batch, letterboxes, t_pre = self._start(images)
        if not images:
            return []
        decoder = self.decoder.pinned()  # one vocabulary version for the whole call
        encoder_graph, decoder_graph = self.graphs(decoder)
        encoded = self.encode(batch, encoder_graph)
        t_enc = time.perf_counter()
        decode_time = [0.0]

        def decode(*inputs):
            t = time.perf_counter()
            out = self.runtime.run(decoder_graph, dict(zip(self.runtime.inputs["decoder"], inputs)))
            decode_time[0] += time.perf_counter() - t
            return decoder.nouns_of(out), out["boxes"], out["exists"]

        if gold_verbs is not None:
            unknown = [v for v in gold_verbs if v not in self.vocabulary.frames]
            if unknown:
                raise VocabularyError(f"gold verbs not in the vocabulary: {unknown[:3]}")
        situations = recognize(encoded["memory"], decoder.glance_of(encoded), decode, letterboxes, decoder,
                               roles_for, gold_verbs)
        self._record(start, t_pre, (t_enc - t_pre) + decode_time[0], time.perf_counter(), len(images))
        return situations


class InteractionPredictor(Predictor):
    """Human-object interaction detection: per image, its interactions (``Interactions``);
    ``detect`` gives the scored detections in the ``eval-hoi`` format. ``threshold`` is the
    score an interaction needs to be answered, wherever no call names one (a stream's, a
    server's); set it on the instance."""

    serves = "hoi"
    _threshold = 0.3

    @property
    def threshold(self) -> float:
        """The score an interaction needs wherever a call names none (streams, the server);
        0.3 until set, and set only to a number from 0 to 1."""
        return self._threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        self._threshold = score_threshold(value)

    def _build_decoder(self, top_k: int) -> None:
        from ..data.hico import HoiSpace
        from .interactions import InteractionDecoder

        self.space = HoiSpace.from_json(self.manifest.hoi_space)
        self.interactions = InteractionDecoder(self.vocabulary, self.manifest.verb_scale, self.manifest.noun_scale,
                                               self.space, restrict=False)

    def __call__(self, image: ImageSource) -> Interactions:
        return self.predict([image])[0]

    def predict(self, images: Union[ImageSource, Sequence[ImageSource]],
                threshold: Optional[float] = None) -> list[Interactions]:
        """Per image, its interactions scoring at least ``threshold`` (the instance's by default), best first."""
        from .interactions import as_situations

        limit = self.threshold if threshold is None else score_threshold(threshold)
        return [as_situations(d, limit) for d in self.detect(images)]

    def detect(self, images: Union[ImageSource, Sequence[ImageSource]], classes_only: bool = False) -> list[list[dict]]:
        """Per image, its scored (human, verb, object) detections, best first, in the
        ``mipd-edge eval-hoi`` format (boxes in image pixels). ``classes_only`` keeps only the
        (verb, object) classes of the bundle's HOI space, as its evaluation expects."""
        images, start, batch, letterboxes, t_pre = self._start(images)
        if not images:
            return []
        outputs = self.runtime.run("decoder", {"memory": self.encode(batch)["memory"]})
        t_inf = time.perf_counter()
        names = self.runtime.output_names_of["decoder"]
        detections = [self.interactions.detections([outputs[n][i] for n in names], box, restrict=classes_only)
                      for i, box in enumerate(letterboxes)]
        self._record(start, t_pre, t_inf - t_pre, time.perf_counter(), len(images))
        return detections


PREDICTORS: dict[str, type[Predictor]] = {cls.serves: cls for cls in (SituationPredictor, InteractionPredictor)}


def score_threshold(value: Any) -> float:
    """``value`` as a score threshold: a number from 0 to 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise MipdEdgeError(f"an interaction threshold is a number from 0 to 1, got {value!r}")
    return float(value)


__all__ = ["InteractionPredictor", "Predictor", "SituationPredictor"]

