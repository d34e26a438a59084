"""TensorRT: engines built from the bundle's ONNX graphs on the target GPU, then cached.

Written against TensorRT 10 (JetPack 6 on Jetson) and TensorRT 11. FP16 engines come from
the FP32 ONNX with the FP16 builder flag; INT8 engines from the Q/DQ ONNX (explicit
quantization). TensorRT 11 builds strongly typed networks, where precision comes from the
graph and builder precision flags no longer exist, so there FP16 needs an FP16 graph.
Engines are keyed by GPU name, TensorRT version, precision and the SHA-256 of the ONNX
graph they come from (the timing cache by the first three): a bundle copied to another
device builds its own engines on first load, and a re-exported model never meets an engine
of the old one.

Not verified on the development machines (TensorRT cannot be installed there): the test
of this module runs wherever ``import tensorrt`` works, and is skipped elsewhere.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Mapping, Optional

import numpy as np

from ...errors import BundleError, require
from ..bundle import BundleManifest, file_digest, graph_format, graph_path
from .base import Pool, Runtime

log = logging.getLogger(__name__)


def _major(trt) -> int:
    return int(trt.__version__.split(".")[0])


def engine_key(trt, precision: str) -> str:
    import torch

    gpu = re.sub(r"[^A-Za-z0-9]+", "-", torch.cuda.get_device_name()).strip("-").lower()
    return f"{precision}-{gpu}-trt{trt.__version__}"


def build_engine(onnx_path: Path, engine_path: Path, precision: str, shapes: Mapping[str, tuple],
                 cache_path: Path) -> None:
    """Build one engine; ``shapes`` maps each input to its (min, opt, max) shapes."""
    trt = require("tensorrt", "tensorrt", "TensorRT engines")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strongly_typed = _major(trt) >= 11
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BundleError(f"{onnx_path}: TensorRT cannot parse this graph: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
    if not strongly_typed:
        if precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        elif precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)  # explicit quantization from the Q/DQ graph
            config.set_flag(trt.BuilderFlag.FP16)
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in shapes.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BundleError(f"{onnx_path}: TensorRT failed to build a {precision} engine")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(bytes(serialized))
    cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    log.info("built TensorRT %s engine %s", precision, engine_path)


def input_shapes(manifest: BundleManifest, graph: str, max_batch: int = 32) -> dict[str, tuple]:
    size = manifest.image_size
    dims = {**manifest.input_dims(), "memory": ((size // 16) ** 2, manifest.model["d_model"])}
    free = graph == "decoder" or manifest.dynamic_batch
    top = max_batch if free else 1
    return {n: ((1, *dims[n]), (1, *dims[n]), (top, *dims[n])) for n in manifest.task.inputs[graph]}


def build_engines(bundle: Path, manifest: BundleManifest, precision: str) -> dict[str, str]:
    """Engines for both graphs on this GPU (reused when already built); paths relative to the bundle."""
    trt = require("tensorrt", "tensorrt", "TensorRT engines")
    source = graph_format("tensorrt", precision)
    key = engine_key(trt, precision)
    out = {}
    for graph in ("encoder", "decoder"):
        onnx = graph_path(bundle, manifest, source, graph)
        # the graph's own hash in the name: an engine cached for an earlier model is never reused
        engine = Path("tensorrt") / f"{graph}-{key}-{file_digest(onnx)[:16]}.engine"
        if not (bundle / engine).is_file():
            build_engine(onnx, bundle / engine, precision,
                         input_shapes(manifest, graph), bundle / "tensorrt" / f"timing-{key}.cache")
        out[graph] = engine.as_posix()
    return out


class TensorRTRuntime(Runtime):
    name = "tensorrt"

    def __init__(self, bundle, manifest: BundleManifest, device: str = "CUDA", precision: Optional[str] = None,
                 threads: Optional[int] = None, canvas_input: bool = False):
        super().__init__(bundle, manifest, device, precision or "fp16", threads, canvas_input)
        trt = require("tensorrt", self.extra, "The TensorRT backend")
        self.torch = require("torch", "train", "TensorRT buffers (the backend uses torch CUDA tensors)")
        if not self.torch.cuda.is_available():
            raise BundleError("the TensorRT backend needs a CUDA GPU")
        engines = build_engines(self.bundle, manifest, self.precision)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engines = {g: runtime.deserialize_cuda_engine((self.bundle / p).read_bytes()) for g, p in engines.items()}
        # an execution context holds one inference's shapes and addresses: one per calling
        # thread at a time, from a pool that grows to the number of concurrent callers
        self.contexts = {g: Pool(e.create_execution_context) for g, e in self.engines.items()}
        self.streams = Pool(self.torch.cuda.Stream)

    def run(self, graph: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays = self.check_inputs(graph, inputs)
        with self.contexts[graph].take() as context, self.streams.take() as stream, self.torch.cuda.stream(stream):
            return self._run(graph, arrays, context, stream)

    def _run(self, graph: str, arrays: Mapping[str, np.ndarray], context, stream) -> dict[str, np.ndarray]:
        """One inference on ``stream`` (the current stream: copies and buffers go on it too)."""
        torch = self.torch
        keep = []
        for name, a in arrays.items():
            t = torch.from_numpy(a).cuda()
            keep.append(t)
            context.set_input_shape(name, tuple(a.shape))
            context.set_tensor_address(name, t.data_ptr())
        outputs = {}
        for name in self.output_names_of[graph]:
            shape = tuple(context.get_tensor_shape(name))
            outputs[name] = torch.empty(shape, dtype=torch.float32, device="cuda")
            context.set_tensor_address(name, outputs[name].data_ptr())
        if not context.execute_async_v3(stream.cuda_stream):
            raise BundleError(f"TensorRT failed to run the {graph} engine")
        stream.synchronize()
        return {k: v.cpu().numpy() for k, v in outputs.items()}
