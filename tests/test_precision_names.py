"""Precision names mean what they say on every CPU: ``fp32`` is FP32 arithmetic (OpenVINO
computes FP32 graphs in bf16 on CPUs with bf16 units unless told otherwise), ``int8`` keeps its
unquantized layers in FP32, and ``bf16`` is a precision of its own, offered only where the CPU
computes it natively and used by ``auto`` only within the bundle's accuracy gate."""

import pytest

from mipd_edge import BundleError, Predictor
from mipd_edge.deploy.bundle import read_manifest
from mipd_edge.deploy.runtimes.selection import candidates
from mipd_edge.machine import bf16_capable


def hints(predictor) -> set[str]:
    return {g.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
            for g in predictor.runtime.graphs.values()}


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_openvino_fp32_and_int8_compute_in_fp32(tiny_bundle, precision):
    with Predictor(tiny_bundle, backend="openvino", precision=precision) as predictor:
        assert hints(predictor) == {"f32"}


def test_bf16_is_its_own_precision_where_the_cpu_has_it(tiny_bundle, tiny_world):
    image = sorted((tiny_world / "data" / "images").iterdir())[0]
    if bf16_capable():
        with Predictor(tiny_bundle, backend="openvino", precision="bf16") as predictor:
            assert hints(predictor) == {"bf16"} and predictor.precision == "bf16"
            assert predictor(image).verb in predictor.vocabulary.frames
    else:
        with pytest.raises(BundleError, match="AVX512_BF16 or AMX-BF16"):
            Predictor(tiny_bundle, backend="openvino", precision="bf16")
    with pytest.raises(BundleError, match="onnxruntime cannot run bf16"):
        Predictor(tiny_bundle, backend="onnxruntime", precision="bf16")


def test_quantize_records_bf16_where_it_measures_it_and_auto_gates_it(tiny_bundle):
    manifest = read_manifest(tiny_bundle)
    assert ("bf16_minus_fp32_top1" in manifest.metrics) == bf16_capable()
    pairs, left_out = candidates(tiny_bundle, manifest, "CPU")
    reason = left_out.get("openvino bf16")
    if not bf16_capable():
        assert "AVX512_BF16" in reason and ("openvino", "bf16") not in pairs
    else:
        drop = manifest.metrics["bf16_minus_fp32_top1"]
        inside = all(-drop[k] <= 1.0 for k in ("verb", "grnd_value"))
        assert (("openvino", "bf16") in pairs) == inside
        assert inside or reason.startswith("BF16 left out: it loses")
