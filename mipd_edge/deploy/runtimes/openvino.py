"""OpenVINO: CPU, GPU, NPU or AUTO, with latency / throughput hints and a model cache."""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, Optional

import numpy as np

from ...errors import BundleError, require
from ...machine import bf16_capable
from ..bundle import BundleManifest, graph_format, graph_path
from .base import Pool, Runtime

log = logging.getLogger(__name__)

# the arithmetic each precision name means. Unasked, OpenVINO computes FP32 graphs in bf16 on
# CPUs that have bf16 units, so "fp32" would silently be bf16 there; INT8 graphs keep their
# unquantized layers in FP32 for the same reason. fp16 keeps the device's own choice.
INFERENCE_PRECISION = {"fp32": "f32", "int8": "f32", "bf16": "bf16"}


class OpenVinoRuntime(Runtime):
    name = "openvino"
    matches_in_graph = True

    def __init__(self, bundle, manifest: BundleManifest, device: str = "CPU", precision: Optional[str] = None,
                 threads: Optional[int] = None, inference_precision: Optional[str] = None,
                 canvas_input: bool = False, properties: Optional[Mapping[str, Any]] = None):
        """``properties``: more OpenVINO compile properties, e.g. ``{"PERFORMANCE_HINT": "THROUGHPUT"}``
        (latency is the default) or ``{"CACHE_DIR": path}`` (compiled graphs cached across loads)."""
        super().__init__(bundle, manifest, device, precision, threads, canvas_input)
        self.takes_canvas = canvas_input
        ov = require("openvino", self.extra, "The OpenVINO backend")
        self._ov = ov
        self.core = ov.Core()
        device = self.device = device.upper()
        if device != "AUTO" and device.split(".")[0] not in {d.split(".")[0] for d in self.core.available_devices}:
            raise BundleError(f"OpenVINO device {device!r} is not available here "
                              f"(available: {self.core.available_devices})")
        properties = {"PERFORMANCE_HINT": "LATENCY", **(properties or {})}
        cache_dir = properties.pop("CACHE_DIR", None)  # a property of the core, not of a compiled graph
        config: dict[str, Any] = properties
        if threads and device == "CPU":
            config["INFERENCE_NUM_THREADS"] = int(threads)
        inference_precision = inference_precision or INFERENCE_PRECISION.get(self.precision)
        if self.precision == "bf16" and (device != "CPU" or not bf16_capable()):
            raise BundleError("bf16 runs on OpenVINO's CPU device, on CPUs with AVX512_BF16 or AMX-BF16; "
                              "this one has neither (use fp32 or int8)")
        if inference_precision:
            config["INFERENCE_PRECISION_HINT"] = inference_precision
        if cache_dir:
            self.core.set_property({"CACHE_DIR": str(cache_dir)})
        self.config = config
        fmt = graph_format("openvino", self.precision)
        self.models: dict[str, Any] = {}
        self.graphs: dict[str, CompiledGraph] = {}
        self.known_names = [n for names in (*self.inputs.values(), *self.output_names_of.values()) for n in names] + \
            [f"{kind}_{part}" for kind in ("verb", "noun") for part in ("ids", "probs")]
        for graph in ("encoder", "decoder"):
            path = graph_path(bundle, manifest, fmt, graph)
            try:
                model = self.core.read_model(str(path))
                self.check_shapes(graph, {self.port_name(i): [d.get_length() if d.is_static else None
                                                              for d in i.get_partial_shape()] for i in model.inputs})
                if graph == "encoder" and self.takes_canvas:
                    model = self.with_normalization(model)
                self.graphs[graph] = self.compile(model)
            except RuntimeError as exc:
                raise BundleError(f"{path}: OpenVINO cannot load this graph ({exc})") from exc
            self.models[graph] = model
        self.queues: dict[str, Any] = {}

    def compile(self, model) -> "CompiledGraph":
        compiled = self.core.compile_model(model, self.device, self.config)
        single = None
        if model.inputs[0].get_partial_shape()[0].is_dynamic:
            # a single image is the common case: a static batch-1 copy skips the per-call
            # shape inference of the dynamic graph
            one = model.clone()
            one.reshape({self.port_name(i): [1, *list(i.get_partial_shape())[1:]] for i in one.inputs})
            single = self.core.compile_model(one, self.device, self.config)
        return CompiledGraph(compiled, single, [self.port_name(i) for i in compiled.inputs],
                             [self.port_name(o) for o in compiled.outputs])

    def port_name(self, port) -> str:
        """The bundle's name for a graph input or output. OpenVINO's optimisations can merge
        tensors (``memory + 0`` folded away leaves the input two names), and then any one
        name is not necessarily the bundle's."""
        names = port.get_names()
        return next((n for n in self.known_names if n in names), port.get_any_name())

    def matched_graph(self, graph: str, output: str, table: np.ndarray, k: int, name: str) -> "CompiledGraph":
        return self.compile(self.with_matching(self.models[graph], output, table, k, name))

    def with_matching(self, model, output: str, table: np.ndarray, k: int, name: str):
        """A copy of ``model`` ending in the matching ``matched_graph`` describes."""
        import openvino.opset13 as ops

        model = model.clone()
        result = next(r for r in model.get_results() if output in r.input_value(0).get_names())
        probs = ops.softmax(ops.matmul(result.input_value(0), ops.constant(table), False, False), -1)
        top = ops.topk(probs, np.int64(k), -1, "max", "value")
        heads = []
        for port, suffix in ((top.output(1), "ids"), (top.output(0), "probs")):
            port.get_tensor().set_names({f"{name}_{suffix}"})
            heads.append(ops.result(port))
        model.remove_result(result)
        model.add_results(heads)
        return model

    def with_normalization(self, model):
        """The encoder taking the uint8 BGR canvas (N, H, W, 3): colour swap, layout change,
        scaling and mean/std run in the graph, where OpenVINO fuses them into the first layer (on the
        INT8 encoder it saves about 0.25 ms per image on a 2-core CPU, more than numpy's
        normalisation costs)."""
        from openvino.preprocess import PrePostProcessor

        ppp = PrePostProcessor(model)
        images = ppp.input("images")
        images.tensor().set_element_type(self._ov.Type.u8).set_layout(self._ov.Layout("NHWC"))
        images.model().set_layout(self._ov.Layout("NCHW"))
        images.preprocess().reverse_channels().convert_element_type(self._ov.Type.f32) \
            .mean([255.0 * m for m in self.preprocess.mean]).scale([255.0 * s for s in self.preprocess.std])
        return ppp.build()

    def run(self, graph: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        compiled = self.graphs.get(graph) or self.matched_graphs.get(graph)
        if compiled is None:
            raise BundleError(f"no graph {graph!r} in this OpenVINO runtime")
        arrays = self.check_inputs(graph, inputs, compiled.input_names)
        single = compiled.single is not None and next(iter(arrays.values())).shape[0] == 1
        with (compiled.single_requests if single else compiled.requests).take() as request:
            # The inputs are checked and contiguous: tensors over their memory, set by position,
            # skip the copy and OpenVINO's generic input dispatch.
            for name, array in arrays.items():
                request.set_input_tensor(compiled.input_index[name], self._ov.Tensor(array, shared_memory=True))
            return dict(zip(compiled.output_names, request.infer().to_tuple()))

    def run_async(self, graph: str, inputs: Mapping[str, np.ndarray],
                  callback: Callable[[dict[str, np.ndarray]], None]) -> None:
        """Through an AsyncInferQueue sized by the device's optimal number of requests."""
        if graph not in self.queues:
            compiled = self.graphs[graph].compiled
            jobs = compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
            queue = self._ov.AsyncInferQueue(compiled, int(jobs))
            names = self.graphs[graph].output_names

            def done(request, user_callback):
                user_callback({n: np.array(request.get_output_tensor(i).data) for i, n in enumerate(names)})
            queue.set_callback(done)
            self.queues[graph] = queue
        self.queues[graph].start_async(self.check_inputs(graph, inputs), callback)

    def wait(self) -> None:
        for queue in self.queues.values():
            queue.wait_all()


class CompiledGraph:
    """A compiled model (and its static batch-1 copy) with a pool of infer requests: an
    infer request runs one inference at a time, so each calling thread takes its own."""

    def __init__(self, compiled, single, input_names: list[str], output_names: list[str]):
        self.compiled, self.single = compiled, single
        self.input_names = input_names
        self.input_index = {name: i for i, name in enumerate(input_names)}
        self.output_names = output_names
        self.requests = Pool(compiled.create_infer_request)
        self.single_requests = Pool(single.create_infer_request) if single is not None else None
