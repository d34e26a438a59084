"""Accuracy-controlled INT8: NNCF quantizes the OpenVINO encoder, measures the task's metric
on held-out images with the real decoder and post-processing, and reverts the most
sensitive layers to float until the drop is within ``max_drop`` points. Choosing layers is
model selection, so it sees training verbs only: no image or name of an unseen verb
(situations: dev grounded value; interactions: mAP on the held-out training images, whose
unseen pairs are already gone, scored against the seen verbs)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..data.split import dataset_split, training_verbs
from ..deploy.bundle import BundleManifest
from ..deploy.preprocess import Preprocess
from ..deploy.runtimes import load_runtime
from ..errors import require
from ..vocabulary import Vocabulary

log = logging.getLogger(__name__)

# (name, input (1, 3, S, S), letterbox) per image, and the metric of a compiled encoder on them
Validation = tuple[list[tuple[str, np.ndarray, Any]], Callable[[Any, list], float], str]


def quantize_openvino_with_accuracy_control(bundle: Path, manifest: BundleManifest, out_xml: Path,
                                            calibration: np.ndarray, data_dir: Path, max_drop: float,
                                            info: Mapping[str, Any]) -> dict[str, Any]:
    """``info`` is the trained model's (its HOI zero-shot split and training seed say which
    images were held out)."""
    ov = require("openvino", "openvino", "OpenVINO INT8")
    nncf = require("nncf", "train", "NNCF quantization")
    fp32 = load_runtime("openvino", bundle, manifest, precision="fp32")
    try:
        build = VALIDATIONS[manifest.task.name]
        items, validate, what = build(bundle, manifest, Path(data_dir), fp32, info)
        model = ov.Core().read_model(str(bundle / manifest.graphs["openvino"]["encoder"]))
        quantized = nncf.quantize_with_accuracy_control(
            model, nncf.Dataset([calibration[i:i + 1] for i in range(len(calibration))]), nncf.Dataset(items),
            validate, max_drop=max_drop, drop_type=nncf.DropType.ABSOLUTE, subset_size=len(calibration),
            preset=nncf.QuantizationPreset.MIXED, model_type=nncf.ModelType.TRANSFORMER)
        ov.save_model(quantized, str(out_xml))
    finally:
        fp32.close()
    return {"metric": what, "max_drop": max_drop, "images": len(items)}


def gsr_validation(bundle: Path, manifest: BundleManifest, data_dir: Path, fp32, info: Mapping[str, Any],
                   metric: str = "grnd_value", split: str = "dev") -> Validation:
    from ..data.swig import SituDataset
    from ..deploy.postprocess import SituationDecoder, recognize
    from ..metrics import evaluate

    preprocess = Preprocess.from_json(manifest.preprocess)
    vocabulary = Vocabulary.load(bundle / manifest.vocabulary)
    ov_split = dataset_split(data_dir, required=False)
    allowed = set(training_verbs(ov_split) if ov_split is not None else vocabulary.verbs)
    vocabulary = vocabulary.subset([v for v in vocabulary.verbs if v in allowed])
    decoder = SituationDecoder(vocabulary, manifest.verb_scale, manifest.noun_scale, manifest.max_roles)
    dev = SituDataset(data_dir, split)
    items = []
    for i, name in enumerate(dev.names):
        if dev.annotations[name].verb in vocabulary.frames:
            x, letterbox = preprocess(dev[i].image)
            items.append((name, x[None], letterbox))

    def decode(*inputs):
        out = fp32.run("decoder", dict(zip(fp32.inputs["decoder"], inputs)))
        return out["nouns"], out["boxes"], out["exists"]

    def validate(compiled, data) -> float:
        memory_port, glance_port = compiled.output("memory"), compiled.output("glance")
        predictions = {}
        for name, x, letterbox in data:
            out = compiled(x)
            predictions[name] = recognize(out[memory_port], out[glance_port], decode, [letterbox],
                                          decoder)[0].to_json()
        return evaluate({n: dev.annotations[n] for n in predictions}, dev.space, predictions)["all"]["top1"][metric]
    return items, validate, f"top1 {metric} on {split}, training verbs only"


def hoi_validation(bundle: Path, manifest: BundleManifest, data_dir: Path, fp32,
                   info: Mapping[str, Any]) -> Validation:
    from ..data.hico import image_dir
    from ..deploy.image import load_image
    from ..deploy.interactions import InteractionDecoder
    from ..hoi_metrics import evaluate_hoi
    from .calibration import hoi_selection

    preprocess = Preprocess.from_json(manifest.preprocess)
    space, seen, dev = hoi_selection(manifest, data_dir, info)
    vocabulary = Vocabulary.load(bundle / manifest.vocabulary)
    vocabulary = vocabulary.subset([v for v in vocabulary.verbs if v in seen])
    decoder = InteractionDecoder(vocabulary, manifest.verb_scale, manifest.noun_scale, space)
    folder = image_dir(data_dir, "trainval")
    items = []
    for image in dev:
        x, letterbox = preprocess(load_image(folder / image.file_name))
        items.append((image.file_name, x[None], letterbox))
    names = fp32.output_names_of["decoder"]

    def validate(compiled, data) -> float:
        memory_port = compiled.output("memory")
        predictions = {}
        for name, x, letterbox in data:
            slots = fp32.run("decoder", {"memory": compiled(x)[memory_port]})
            predictions[name] = decoder.detections([slots[n][0] for n in names], letterbox)
        return evaluate_hoi([i for i in dev if i.file_name in predictions], predictions, space)["full"] or 0.0
    return items, validate, "mAP on the held-out training images (seen classes), seen verbs only"


VALIDATIONS: dict[str, Callable[..., Validation]] = {"gsr": gsr_validation, "hoi": hoi_validation}
