"""PyTorch: the bundle's ``weights.safetensors`` in eager mode on CPU or CUDA.

On CUDA the fast path is FP16 weights, ``torch.compile`` with CUDA graphs
(``mode="reduce-overhead"``), which removes the per-kernel launch cost that dominates a
small model at batch 1. Shapes are bucketed by batch size; each new size compiles once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Mapping, Optional

import numpy as np

from ...errors import BundleError, require
from ..bundle import BundleManifest
from .base import Runtime

log = logging.getLogger(__name__)


class TorchRuntime(Runtime):
    name = "torch"

    def __init__(self, bundle, manifest: BundleManifest, device: str = "CPU", precision: Optional[str] = None,
                 threads: Optional[int] = None, compiled: Optional[bool] = None, canvas_input: bool = False):
        super().__init__(bundle, manifest, device, precision or "fp32", threads, canvas_input)
        torch = require("torch", self.extra, "The PyTorch backend")
        from ...models.store import load_state, load_weights
        from ...models.student import StudentConfig, build_student

        if self.precision == "int8":
            raise BundleError("the torch backend runs fp32 or fp16; INT8 runs on openvino, onnxruntime or tensorrt")
        self.torch = torch
        dev = device.lower()
        if dev.startswith("cuda") and not torch.cuda.is_available():
            raise BundleError("device CUDA asked for, but torch sees no CUDA GPU here")
        self.dev = torch.device("cuda" if dev == "cuda" else dev if dev.startswith("cuda") else "cpu")
        # torch's thread count is the whole process's: set for this runtime, given back at close
        self.process_threads = torch.get_num_threads()
        if threads and self.dev.type == "cpu":
            torch.set_num_threads(int(threads))
        try:
            model = build_student(StudentConfig.from_json(manifest.model))
        except (TypeError, ValueError, KeyError, RuntimeError) as exc:  # values the manifest check cannot judge
            raise BundleError(
                f"{self.bundle}: bundle.json 'model' does not describe a buildable model ({exc})"
            ) from exc
        weights = self.bundle / manifest.weights
        load_state(model, load_weights(weights), weights)
        self.dtype = torch.float16 if self.precision == "fp16" else torch.float32
        if self.dtype == torch.float16 and self.dev.type != "cuda":
            raise BundleError("fp16 on the torch backend needs a CUDA device")
        self.model = model.eval().to(self.dev, self.dtype)
        self.encode_fn, self.decode_fn = self.model.encode, self._decode
        if compiled is None:
            compiled = self.dev.type == "cuda"
        self.compiled = bool(compiled)
        # eager inference keeps no state between calls, so threads share the model; CUDA
        # graphs replay from fixed buffers, so compiled calls take turns
        self.lock = threading.Lock() if compiled else contextlib.nullcontext()
        if compiled:
            self.encode_fn = torch.compile(self.model.encode, mode="reduce-overhead", dynamic=False)
            self.decode_fn = torch.compile(self._decode, mode="reduce-overhead", dynamic=False)

    def _decode(self, *inputs):
        """The decoder graph's outputs (without the features only training uses)."""
        return self.model.decode(*inputs)[:len(self.output_names_of["decoder"])]

    def run(self, graph: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self.torch
        arrays = self.check_inputs(graph, inputs)
        with self.lock, torch.inference_mode():
            tensors = [torch.from_numpy(a).to(self.dev, self.dtype, non_blocking=True) for a in arrays.values()]
            out = (self.encode_fn if graph == "encoder" else self.decode_fn)(*tensors)
            return self.outputs(graph, [o.float().cpu().numpy() for o in out])

    def close(self) -> None:
        self.torch.set_num_threads(self.process_threads)
