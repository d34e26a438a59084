"""Teachers: vision-language models with a global image feature, patch features and text
features, in one shared space where the model has one (DESIGN section 4).

Four kinds, behind one interface:

* ``SynthSituTeacher``: the built-in teacher, a larger network that ``mipd-edge
  train-teacher`` trains on *all* SynthSitu verbs. It stands in for a foundation model,
  which cannot be downloaded here; its text tower is the bundled MiniLM.
* ``HFClipTeacher``: a transformers CLIP or SigLIP checkpoint from a local directory.
* ``OpenClipTeacher``: an open_clip model from a local checkpoint file.
* ``Blip2Teacher``: the authors' teacher, BLIP-2's vision tower, with a CLIP model's text
  tower; its image features are not in a text space (``image_text`` is False).

Nothing is ever fetched from a hub: every loader insists on local files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..deploy.preprocess import Preprocess
from ..errors import MipdEdgeError, require
from ..files import WEIGHTS_FILE
from ..text import ClipTextEncoder, TextEncoder, fingerprint, local_transformers_config, model_text_encoder
from .backbones import CLIP_NORMALIZATION, prefixed_tensors, processor_normalization
from .store import load_state, load_weights, read_model_info
from .student import Student, StudentConfig

TEACHER_CONFIG = StudentConfig(name="synthsitu-teacher", backbone="resnet18", width=0.75, d_model=256, heads=8,
                               enc_layers=3, dec_layers=2, ffn=512)


class TeacherNet(Student):
    """The SynthSitu teacher's network: a larger student plus a head that puts every image
    patch into the text space, so role regions can be compared with noun descriptions."""

    def __init__(self, cfg: StudentConfig):
        super().__init__(cfg)
        self.patch_head = nn.Linear(cfg.d_model, cfg.text_dim)

    def patches(self, memory: torch.Tensor) -> torch.Tensor:
        g = self.cfg.image_size // 16
        return F.normalize(self.patch_head(memory), dim=-1).reshape(memory.shape[0], g, g, -1)


def roi_pool(patches: torch.Tensor, boxes: torch.Tensor, has_box: torch.Tensor) -> torch.Tensor:
    """Mean patch feature inside each role's box (the whole image for a role without one).

    ``patches`` (B, h, w, D); ``boxes`` (B, R, 4) cx, cy, w, h in [0, 1]; -> (B, R, D), unit norm.
    A box smaller than a cell takes the cell under its centre.
    """
    b, h, w, d = patches.shape
    ys = (torch.arange(h, dtype=patches.dtype, device=patches.device) + 0.5) / h
    xs = (torch.arange(w, dtype=patches.dtype, device=patches.device) + 0.5) / w
    cx, cy, bw, bh = [t[..., None, None] for t in boxes.unbind(-1)]  # (B, R, 1, 1)
    inside_y = (ys[:, None] >= cy - bh / 2) & (ys[:, None] <= cy + bh / 2)
    inside_x = (xs[None, :] >= cx - bw / 2) & (xs[None, :] <= cx + bw / 2)
    mask = (inside_y & inside_x).to(patches.dtype)  # (B, R, h, w)
    centre = ((ys[:, None] - cy).abs() <= 0.5 / h) & ((xs[None, :] - cx).abs() <= 0.5 / w)
    mask = torch.where(mask.flatten(2).sum(-1, keepdim=True)[..., None] > 0, mask, centre.to(patches.dtype))
    mask = torch.where(has_box[..., None, None], mask, torch.ones_like(mask))
    pooled = torch.einsum("brhw,bhwd->brd", mask, patches) / mask.flatten(2).sum(-1)[..., None].clamp(min=1)
    return F.normalize(pooled, dim=-1)


class Teacher:
    """The interface distillation needs. ``encode_images`` returns unit-norm global features
    (B, D) and patch features (B, h, w, D); ``encode_text`` unit-norm text features, (N, D)
    where ``image_text`` says image and text share the space, so that their cosine is a
    score (the teacher's verb distribution, its judgment of negatives)."""

    id: str
    dim: int
    preprocess: Preprocess
    logit_scale: float
    image_text: bool = True

    def encode_images(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        raise NotImplementedError

    def text_encoder(self) -> TextEncoder:
        """The text tower as a ``TextEncoder``: what embeds text into the teacher's space."""
        return TeacherText(self)


class TeacherText:
    """A teacher's text tower behind the ``TextEncoder`` interface."""

    def __init__(self, teacher: Teacher):
        self.teacher, self.id, self.dim = teacher, f"{teacher.id}:text", teacher.dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.teacher.encode_text(texts).numpy().astype(np.float32)


class SynthSituTeacher(Teacher):
    def __init__(self, model_dir: str | os.PathLike, text_encoder: Optional[TextEncoder] = None,
                 device: str = "cpu"):
        model_dir = Path(model_dir)
        info = read_model_info(model_dir)
        if info.get("kind") != "teacher":
            raise MipdEdgeError(f"{model_dir} is a trained {info.get('kind', 'model')}, not a teacher")
        self.net = TeacherNet(StudentConfig.from_json(info["model"]))
        load_state(self.net, load_weights(model_dir / WEIGHTS_FILE), model_dir / WEIGHTS_FILE)
        self.net.eval().to(device)
        self.text = text_encoder or model_text_encoder(info)
        if self.text.id != info["text_encoder"]:
            raise MipdEdgeError(f"{model_dir}: trained with text encoder {info['text_encoder']}, given {self.text.id}")
        self.id = f"synthsitu-teacher@{fingerprint(model_dir)}"
        self.dim = self.net.cfg.text_dim
        self.preprocess = self.net.preprocess
        self.logit_scale = float(self.net.verb_scale().detach())
        self.device = device

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        memory, glance = self.net.encode(images.to(self.device))
        return glance, self.net.patches(memory)

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        return torch.from_numpy(self.text.encode(list(texts)))

    def text_encoder(self) -> TextEncoder:
        return self.text  # its space is its text encoder's: the same id lets caches be shared




class HFClipTeacher(Teacher):
    """CLIP or SigLIP in the transformers format, from a local directory.

    Patch features are the last-layer tokens mapped the way the pooled feature is (CLIP:
    post-layernorm and visual projection; SigLIP: already normalised, no projection), the
    usual dense reading of a CLIP image tower.
    """

    def __init__(self, model_dir: str | os.PathLike, device: str = "cpu"):
        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise MipdEdgeError(f"{model_dir}: not a transformers model directory (no config.json)")
        transformers = require("transformers", "train", "CLIP / SigLIP teachers")
        self.model = transformers.AutoModel.from_pretrained(str(model_dir), local_files_only=True).eval().to(device)
        self.kind = self.model.config.model_type
        if self.kind not in ("clip", "siglip", "siglip2"):
            raise MipdEdgeError(f"{model_dir}: model type {self.kind!r} is not CLIP or SigLIP")
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        vision = self.model.config.vision_config
        default = CLIP_NORMALIZATION if self.kind == "clip" else ((0.5,) * 3, (0.5,) * 3)
        self.preprocess = Preprocess(vision.image_size, *processor_normalization(model_dir, default))
        self.grid = vision.image_size // vision.patch_size
        self.id = f"hf-{self.kind}@{fingerprint(model_dir)}"
        self.dim = int(getattr(self.model.config, "projection_dim", None) or vision.hidden_size)
        self.logit_scale = float(self.model.logit_scale.exp().detach())
        self.device = device

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model.get_image_features(pixel_values=images.to(self.device))
        tokens = out.last_hidden_state
        if self.kind == "clip":
            tokens = self.model.visual_projection(self.model.vision_model.post_layernorm(tokens[:, 1:]))
        patches = tokens.reshape(tokens.shape[0], self.grid, self.grid, -1)
        return F.normalize(out.pooler_output, dim=-1), F.normalize(patches, dim=-1)

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        padding = "max_length" if self.kind != "clip" else True
        tokens = self.tokenizer(list(texts), padding=padding, truncation=True, return_tensors="pt",
                                max_length=getattr(self.model.config.text_config, "max_position_embeddings", 64))
        out = self.model.get_text_features(**{k: v.to(self.device) for k, v in tokens.items()
                                              if k in ("input_ids", "attention_mask")})
        return F.normalize(out.pooler_output, dim=-1).cpu()


class OpenClipTeacher(Teacher):
    """An open_clip ViT from a local checkpoint: ``open_clip:ARCH:/path/to/weights``, ARCH one
    of open_clip's architectures or a model-config JSON file (``NAME.json``, the layout of
    open_clip's own ``model_configs``) for an architecture it does not ship.
    """

    def __init__(self, arch: str, checkpoint: str | os.PathLike, device: str = "cpu"):
        open_clip = require("open_clip", "train", "open_clip teachers (pip install open_clip_torch)")
        checkpoint = Path(checkpoint)
        if not checkpoint.is_file():
            raise MipdEdgeError(f"open_clip checkpoint not found: {checkpoint}")
        if arch.endswith(".json"):
            if not Path(arch).is_file():
                raise MipdEdgeError(f"open_clip model config not found: {arch}")
            open_clip.add_model_config(arch)
            arch = Path(arch).stem
        try:
            self.model = open_clip.create_model(arch, pretrained=str(checkpoint)).eval().to(device)
        except RuntimeError as exc:  # an unknown architecture, or weights of another model
            raise MipdEdgeError(f"open_clip {arch} from {checkpoint}: {str(exc).splitlines()[0]}") from exc
        self.tokenizer = open_clip.get_tokenizer(arch)
        visual = self.model.visual
        if not hasattr(visual, "output_tokens"):
            raise MipdEdgeError(f"{arch}: only ViT image towers give patch features")
        visual.output_tokens = True
        size = visual.image_size[0] if isinstance(visual.image_size, (tuple, list)) else visual.image_size
        patch = visual.patch_size[0] if isinstance(visual.patch_size, (tuple, list)) else visual.patch_size
        self.grid = size // patch
        self.preprocess = Preprocess(size, *CLIP_NORMALIZATION)
        self.id = f"open_clip-{arch}@{fingerprint(checkpoint)}"
        self.dim = int(visual.output_dim)
        self.logit_scale = float(self.model.logit_scale.exp().detach())
        self.device = device

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled, tokens = self.model.visual(images.to(self.device))
        if self.model.visual.proj is not None:
            tokens = tokens @ self.model.visual.proj
        patches = tokens.reshape(tokens.shape[0], self.grid, self.grid, -1)
        return F.normalize(pooled, dim=-1), F.normalize(patches, dim=-1)

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        return F.normalize(self.model.encode_text(self.tokenizer(list(texts)).to(self.device)), dim=-1).cpu()


class Blip2Teacher(Teacher):
    """The authors' teacher (their code, GitHub caicch/Ov-GSR, extracts BLIP-2 features): the vision tower of a
    transformers BLIP-2 checkpoint from a local directory, its last hidden state as the patch
    tokens and its pooled (post-layernorm [CLS]) output as the global feature. Only the
    tower's tensors are read, never the language model's. BLIP-2's vision tokens are not in a
    text space, so text comes from a CLIP model's text tower (a transformers CLIP directory),
    as the authors embed text with CLIP; image-text scores do not exist (``image_text``
    False): no soft labels and no teacher-judged negatives, only what distils the features
    themselves (``soft_weight: 0`` in the training config).

    Spec: ``blip2:/path/to/blip2:/path/to/clip``."""

    image_text = False
    logit_scale = 1.0  # there are no image-text scores to scale

    def __init__(self, model_dir: str | os.PathLike, clip_dir: str | os.PathLike, device: str = "cpu"):
        transformers = require("transformers", "train", "BLIP-2 teachers")
        model_dir = Path(model_dir)
        vision = local_transformers_config(model_dir, "blip-2", "BLIP-2 teacher").vision_config
        self.model = transformers.Blip2VisionModel(vision)
        load_state(self.model, prefixed_tensors(model_dir, "vision_model."), model_dir)
        self.model.eval().to(device)
        self.text = ClipTextEncoder(clip_dir, device)
        self.preprocess = Preprocess(vision.image_size, *processor_normalization(model_dir, CLIP_NORMALIZATION))
        self.grid = vision.image_size // vision.patch_size
        self.id = f"hf-blip-2@{fingerprint(model_dir)}+{self.text.id}"
        self.dim = int(vision.hidden_size)
        self.device = device

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(pixel_values=images.to(self.device))
        patches = out.last_hidden_state[:, 1:].reshape(images.shape[0], self.grid, self.grid, -1)
        return F.normalize(out.pooler_output, dim=-1), F.normalize(patches, dim=-1)

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        return torch.from_numpy(self.text.encode(list(texts)))

    def text_encoder(self) -> TextEncoder:
        return self.text


def load_teacher(spec: str | os.PathLike, device: str = "cpu", text_encoder: Optional[TextEncoder] = None) -> Teacher:
    """A teacher from a local path: a SynthSitu teacher directory, a transformers CLIP /
    SigLIP directory, ``open_clip:ARCH:/path/to/checkpoint`` or
    ``blip2:/path/to/blip2:/path/to/clip``."""
    spec = str(spec)
    if spec.startswith("open_clip:"):
        _, arch, checkpoint = spec.split(":", 2)
        return OpenClipTeacher(arch, checkpoint, device)
    if spec.startswith("blip2:"):
        parts = spec.split(":")
        if len(parts) != 3:
            raise MipdEdgeError(f"a BLIP-2 teacher is blip2:BLIP2_DIR:CLIP_DIR (its text tower), got {spec!r}")
        return Blip2Teacher(parts[1], parts[2], device)
    path = Path(spec)
    config = path / "config.json"
    if not config.is_file():
        raise MipdEdgeError(f"no teacher at {path}: expected a directory with config.json "
                            "(a SynthSitu teacher or a transformers CLIP / SigLIP model) or open_clip:ARCH:FILE")
    raw = json.loads(config.read_text())
    if raw.get("format") == "mipd-edge-model":
        return SynthSituTeacher(path, text_encoder, device)
    return HFClipTeacher(path, device)
