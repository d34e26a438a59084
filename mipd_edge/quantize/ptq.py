"""Post-training quantization of the encoder graph: NNCF on the OpenVINO IR (the fastest CPU
path), NNCF on the ONNX graph (standard Q/DQ that ONNX Runtime, OpenVINO and TensorRT read),
or ONNX Runtime's own static Q/DQ quantizer (u8 activations, s8 weights, the fast layout for
its CPU kernels, which TensorRT does not take).

The decoder stays FP32 because INT8 makes it slower: it is a few per cent of the arithmetic,
and the quantize / dequantize steps cost more than they save. Each graph alone at batch 1 on
a 2-core AVX2 CPU (``benchmarks/int8_graphs.py``): decoder 1.28 ms FP32 against 1.93 ms INT8
on OpenVINO, 0.66 against 3.49 ms on ONNX Runtime; encoder 5.54 against 3.90 ms on OpenVINO,
4.39 ms FP32 against 6.31 ms for NNCF's Q/DQ and 3.22 ms for ONNX Runtime's static layout.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import require

log = logging.getLogger(__name__)


def _dataset(nncf, images: np.ndarray, named: bool = False):
    """One image per item; the ONNX backend wants inputs by name, OpenVINO positionally."""
    return nncf.Dataset([{"images": images[i:i + 1]} if named else images[i:i + 1] for i in range(len(images))])


def quantize_openvino(xml: Path, out_xml: Path, images: np.ndarray) -> None:
    ov = require("openvino", "openvino", "OpenVINO INT8")
    nncf = require("nncf", "train", "NNCF quantization")
    model = ov.Core().read_model(str(xml))
    quantized = nncf.quantize(model, _dataset(nncf, images), subset_size=len(images),
                              preset=nncf.QuantizationPreset.MIXED, model_type=nncf.ModelType.TRANSFORMER)
    ov.save_model(quantized, str(out_xml))


def quantize_onnx_nncf(onnx_path: Path, out_path: Path, images: np.ndarray) -> None:
    onnx = require("onnx", "train", "ONNX quantization")
    nncf = require("nncf", "train", "NNCF quantization")
    model = onnx.load(str(onnx_path))
    quantized = nncf.quantize(model, _dataset(nncf, images, named=True), subset_size=len(images),
                              preset=nncf.QuantizationPreset.MIXED, model_type=nncf.ModelType.TRANSFORMER)
    onnx.save(quantized, str(out_path))


def quantize_onnx_ort(onnx_path: Path, out_path: Path, images: np.ndarray) -> None:
    """ONNX Runtime's static Q/DQ layout with 7-bit weights (``reduce_range``). On CPUs without
    VNNI, ONNX Runtime multiplies u8 activations by s8 weights with VPMADDUBSW, whose 16-bit
    pair sums can saturate with full-range weights (255 x 127 x 2 > 32767; ONNX Runtime's
    quantization guide names reduce_range as the remedy): full-range weights gave a mean glance
    cosine of 0.86 against FP32 on an AVX2-only EPYC and passed on VNNI CPUs, as that predicts.
    With 7-bit weights the sums cannot saturate; on a VNNI CPU they cost no measurable time
    (1.20 against 1.17 ms) or agreement (cosine 0.9998 either way)."""
    require("onnxruntime", "onnx", "ONNX Runtime quantization")
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"images": images[i:i + 1]} for i in range(len(images))])

        def get_next(self):
            return next(self.items, None)

    prepared = out_path.with_suffix(".pre.onnx")
    # ORT's symbolic shape inference cannot follow the dynamo graph's Expand ops; ONNX's own inference can
    quant_pre_process(str(onnx_path), str(prepared), skip_symbolic_shape=True)
    # per-channel quantization asks for axis 1 of the 1-d LayerNorm weights too, and ONNX Runtime
    # warns on the root logger before it quantizes them per tensor: its business, not the user's
    quieted = MessageFilter("is out-of-range for weight")
    logging.getLogger().addFilter(quieted)
    try:
        quantize_static(str(prepared), str(out_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    finally:
        logging.getLogger().removeFilter(quieted)
        prepared.unlink(missing_ok=True)
    if quieted.dropped:
        log.debug("ONNX Runtime quantized %d 1-d weights per tensor", quieted.dropped)


class MessageFilter(logging.Filter):
    """Drops (and counts) the log records whose message holds ``text``."""

    def __init__(self, text: str):
        super().__init__()
        self.text, self.dropped = text, 0

    def filter(self, record: logging.LogRecord) -> bool:
        if self.text in record.getMessage():
            self.dropped += 1
            return False
        return True
