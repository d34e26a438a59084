"""torch -> bundle: ONNX graphs, OpenVINO IR, TensorRT engines, each verified before it counts.

The student is exported as two graphs with stable names (``deploy.tasks``): the encoder
(images -> memory tokens, glance embedding) and the decoder (memory, role and verb
embeddings, role mask -> noun embeddings, boxes, box-exists logits; for an HOI student,
memory -> every grid cell's boxes, object and verb embeddings and interaction logit). The decoder is
always exported with a dynamic batch, because ranking five verbs decodes five role sets;
the encoder is batch 1 unless ``dynamic_batch`` (torch's dynamo exporter fixes a dimension
whose example size is 1, so examples use batch 2 whenever the batch is to stay free).

Every graph is run on real pre-processed images with ONNX Runtime or OpenVINO and
compared with torch; the largest difference and the tolerance go into ``bundle.json``,
and a graph outside the tolerance fails the export.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from .config import ExportConfig
from .context import RunContext
from .data.layouts import dataset_layout
from .deploy.bundle import BundleManifest, graph_files, write_manifest
from .deploy.preprocess import Preprocess
from .deploy.runtimes import load_runtime
from .deploy.tasks import GSR, BundleTask
from .errors import BundleError, DatasetError, MipdEdgeError
from .export_formats import EXPORT_FORMATS
from .files import WEIGHTS_FILE, PathLike, atomic_output, check_output
from .graphs import EncoderGraph, graph_task
from .models.store import load_student
from .models.student import Student, build_student
from .text import load_text_encoder, model_text_encoder, text_encoder_spec
from .vocabulary import Vocabulary

log = logging.getLogger(__name__)

TOLERANCE = {"fp32": 1e-3, "fp16": 5e-2}  # max |difference| of any output against torch


def export_onnx(model: nn.Module, graph: str, path: Path, inputs: tuple[torch.Tensor, ...], dynamic: bool,
                dynamo: bool = True, task: BundleTask = GSR) -> None:
    """One graph to ONNX with the bundle's input and output names.

    ``dynamo=False`` takes the TorchScript exporter, the one that traces through NNCF's
    hooks in a stripped QAT model (writing its fake quantizers as Q/DQ pairs).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    graph_inputs, graph_outputs = task.inputs[graph], task.outputs[graph]
    names = {"input_names": graph_inputs, "output_names": graph_outputs}
    with torch.no_grad():
        if not dynamo:
            axes = {n: {0: "batch"} for n in graph_inputs + graph_outputs} if dynamic else None
            torch.onnx.export(model, inputs, str(path), dynamo=False, dynamic_axes=axes, opset_version=17, **names)
            return
        dims = None
        if dynamic:
            batch = torch.export.Dim("batch", min=1, max=4096)
            dims = {name: {0: batch} for name in graph_inputs}
        with warnings.catch_warnings():  # the exporter notes that all inputs share one batch axis: as meant
            warnings.filterwarnings("ignore", message=r"# The axis name: .* will not be used")
            torch.onnx.export(model, inputs, str(path), dynamo=True, dynamic_shapes=dims, external_data=False,
                              verbose=False, **names)


def export_graphs(model: Student, out: Path, dynamic_batch: bool) -> dict[str, str]:
    model, task = model.eval(), graph_task(model)
    graphs = {}
    for graph, module, dynamic in (
        ("encoder", EncoderGraph(model), dynamic_batch),
        ("decoder", task.decoder_graph(model), True),
    ):
        inputs = task.example_inputs(model, 2 if dynamic else 1)[graph]
        graphs[graph] = graph_files("onnx")[graph]
        export_onnx(module.eval(), graph, out / graphs[graph], inputs, dynamic, task=task.bundle)
    log.info("exported ONNX graphs -> %s", out)
    return graphs


def reference_outputs(model: Student, images: np.ndarray, vocabulary: Vocabulary) -> dict[str, tuple[dict, dict]]:
    """torch's inputs and outputs of both graphs on real images (the task chooses the
    decoder's inputs: a situation decoder gets each image's top-1 verb's role queries)."""
    task = graph_task(model)
    with torch.no_grad():
        memory, glance = model.encode(torch.from_numpy(images))
        dec_in = task.reference_decoder_inputs(model, memory, glance, vocabulary)
        decoded = model.decode(*(torch.from_numpy(a) for a in dec_in.values()))
    return {"encoder": ({"images": images}, {"memory": memory.numpy(), "glance": glance.numpy()}),
            "decoder": (dec_in, {n: t.numpy() for n, t in zip(task.bundle.outputs["decoder"], decoded)})}


def verify(runtime, reference: dict[str, tuple[dict, dict]], tolerance: float, what: str,
           static_batch: bool) -> dict[str, Any]:
    """Max |difference| per graph between ``runtime`` and torch; a BundleError beyond tolerance."""
    diffs = {}
    for graph, (inputs, expected) in reference.items():
        if graph == "encoder" and static_batch:  # a batch-1 graph is checked image by image
            got = [runtime.run(graph, {k: v[i:i + 1] for k, v in inputs.items()}) for i in range(len(inputs["images"]))]
            got = {k: np.concatenate([g[k] for g in got]) for k in expected}
        else:
            got = runtime.run(graph, inputs)
        diffs[graph] = max(float(np.abs(got[k] - expected[k]).max()) for k in expected)
    worst = max(diffs.values())
    if not worst <= tolerance:
        raise BundleError(f"{what} does not match torch: max |difference| {worst:.3g} > tolerance {tolerance:g} "
                          f"(per graph: {diffs}); the export is not usable")
    log.info("verified %s against torch: max |difference| %.2g (tolerance %g)", what, worst, tolerance)
    return {"max_abs_diff": diffs, "tolerance": tolerance, "images": len(reference["encoder"][0]["images"])}


def verification_images(data_dir: Path, task: str, preprocess: Preprocess, count: int = 8) -> np.ndarray:
    """``count`` real images spread over the task's dataset's dev split (an HOI dataset's test
    split: HICO-DET has no dev), pre-processed."""
    from .data.layouts import dataset_layout

    images = dataset_layout(task).images(data_dir, "dev")
    picks = np.linspace(0, len(images) - 1, min(count, len(images))).astype(int)
    return np.stack([preprocess(images[int(i)]())[0] for i in picks])


def export_bundle(model_dir: PathLike, out: PathLike, cfg: ExportConfig = ExportConfig(),
                  data: Optional[PathLike] = None, run: RunContext = RunContext(),
                  space: Optional[PathLike] = None) -> BundleManifest:
    """Write a verified bundle of a trained student; returns its manifest. ``data``: the
    dataset whose images verify the graphs (default: the one the student trained on);
    ``space``: a vocabulary to ship instead of the training data's.

    The bundle is built in a temporary folder beside ``out`` and renamed into place when it
    is complete and verified: an existing ``out`` (replaced whole, only with ``run.overwrite``)
    never mixes old files with new ones, and a failed export leaves nothing behind."""
    check_output(out, run.overwrite, "bundle folder")
    with atomic_output(out) as tmp:
        tmp.mkdir()
        return write_bundle(model_dir, tmp, cfg, data, space)


def write_bundle(model_dir: PathLike, out: PathLike, cfg: ExportConfig, data: Optional[PathLike],
                 space: Optional[PathLike] = None) -> BundleManifest:
    """``export_bundle``'s work, into an empty folder ``out``."""
    model_dir, out = Path(model_dir), Path(out)
    formats, precision, dynamic_batch = cfg.formats, cfg.precision, cfg.dynamic_batch
    if precision == "int8":
        raise MipdEdgeError("INT8 bundles are made by `mipd-edge quantize` (it needs calibration images)")
    if precision not in TOLERANCE:
        raise MipdEdgeError(f"precision must be fp32, fp16 or int8, got {precision!r}")
    unknown = set(formats) - set(EXPORT_FORMATS)
    if unknown:
        raise MipdEdgeError(f"unknown formats {sorted(unknown)}; choose from {', '.join(EXPORT_FORMATS)}")
    model, info = load_student(model_dir)
    if info.get("kind") != "student":
        raise MipdEdgeError(f"{model_dir} holds a {info.get('kind')}, not a trained student")
    if cfg.image_size and cfg.image_size != model.cfg.image_size:
        model = _resized(model, cfg.image_size)
    preprocess = model.preprocess
    data_dir = Path(data) if data else Path(info.get("data", {}).get("dir", ""))
    task = graph_task(model)
    try:
        dataset_layout(task.bundle.name).check(data_dir)
    except DatasetError as exc:
        raise MipdEdgeError(f"verification needs real images: pass --data ({exc})") from None
    encoder = model_text_encoder(info)
    if encoder.id != info["text_encoder"]:
        raise MipdEdgeError(f"{model_dir} was trained with text encoder {info['text_encoder']}, found {encoder.id}")
    vocabulary = task.vocabulary(info, encoder, data_dir, space)

    out.mkdir(parents=True, exist_ok=True)
    graphs: dict[str, dict[str, str]] = {"onnx": export_graphs(model, out, dynamic_batch)} if formats else {}
    vocabulary.save(out / "vocabulary.npz")
    shutil.copyfile(model_dir / WEIGHTS_FILE, out / WEIGHTS_FILE)
    spec = text_encoder_spec(info)
    manifest = BundleManifest(
        model=model.cfg.to_json(), preprocess=preprocess.to_json(), precision=precision, graphs=graphs,
        inputs=task.bundle.inputs, outputs=task.bundle.outputs, dynamic_batch=dynamic_batch,
        scales={"verb": float(model.verb_scale().detach()), "noun": float(model.noun_scale().detach())},
        max_roles=model.cfg.max_roles, text_dim=model.cfg.text_dim, text_encoder=encoder.id, text_encoder_spec=spec,
        weights=WEIGHTS_FILE, vocabulary="vocabulary.npz", verification={},
        provenance={**{k: info.get(k) for k in ("kind", "method", "teacher", "rationales", "train", "training_verbs",
                                                "epoch", "selection_score")}, **task.provenance(info)},
        text_encoder_onnx=export_text_encoder(spec, out, encoder.id) if cfg.with_text_encoder else None,
        **task.manifest_fields(info))
    for name, fmt in EXPORT_FORMATS.items():
        if name in formats and fmt.convert is not None:
            manifest.graphs[name] = fmt.convert(out, manifest, precision)

    reference = reference_outputs(model, verification_images(data_dir, task.bundle.name, preprocess), vocabulary)
    for name, fmt in EXPORT_FORMATS.items():
        if name in manifest.graphs and fmt.verified_by is not None:
            backend, options = fmt.verified_by
            tol = TOLERANCE[precision] if fmt.holds_precision else TOLERANCE["fp32"]
            with load_runtime(backend, out, manifest, precision="fp32", **options) as runtime:
                manifest.verification[name] = verify(runtime, reference, tol, f"{name} graphs", not dynamic_batch)
    if "onnx" not in formats and "onnx" in manifest.graphs:  # exported only as the other formats' source
        for graph in ("encoder", "decoder"):
            (out / f"{graph}.onnx").unlink()
        del manifest.graphs["onnx"]
    write_manifest(out, manifest)
    log.info("bundle written: %s (%s, %s)", out, ", ".join(manifest.graphs) or "weights only", precision)
    return manifest


class PooledTextEncoder(nn.Module):
    """A sentence-transformers BERT with its mean pooling and normalisation, as one graph."""

    def __init__(self, transformer: nn.Module):
        super().__init__()
        self.transformer = transformer

    def forward(self, input_ids, attention_mask, token_type_ids):
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)


class ClipTextGraph(nn.Module):
    """A CLIP text tower with its projection and normalisation, as one graph."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        embeds = self.model(input_ids=input_ids, attention_mask=attention_mask).text_embeds
        return torch.nn.functional.normalize(embeds, dim=-1)


def export_text_encoder(spec: str, out: Path, expected_id: str) -> dict[str, Any]:
    """The bundle's text encoder (a sentence-transformers model or a CLIP text tower) as ONNX +
    tokenizer.json, checked against the original."""
    from .text import ClipTextEncoder, OnnxTextEncoder, SentenceTransformerEncoder

    encoder = load_text_encoder(spec)
    if encoder.id != expected_id or not isinstance(encoder, (SentenceTransformerEncoder, ClipTextEncoder)):
        raise MipdEdgeError(
            f"cannot export text encoder {spec!r} (id {encoder.id}) for a model trained with {expected_id}"
        )
    if isinstance(encoder, SentenceTransformerEncoder):
        module, tokenizer = PooledTextEncoder(encoder.model[0].auto_model.float()), encoder.model.tokenizer
        names = ["input_ids", "attention_mask", "token_type_ids"]
    else:
        module, tokenizer = ClipTextGraph(encoder.model.float()), encoder.tokenizer
        names = ["input_ids", "attention_mask"]
        # the file carries CLIP's own limits: 77 tokens, padded with its pad token
        tokenizer.backend_tokenizer.enable_truncation(encoder.max_length)
        tokenizer.backend_tokenizer.enable_padding(pad_id=tokenizer.pad_token_id, pad_token=tokenizer.pad_token)
    folder = out / "text_encoder"
    folder.mkdir(parents=True, exist_ok=True)
    tokens = tokenizer(["a person lifts a box", "nothing"], padding=True, return_tensors="pt")
    inputs = tuple(tokens.get(n, torch.zeros_like(tokens["input_ids"])) for n in names)
    seq = torch.export.Dim("sequence", min=2, max=512)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with torch.no_grad():
        torch.onnx.export(module.eval(), inputs, str(folder / "model.onnx"), dynamo=True, input_names=names,
                          output_names=["sentence_embedding"], dynamic_shapes={n: {0: batch, 1: seq} for n in names},
                          external_data=False, verbose=False)
    tokenizer.backend_tokenizer.save(str(folder / "tokenizer.json"))
    probe = ["someone crouches low with bent knees", "a red ball", "the agent of lifting: the person who lifts"]
    diff = float(np.abs(OnnxTextEncoder(folder, encoder.id).encode(probe) - encoder.encode(probe)).max())
    if diff > 1e-3:
        raise BundleError(f"the exported text encoder differs from {encoder.id} by {diff:.3g}")
    log.info("text encoder exported to ONNX (max |difference| %.2g)", diff)
    return {"folder": "text_encoder", "id": encoder.id, "max_abs_diff": diff}


def _resized(model: Student, size: int) -> Student:
    """The same weights at another input size (the positional grid follows the size)."""
    from dataclasses import replace

    resized = build_student(replace(model.cfg, image_size=size))
    resized.load_state_dict(model.state_dict())
    return resized.eval()

