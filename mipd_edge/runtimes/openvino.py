"""OpenVINO: CPU, GPU, NPU or AUTO, with latency / throughput hints and a model cache."""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, Optional

import numpy as np

from ..bundle import graph_path
from ..errors import BundleError, require
from .base import FORMAT_BY_PRECISION, Runtime

log = logging.getLogger(__name__)


class OpenVinoRuntime(Runtime):
    name = "openvino"
    extra = "openvino"

    def __init__(self, bundle, manifest: Mapping[str, Any], device: str = "CPU", precision: Optional[str] = None,
                 threads: Optional[int] = None, hint: str = "LATENCY", cache_dir: Optional[str] = None,
                 inference_precision: Optional[str] = None, canvas_input: bool = False):
        super().__init__(bundle, manifest, device, precision, threads, canvas_input)
        self.takes_canvas = canvas_input
        ov = require("openvino", self.extra, "The OpenVINO backend")
        self._ov = ov
        self.core = ov.Core()
        device = device.upper()
        if device != "AUTO" and device.split(".")[0] not in {d.split(".")[0] for d in self.core.available_devices}:
            raise BundleError(f"OpenVINO device {device!r} is not available here "
                              f"(available: {self.core.available_devices})")
        config: dict[str, Any] = {"PERFORMANCE_HINT": hint.upper()}
        if threads and device == "CPU":
            config["INFERENCE_NUM_THREADS"] = int(threads)
        if inference_precision:  # "f32" for bit-careful comparisons; CPUs with bf16 default to it
            config["INFERENCE_PRECISION_HINT"] = inference_precision
        if cache_dir:
            self.core.set_property({"CACHE_DIR": str(cache_dir)})
        fmt = "openvino" + FORMAT_BY_PRECISION[self.precision]
        self.compiled, self.single = {}, {}
        for graph in ("encoder", "decoder"):
            path = graph_path(bundle, manifest, fmt, graph)
            try:
                model = self.core.read_model(str(path))
                if graph == "encoder" and self.takes_canvas:
                    model = self.with_normalization(model)
                self.compiled[graph] = self.core.compile_model(model, device, config)
                if model.inputs[0].get_partial_shape()[0].is_dynamic:
                    # a single image is the common case: a static batch-1 copy skips the
                    # per-call shape inference of the dynamic graph (about 0.15 ms on a 2-core CPU)
                    model.reshape({i.get_any_name(): [1, *list(i.get_partial_shape())[1:]] for i in model.inputs})
                    self.single[graph] = self.core.compile_model(model, device, config).create_infer_request()
            except RuntimeError as exc:
                raise BundleError(f"{path}: OpenVINO cannot load this graph ({exc})") from exc
        self.requests = {g: c.create_infer_request() for g, c in self.compiled.items()}
        self.output_names = {g: [o.get_any_name() for o in c.outputs] for g, c in self.compiled.items()}
        self.queues: dict[str, Any] = {}

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
        # the inputs are ours and contiguous: OpenVINO may read them in place instead of copying
        arrays = self.check_inputs(graph, inputs)
        one = graph in self.single and next(iter(arrays.values())).shape[0] == 1
        result = (self.single[graph] if one else self.requests[graph]).infer(arrays, share_inputs=True)
        return dict(zip(self.output_names[graph], result.to_tuple()))

    def run_async(self, graph: str, inputs: Mapping[str, np.ndarray],
                  callback: Callable[[dict[str, np.ndarray]], None]) -> None:
        """Through an AsyncInferQueue sized by the device's optimal number of requests."""
        if graph not in self.queues:
            compiled = self.compiled[graph]
            jobs = compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
            queue = self._ov.AsyncInferQueue(compiled, int(jobs))
            names = [o.get_any_name() for o in compiled.outputs]

            def done(request, user_callback):
                user_callback({n: np.array(request.get_output_tensor(i).data) for i, n in enumerate(names)})
            queue.set_callback(done)
            self.queues[graph] = queue
        self.queues[graph].start_async(self.check_inputs(graph, inputs), callback)

    def wait(self) -> None:
        for queue in self.queues.values():
            queue.wait_all()
