"""Bundles of architectures with untrained weights, timed against the distilled student: the
``reference`` size, the authors' student, a student on a CLIP ViT-B/16 image tower. Latency
only: the benchmark marks their rows so and claims no accuracy for them."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from mipd_edge.config import ExportConfig, QuantizeConfig
from mipd_edge.context import RunContext
from mipd_edge.pipeline import Pipeline, manifest_summary, stage


def make_comparison_bundle(pipe: Pipeline, name: str = "reference", formats: Sequence[str] = (), int8: bool = False,
                           calib_size: int = 16) -> Path:
    """Architecture ``name`` (a student config: ``reference``, ``authors``, ``clip``) with
    untrained weights, shaped like the pipeline's MIPD student, as a bundle
    (``bundle-NAME``): torch only unless ``formats`` says more; with ``int8`` also INT8 graphs
    calibrated on ``calib_size`` images, whose accuracy is not measured. The CLIP tower is
    saved with random weights as a local CLIP directory."""
    from mipd_edge.export import export_bundle
    from mipd_edge.models.backbones import HF_CLIP, VITS
    from mipd_edge.models.store import read_model_info, save_model
    from mipd_edge.models.student import STUDENT_CONFIGS, create_student
    from mipd_edge.quantize import quantize_bundle

    out, student = pipe.workdir / f"bundle-{name}", pipe.workdir / "student-mipd"

    def run() -> dict:
        info = read_model_info(student)
        shape = {k: info["model"][k] for k in ("text_dim", "max_roles")}
        backbone = STUDENT_CONFIGS[name].backbone
        if backbone not in VITS and backbone != HF_CLIP:  # a ViT keeps the input size it was made for
            shape["image_size"] = info["model"]["image_size"]
        if backbone == HF_CLIP:
            shape["backbone_weights"] = str(random_clip(pipe.workdir / "clip-vit-b-16-untrained"))
        model = create_student(name, **shape)
        folder = pipe.workdir / f"{name}-untrained"
        save_model(folder, model, {**info, "model": model.cfg.to_json(), "method": "untrained", "epoch": None,
                                   "selection_score": None})
        if not int8:
            return manifest_summary(export_bundle(folder, out, ExportConfig(formats=formats),
                                                  run=RunContext(overwrite=True), data=pipe.data))
        fp32 = pipe.workdir / f"bundle-{name}-fp32"
        export_bundle(folder, fp32, ExportConfig(formats=formats), run=RunContext(overwrite=True), data=pipe.data)
        return manifest_summary(quantize_bundle(folder, pipe.data, out,
                                                QuantizeConfig(method="ptq", calib_size=calib_size, formats=formats,
                                                               from_bundle=fp32, evaluate=False),
                                                run=RunContext(progress=pipe.progress, overwrite=True)))
    stage(pipe.workdir, f"bundle-{name}", {"student": pipe.stage_params("student-mipd"), "formats": list(formats),
                                           "int8": int8, "calib": calib_size if int8 else None}, run)
    return out


def random_clip(out: Path) -> Path:
    """A transformers CLIP ViT-B/16 (image 224, text as CLIP's) with random weights, saved as a
    local directory: what a CLIP student is built on when only its speed is measured."""
    import torch
    import transformers

    if not (out / "config.json").is_file():
        torch.manual_seed(0)
        vision = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                      image_size=224, patch_size=16, hidden_act="quick_gelu")
        config = transformers.CLIPConfig(vision_config=vision, projection_dim=512)
        transformers.CLIPModel(config).save_pretrained(out)
    return out
