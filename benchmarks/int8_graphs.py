"""Which graphs gain from INT8: each graph of a bundle timed alone in FP32 and INT8, per runtime.

    python benchmarks/int8_graphs.py --bundle runs/quickstart/bundle-int8 --data runs/quickstart/data

The encoder's INT8 graphs are the bundle's (NNCF on the OpenVINO IR, NNCF Q/DQ in ONNX);
the encoder is also quantized with ONNX Runtime's own static quantizer (u8 activations,
s8 weights), and the decoder with NNCF for both runtimes, calibrated on the decoder's real
inputs (the encoder's memory of calibration images and the role queries of their top-1
verb). Every variant is timed alone at batch 1 (median of a few hundred calls), in
interleaved rounds. ``mipd-edge quantize`` makes INT8 only the graphs that gain here.
Writes ``int8_graphs.json`` beside the bundle's parent directory and prints the table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from mipd_edge.deploy.bundle import BundleManifest, read_manifest
from mipd_edge.deploy.postprocess import SituationDecoder
from mipd_edge.deploy.preprocess import Preprocess
from mipd_edge.deploy.runtimes import load_runtime
from mipd_edge.machine import device_info
from mipd_edge.quantize.calibration import calibration_images
from mipd_edge.quantize.ptq import quantize_onnx_ort
from mipd_edge.tables import render_table
from mipd_edge.vocabulary import Vocabulary


def decoder_inputs(bundle: Path, manifest: BundleManifest, images: np.ndarray) -> list[dict[str, np.ndarray]]:
    """The decoder's inputs as the Predictor feeds them: memory, and the top-1 verb's role queries."""
    vocabulary = Vocabulary.load(bundle / manifest.vocabulary)
    decoder = SituationDecoder(vocabulary, manifest.verb_scale, manifest.noun_scale, manifest.max_roles)
    items = []
    with load_runtime("onnxruntime", bundle, manifest, precision="fp32") as runtime:
        for i in range(len(images)):
            encoded = runtime.run("encoder", {"images": images[i:i + 1]})
            ranked, _ = decoder.rank_verbs(encoded["glance"])
            roles, verb, mask = decoder.role_inputs([ranked[0][0]])
            items.append({"memory": encoded["memory"], "role_emb": roles, "verb_emb": verb, "role_mask": mask})
    return items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default="runs/quickstart/bundle-int8")
    parser.add_argument("--data", default="runs/quickstart/data")
    parser.add_argument("--calib-size", type=int, default=64)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    import nncf
    import onnx
    import onnxruntime as ort
    import openvino as ov

    bundle = Path(args.bundle)
    manifest = read_manifest(bundle)
    if "openvino-int8" not in manifest.graphs or "onnx-int8" not in manifest.graphs:
        raise SystemExit(f"int8_graphs: {bundle} needs ONNX and OpenVINO INT8 graphs (mipd-edge quantize)")
    images = calibration_images(Path(args.data), manifest.task.name, Preprocess.from_json(manifest.preprocess),
                                args.calib_size, progress=False)
    items = decoder_inputs(bundle, manifest, images)
    core = ov.Core()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        quantized = nncf.quantize(core.read_model(str(bundle / "openvino" / "decoder.xml")),
                                  nncf.Dataset([list(x.values()) for x in items]), subset_size=len(items),
                                  preset=nncf.QuantizationPreset.MIXED, model_type=nncf.ModelType.TRANSFORMER)
        ov.save_model(quantized, str(tmp / "decoder.int8.xml"))
        onnx.save(nncf.quantize(onnx.load(str(bundle / "decoder.onnx")), nncf.Dataset(items), subset_size=len(items),
                                preset=nncf.QuantizationPreset.MIXED, model_type=nncf.ModelType.TRANSFORMER),
                  str(tmp / "decoder.int8.onnx"))
        quantize_onnx_ort(bundle / "encoder.onnx", tmp / "encoder.ort.onnx", images)

        encoder_in, decoder_in = {"images": images[:1]}, items[0]
        calls = {}
        for name, path, graph in (("encoder fp32", bundle / "openvino/encoder.xml", "encoder"),
                                  ("encoder int8 (NNCF)", bundle / "openvino/encoder.int8.xml", "encoder"),
                                  ("decoder fp32", bundle / "openvino/decoder.xml", "decoder"),
                                  ("decoder int8 (NNCF)", tmp / "decoder.int8.xml", "decoder")):
            model = core.read_model(str(path))
            model.reshape({i.get_any_name(): [1, *list(i.get_partial_shape())[1:]] for i in model.inputs})
            request = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY"}).create_infer_request()
            inputs = list((encoder_in if graph == "encoder" else decoder_in).values())
            calls[("openvino", name)] = lambda r=request, x=inputs: r.infer(x)
        for name, path, graph in (("encoder fp32", bundle / "encoder.onnx", "encoder"),
                                  ("encoder int8 (NNCF Q/DQ)", bundle / manifest.graphs["onnx-int8"]["encoder"],
                                   "encoder"),
                                  ("encoder int8 (ONNX Runtime static u8/s8)", tmp / "encoder.ort.onnx", "encoder"),
                                  ("decoder fp32", bundle / "decoder.onnx", "decoder"),
                                  ("decoder int8 (NNCF Q/DQ)", tmp / "decoder.int8.onnx", "decoder")):
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            inputs = encoder_in if graph == "encoder" else decoder_in
            calls[("onnxruntime", name)] = lambda s=session, x=inputs: s.run(None, x)
        samples: dict = {k: [] for k in calls}
        for _ in range(3):  # interleaved rounds: a slow phase of the machine falls on every variant
            for key, call in calls.items():
                for _ in range(20):
                    call()
                for _ in range(args.calls // 3):
                    start = time.perf_counter()
                    call()
                    samples[key].append((time.perf_counter() - start) * 1e3)
    medians = {f"{b} {n}": float(np.median(v)) for (b, n), v in samples.items()}
    table = [["runtime", "graph", "p50 ms"]] + [[*k.split(" ", 1), f"{v:.3f}"] for k, v in medians.items()]
    device = device_info()
    print(f"{device['cpu']} ({' '.join(device['cpu_features'])}), batch 1, each graph alone")
    print(render_table(table, markdown=False, left=2))
    out = bundle.parent / "int8_graphs.json"
    out.write_text(json.dumps({"device": device, "bundle": str(bundle), "p50_ms": medians}, indent=1))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
