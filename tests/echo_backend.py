"""A backend added from outside the package (tests/test_extending.py): ONNX Runtime under
another name, so that what it answers can be checked against ONNX Runtime's own."""

from mipd_edge.deploy.runtimes.onnxruntime import OnnxRuntime


class EchoRuntime(OnnxRuntime):
    pass
