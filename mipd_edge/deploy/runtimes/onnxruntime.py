"""ONNX Runtime: CPU everywhere; CUDA and TensorRT execution providers where installed.

Where the ``onnx`` package is installed (the ``onnx`` extra brings it), the vocabulary matching
runs at the end of the graphs, as in the OpenVINO runtime: the graphs are edited as they are
loaded, with the tables as constants. It moves numpy work, which a Python call right after an
inference runs slowly (the inference has flushed the caches), into the engine: about 0.1 ms of
a 2.9 ms INT8 call on a 2-core Xeon. The normalisation of the canvas stays in OpenCV: as ONNX
operators in front of the encoder it cost ONNX Runtime 0.4 to 0.5 ms more than
``Preprocess.normalize`` (where OpenVINO folds it into the first layer). Without the package
the bundle's graphs run as they are, with the same answers.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np

from ...errors import BundleError, require
from ..bundle import BundleManifest, graph_format, graph_path
from .base import Runtime

log = logging.getLogger(__name__)

PROVIDERS = {"CPU": ["CPUExecutionProvider"],
             "CUDA": ["CUDAExecutionProvider", "CPUExecutionProvider"],
             "TENSORRT": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]}


@dataclass(eq=False)
class Session:
    """An inference session of the bundle's ``graph`` (encoder or decoder, matched or not) from
    the file at ``path``, and the names of its inputs and outputs (read once: ONNX Runtime
    builds new lists on every ``get_inputs`` call)."""

    graph: str
    path: Path
    session: Any
    input_names: list[str]
    output_names: list[str]


class OnnxRuntime(Runtime):
    name = "onnxruntime"

    def __init__(self, bundle, manifest: BundleManifest, device: str = "CPU", precision: Optional[str] = None,
                 threads: Optional[int] = None, canvas_input: bool = False):
        super().__init__(bundle, manifest, device, precision, threads, canvas_input)
        ort = require("onnxruntime", self.extra, "The ONNX Runtime backend")
        self._ort = ort
        self.matches_in_graph = importlib.util.find_spec("onnx") is not None
        # the bundle's graphs as read once at load (later matching must not read files that could
        # have changed since the bundle was verified), parsed as ONNX models when first matched
        self.graph_bytes: dict[str, bytes] = {}
        self.models: dict[str, Any] = {}
        device = device.upper()
        if device not in PROVIDERS:
            raise BundleError(f"onnxruntime device must be one of {sorted(PROVIDERS)}, got {device!r}")
        available = set(ort.get_available_providers())
        providers = [p for p in PROVIDERS[device] if p in available]
        if PROVIDERS[device][0] not in available:
            raise BundleError(f"onnxruntime here has no {PROVIDERS[device][0]} (available: {sorted(available)})")
        fmt = graph_format("onnxruntime", self.precision, manifest.graphs)
        self.providers = providers
        self.sessions: dict[str, Session] = {}
        for graph in ("encoder", "decoder"):
            path = graph_path(bundle, manifest, fmt, graph)
            try:
                self.graph_bytes[graph] = path.read_bytes()
                self.sessions[graph] = self.session(graph, path, self.graph_bytes[graph])
            except Exception as exc:  # ORT raises its own exception types for broken files
                raise BundleError(f"{path}: ONNX Runtime cannot load this graph ({exc})") from exc
            self.check_shapes(graph, {i.name: [d if isinstance(d, int) else None for d in i.shape]
                                      for i in self.sessions[graph].session.get_inputs()})
        self.pending, self.idle = 0, threading.Condition()
        self.errors: list[str] = []

    def session(self, graph: str, path: Path, source: Any) -> Session:
        """An inference session for ``graph`` of ``source``: the serialized model read from ``path`` (or edited)."""
        options = self._ort.SessionOptions()
        options.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Each session has its own thread pool, whose threads spin after a run. The decoder
        # is a few per cent of the work: run on the calling thread alone it leaves the cores
        # to the encoder's pool, instead of two pools spinning against each other (the
        # benchmark's raw latency shows the difference).
        if graph == "decoder":
            options.intra_op_num_threads = 1
        elif self.threads:
            options.intra_op_num_threads = self.threads
        session = self._ort.InferenceSession(source, options, providers=self.providers)
        return Session(graph, Path(path), session, [i.name for i in session.get_inputs()],
                       [o.name for o in session.get_outputs()])

    def matched_graph(self, graph: str, output: str, table: np.ndarray, k: int, name: str) -> Session:
        """Called under ``match_lock``: the bundle's graph is parsed once, for every vocabulary version."""
        import onnx

        if graph not in self.models:
            self.models[graph] = onnx.load_from_string(self.graph_bytes[graph])
        edited = with_matching(self.models[graph], output, table, k, name)
        return self.session(graph, self.sessions[graph].path, edited.SerializeToString())

    def find(self, graph: str) -> Session:
        found = self.sessions.get(graph) or self.matched_graphs.get(graph)
        if found is None:
            raise BundleError(f"no graph {graph!r} in this ONNX Runtime runtime")
        return found

    def run(self, graph: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``InferenceSession.run`` may be called from many threads at once."""
        found = self.find(graph)
        values = found.session.run(None, self.check_inputs(graph, inputs, found.input_names))
        return dict(zip(found.output_names, values))

    def run_async(self, graph: str, inputs: Mapping[str, np.ndarray],
                  callback: Callable[[dict[str, np.ndarray]], None]) -> None:
        """``InferenceSession.run_async``: the run happens on ONNX Runtime's own thread pool. The
        decoder has none (it runs on the calling thread), so it runs inline."""
        found = self.find(graph)
        if found.graph == "decoder":
            callback(self.run(graph, inputs))
            return

        def done(results, _user_data, error: str) -> None:
            try:
                if error:
                    self.errors.append(error)
                else:
                    callback(dict(zip(found.output_names, results)))
            finally:
                with self.idle:
                    self.pending -= 1
                    self.idle.notify_all()

        with self.idle:
            self.pending += 1
        found.session.run_async(None, self.check_inputs(graph, inputs, found.input_names), done, None)

    def wait(self) -> None:
        with self.idle:
            self.idle.wait_for(lambda: self.pending == 0)
        if self.errors:
            error, self.errors = self.errors[0], []
            raise BundleError(f"ONNX Runtime asynchronous run failed: {error}")


def with_matching(model, output: str, table: np.ndarray, k: int, name: str):
    """A copy of ``model`` ending in the matching ``Runtime.matched_graph`` describes."""
    from onnx import ModelProto, TensorProto, helper, numpy_helper

    model, source = ModelProto(), model
    model.CopyFrom(source)
    graph = model.graph
    graph.initializer.extend([numpy_helper.from_array(np.ascontiguousarray(table, np.float32), f"{name}.table"),
                              numpy_helper.from_array(np.array([k], np.int64), f"{name}.k")])
    graph.node.extend([helper.make_node("MatMul", [output, f"{name}.table"], [f"{name}.logits"]),
                       helper.make_node("Softmax", [f"{name}.logits"], [f"{name}.all_probs"], axis=-1),
                       helper.make_node("TopK", [f"{name}.all_probs", f"{name}.k"], [f"{name}_probs", f"{name}_ids"],
                                        axis=-1)])
    kept = [o for o in graph.output if o.name != output]
    del graph.output[:]
    graph.output.extend(kept + [helper.make_tensor_value_info(f"{name}_ids", TensorProto.INT64, None),
                                helper.make_tensor_value_info(f"{name}_probs", TensorProto.FLOAT, None)])
    return model

