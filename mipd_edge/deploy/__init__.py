"""Everything a device needs to run a bundle: the Predictor, pre- and post-processing,
HOI decoding, images, drawing, streams, the bundle format and one adapter per runtime.

Nothing here imports training, model or export code, nor torch (but the PyTorch and
TensorRT backends, when chosen): an edge device with numpy, OpenCV and one runtime runs
a bundle with this package alone. ``tests/test_architecture.py`` holds it to that.
"""
