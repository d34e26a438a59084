"""A quantization-aware-trained Q/DQ graph as a float graph whose weights lie on their INT8 grid.

NNCF's QAT graph quantizes what OpenVINO fuses: the inputs of each convolution and matrix
product, not their outputs, and its convolutions keep their batch normalisation apart. ONNX
Runtime's CPU kernels fuse only a full DQ -> op -> Q pattern, so on that graph it runs every
convolution in float behind dequantize steps: slower than the FP32 graph. Its own quantizer
writes the pattern it fuses, from a float graph. This module gives it the QAT model as such a
graph: each weight replaced by its quantized-then-dequantized value (exactly the values QAT
trained the model to work with) and each activation quantizer replaced by a clip to its range.
The clip matters: QAT learns activation ranges that cut off outliers and the model comes to rely
on the cut (dropping them took a small QAT student's glance cosine against its own Q/DQ graph
to 0.78); the rounding inside that range is left to ONNX Runtime's calibration.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import require


def constants(graph) -> dict[str, np.ndarray]:
    """The graph's constant values by name: initializers, Constant nodes and Identity copies of them."""
    from onnx import numpy_helper

    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        elif node.op_type == "Identity" and node.input[0] in values:
            values[node.output[0]] = values[node.input[0]]
    return values


def quantized_dequantized(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int) -> np.ndarray:
    """``DequantizeLinear(QuantizeLinear(x))`` as ONNX defines them (round half to even, saturate)."""
    if scale.ndim == 1 and x.ndim > 1:
        shape = [1] * x.ndim
        shape[axis] = -1
        scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
    info = np.iinfo(zero_point.dtype)
    zp = zero_point.astype(np.float32)
    q = np.clip(np.rint(x.astype(np.float32) / scale) + zp, info.min, info.max)
    return ((q - zp) * scale).astype(np.float32)


def quantizer_range(scale: np.ndarray, zero_point: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The float values a per-tensor quantizer can give: ``[(qmin - zp) * scale, (qmax - zp) * scale]``."""
    if scale.size != 1:
        raise ValueError("an activation quantized per channel cannot be folded to a clip")
    info = np.iinfo(zero_point.dtype)
    zp, s = float(zero_point.reshape(-1)[0]), float(scale.reshape(-1)[0])
    return np.float32((info.min - zp) * s), np.float32((info.max - zp) * s)


def live(nodes: list, outputs: set[str]) -> list:
    """``nodes`` (in topological order) without those whose results nothing uses, such as the
    constants only the removed quantizers read."""
    needed, kept = set(outputs), []
    for node in reversed(nodes):
        if needed & set(node.output):
            kept.append(node)
            needed.update(node.input)
    return kept[::-1]


def grid_float_graph(qdq_path: Path, out_path: Path) -> None:
    """Write ``qdq_path``'s graph without its quantizers: weights on their grid, activations clipped to their ranges."""
    onnx = require("onnx", "train", "ONNX graph rewriting")
    from onnx import helper, numpy_helper

    model = onnx.load(str(qdq_path))
    graph = model.graph
    values = constants(graph)
    producer = {name: node for node in graph.node for name in node.output}
    replaced: dict[str, str] = {}
    dropped: set[int] = set()
    grids, clips = [], {}
    for dq in graph.node:
        q = producer.get(dq.input[0]) if dq.op_type == "DequantizeLinear" else None
        if q is None or q.op_type != "QuantizeLinear":
            continue
        dropped.update((id(q), id(dq)))
        source = q.input[0]
        scale = values[q.input[1]].astype(np.float32)
        zero_point = values[q.input[2]] if len(q.input) > 2 and q.input[2] else np.zeros(scale.shape, np.uint8)
        if source not in values:  # an activation: clipped to what its quantizer passes
            name = f"{dq.output[0]}.clip"
            low, high = quantizer_range(scale, zero_point)
            grids += [numpy_helper.from_array(low, f"{name}.min"), numpy_helper.from_array(high, f"{name}.max")]
            clips[id(dq)] = helper.make_node("Clip", [source, f"{name}.min", f"{name}.max"], [dq.output[0]], name=name)
            continue
        axis = next((a.i for a in q.attribute if a.name == "axis"), 1)
        name = f"{dq.output[0]}.grid"
        grids.append(numpy_helper.from_array(quantized_dequantized(values[source], scale, zero_point, axis), name))
        replaced[dq.output[0]] = name
    nodes = [clips.get(id(node), node) for node in graph.node if id(node) not in dropped or id(node) in clips]
    for node in nodes:
        for i, name in enumerate(node.input):
            while name in replaced:
                name = replaced[name]
            node.input[i] = name
    outputs = {o.name for o in graph.output}
    if outputs & set(replaced):
        raise ValueError(f"{qdq_path}: a graph output is quantized; cannot fold it")
    nodes = live(nodes, outputs)
    used = {name for node in nodes for name in node.input}
    initializers = [i for i in list(graph.initializer) + grids if i.name in used]
    del graph.node[:], graph.initializer[:]
    graph.node.extend(nodes)
    graph.initializer.extend(initializers)
    onnx.checker.check_model(model)
    onnx.save(model, str(out_path))
