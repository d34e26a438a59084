"""Quantization-aware training of the encoder with NNCF 3.x, then a plain Q/DQ ONNX export.

``nncf.quantize`` inserts fake quantizers calibrated on training images; the quantized
encoder is then fine-tuned to reproduce the FP32 student's own outputs (self-distillation:
cosine on the glance embedding, mean squared error on the memory tokens) on the training
split; ``nncf.strip`` turns the fake quantizers into standard Quantize/DequantizeLinear,
which torch's ONNX exporter writes as a Q/DQ graph every runtime reads. (Exported before
stripping, the graph would hold OpenVINO-only FakeQuantize ops.)
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import require
from ..export import export_onnx
from ..graphs import EncoderGraph
from ..models.student import Student, build_student
from ..progress import progress_bar

log = logging.getLogger(__name__)

# NNCF compiles a C++ extension on the first fake-quantized forward pass, which on a small,
# busy machine can take longer than NNCF's default limit of 60 s
EXTENSION_LOAD_TIMEOUT_S = "900"


@dataclass(frozen=True)
class QatConfig:
    """Quantization-aware training of the encoder against its own FP32 outputs."""

    epochs: int = 1
    batch_size: int = 16
    lr: float = 1e-5
    seed: int = 0


def quantize_aware_training(model: Student, calibration: np.ndarray, train_images: np.ndarray, out_onnx: Path,
                            cfg: QatConfig = QatConfig(), dynamic_batch: bool = False,
                            progress: bool = True) -> dict[str, float]:
    epochs, batch_size, lr, seed = cfg.epochs, cfg.batch_size, cfg.lr, cfg.seed
    nncf = require("nncf", "train", "NNCF quantization-aware training")
    os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", EXTENSION_LOAD_TIMEOUT_S)
    torch.manual_seed(seed)
    teacher = EncoderGraph(model).eval()
    student = EncoderGraph(_copy(model)).eval()
    example = torch.from_numpy(calibration[:1])
    dataset = nncf.Dataset([torch.from_numpy(calibration[i:i + 1]) for i in range(len(calibration))])
    quantized = nncf.quantize(student, dataset, subset_size=len(calibration), preset=nncf.QuantizationPreset.MIXED,
                              model_type=nncf.ModelType.TRANSFORMER,
                              advanced_parameters=nncf.AdvancedQuantizationParameters(disable_bias_correction=True))
    optimizer = torch.optim.Adam(quantized.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    losses = []
    quantized.train()
    for epoch in range(epochs):
        order = rng.permutation(len(train_images))
        bar = progress_bar(range(0, len(order), batch_size), desc=f"QAT epoch {epoch + 1}/{epochs}", unit="step",
                   enabled=progress)
        for start in bar:
            x = torch.from_numpy(train_images[order[start:start + batch_size]])
            with torch.no_grad():
                ref_memory, ref_glance = teacher(x)
            memory, glance = quantized(x)
            loss = (1 - F.cosine_similarity(glance, ref_glance, dim=-1)).mean() + F.mse_loss(memory, ref_memory)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
    quantized.eval()
    stripped = nncf.strip(quantized, do_copy=False, example_input=example)
    inputs = (torch.from_numpy(np.repeat(calibration[:1], 2 if dynamic_batch else 1, axis=0)),)
    export_onnx(stripped, "encoder", out_onnx, inputs, dynamic_batch, dynamo=False)
    return {
        "first_loss": losses[0] if losses else float("nan"),
        "last_loss": float(np.mean(losses[-10:])) if losses else float("nan"),
        "steps": len(losses),
    }


def _copy(model: Student) -> Student:
    clone = build_student(model.cfg)
    clone.load_state_dict(model.state_dict())
    return clone
