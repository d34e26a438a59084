"""Accuracy-controlled INT8: NNCF quantizes the OpenVINO encoder, measures a GSR metric on
dev with the real decoder and post-processing, and reverts the most sensitive layers to
float until the drop is within ``max_drop`` points. Choosing layers is model selection, so
it sees training verbs only: no image or name of an unseen verb."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..data.split import load_split, training_verbs
from ..data.swig import SituDataset
from ..errors import require
from ..metrics import evaluate
from ..postprocess import SituationDecoder, recognize
from ..preprocess import Preprocess
from ..runtimes import load_runtime
from ..vocabulary import Vocabulary

log = logging.getLogger(__name__)


def quantize_openvino_with_accuracy_control(bundle: Path, manifest: Mapping[str, Any], out_xml: Path,
                                            calibration: np.ndarray, data_dir: Path, max_drop: float,
                                            metric: str = "grnd_value", split: str = "dev") -> dict[str, Any]:
    ov = require("openvino", "openvino", "OpenVINO INT8")
    nncf = require("nncf", "train", "NNCF quantization")
    preprocess = Preprocess.from_json(manifest["preprocess"])
    vocabulary = Vocabulary.load(bundle / manifest["vocabulary"])
    # accuracy control selects a model: it sees training verbs only (their images, their names)
    split_file = Path(data_dir) / "splits.json"
    allowed = training_verbs(load_split(split_file)) if split_file.is_file() else vocabulary.verbs
    vocabulary = vocabulary.subset([v for v in vocabulary.verbs if v in set(allowed)])
    decoder = SituationDecoder(vocabulary, manifest["scales"]["verb"], manifest["scales"]["noun"],
                               int(manifest["max_roles"]))
    fp32 = load_runtime("openvino", bundle, manifest, precision="fp32", inference_precision="f32")
    dev = SituDataset(data_dir, split)
    items = []
    for i, name in enumerate(dev.names):
        if dev.annotations[name].verb not in vocabulary.frames:
            continue
        sample = dev[i]
        x, letterbox = preprocess(sample.image)
        items.append((sample.name, x[None], letterbox))

    def validate(compiled, data) -> float:
        memory_port, glance_port = compiled.output("memory"), compiled.output("glance")
        predictions = {}
        for name, x, letterbox in data:
            out = compiled(x)
            situation = recognize(out[memory_port], out[glance_port], fp32.decode, [letterbox], decoder)[0]
            predictions[name] = situation.to_json()
        return evaluate({n: dev.annotations[n] for n in predictions}, dev.space, predictions)["all"]["top1"][metric]

    model = ov.Core().read_model(str(bundle / manifest["graphs"]["openvino"]["encoder"]))
    quantized = nncf.quantize_with_accuracy_control(
        model, nncf.Dataset([calibration[i:i + 1] for i in range(len(calibration))]), nncf.Dataset(items),
        validate, max_drop=max_drop, drop_type=nncf.DropType.ABSOLUTE, subset_size=len(calibration),
        preset=nncf.QuantizationPreset.MIXED, model_type=nncf.ModelType.TRANSFORMER)
    ov.save_model(quantized, str(out_xml))
    fp32.close()
    return {"metric": f"top1 {metric} on {split}, training verbs only", "max_drop": max_drop,
            "images": len(items)}
