"""TensorRT engines from a bundle's ONNX graphs. TensorRT cannot be installed on the
development machines (its wheels come from NVIDIA's index), so the engine test runs
wherever ``import tensorrt`` and a CUDA GPU are present and is skipped elsewhere."""

import importlib.util

import numpy as np
import pytest

from mipd_edge.deploy.bundle import read_manifest
from mipd_edge.deploy.runtimes import load_runtime
from mipd_edge.errors import MissingDependencyError

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here: the missing-backend error cannot occur")
def test_missing_tensorrt_names_the_extra(tiny_bundle):
    with pytest.raises(MissingDependencyError, match=r"mipd-edge\[tensorrt\]"):
        load_runtime("tensorrt", tiny_bundle, read_manifest(tiny_bundle))


@pytest.mark.skipif(not HAS_TENSORRT or not _cuda(),
                    reason="needs TensorRT and a CUDA GPU; TensorRT cannot be installed on the development machines")
@pytest.mark.parametrize("precision, min_cosine", [("fp32", 0.999), ("fp16", 0.99), ("int8", 0.9)])
def test_tensorrt_engines_agree_with_onnxruntime_and_are_cached(tiny_bundle, precision, min_cosine):
    manifest = read_manifest(tiny_bundle)
    size = manifest.image_size
    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    with load_runtime("onnxruntime", tiny_bundle, manifest, precision="fp32") as ort:
        expected = ort.run("encoder", {"images": x})["glance"]
    with load_runtime("tensorrt", tiny_bundle, manifest, device="CUDA", precision=precision) as trt:
        glance = trt.run("encoder", {"images": x})["glance"]
        inputs = trt.example_inputs(2)
        decoded = trt.run("decoder", inputs["decoder"])
    assert decoded["boxes"].shape[0] == 2  # the decoder engine takes a batch
    cosine = float((glance * expected).sum() / (np.linalg.norm(glance) * np.linalg.norm(expected)))
    assert cosine >= min_cosine
    engines = sorted((tiny_bundle / "tensorrt").glob(f"*{precision}*.engine"))
    stamps = [p.stat().st_mtime_ns for p in engines]
    with load_runtime("tensorrt", tiny_bundle, manifest, device="CUDA", precision=precision):
        pass
    assert engines and [p.stat().st_mtime_ns for p in engines] == stamps  # reused, not rebuilt
