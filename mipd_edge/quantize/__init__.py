"""INT8: NNCF post-training quantization, quantization-aware training and accuracy control,
plus ONNX Runtime's static Q/DQ quantization. ``quantize_bundle`` is the entry point."""

from .bundle import quantize_bundle

__all__ = ["quantize_bundle"]
