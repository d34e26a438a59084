"""Backbones: a few in plain torch, and any timm model that offers stride-16 and stride-32 maps.

Each convolutional backbone returns two feature maps, stride 16 and stride 32, and says
how many channels each has (``channels``) and the mean / std its weights expect
(``normalization``, recorded in a bundle's pre-processing); the student fuses the maps so
small objects keep a 16-pixel grid. ``timm:NAME`` builds a timm model with
``features_only``; its pretrained weights only ever come from a local file. The plain-torch
ones stay for what timm does not give: a width multiplier (``edge-xs``/``edge-s`` and the
tests' quarter-width networks). Their layer names follow torchvision's, so a local
torchvision-layout checkpoint converted to safetensors loads. ``VisionTransformer`` is a
CLIP-shaped image tower with random weights, to time the authors' student; ``ClipImageTower``
is a real one, from a local transformers CLIP directory (``--student clip``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import MipdEdgeError, require
from ..text import local_transformers_config
from .layers import EncoderBlock

IMAGENET_NORMALIZATION = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CLIP_NORMALIZATION = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
TIMM_PREFIX = "timm:"


def processor_normalization(model_dir: Path, default: tuple[tuple, tuple]) -> tuple[tuple, tuple]:
    """The mean / std a transformers model directory's ``preprocessor_config.json`` records,
    else ``default``."""
    processor = Path(model_dir) / "preprocessor_config.json"
    p = json.loads(processor.read_text()) if processor.is_file() else {}
    return tuple(p.get("image_mean", default[0])), tuple(p.get("image_std", default[1]))


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1,
            act: Callable[[], nn.Module] | None = nn.ReLU) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.downsample = (nn.Sequential(nn.Conv2d(cin, width, 1, stride, bias=False), nn.BatchNorm2d(width))
                           if stride != 1 or cin != width else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet(nn.Module):
    normalization = IMAGENET_NORMALIZATION

    def __init__(self, block: type, layers: tuple[int, ...], width: float = 1.0):
        super().__init__()
        widths = [max(8, int(round(c * width))) for c in (64, 128, 256, 512)]
        self.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = widths[0]
        for i, (w, n) in enumerate(zip(widths, layers)):
            blocks = []
            for j in range(n):
                blocks.append(block(cin, w, 2 if j == 0 and i > 0 else 1))
                cin = w * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.channels = (widths[2] * block.expansion, widths[3] * block.expansion)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c4 = self.layer3(self.layer2(self.layer1(x)))
        return c4, self.layer4(c4)


class SqueezeExcite(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        hidden = max(8, c // 4)
        self.fc1 = nn.Conv2d(c, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * nn.functional.hardsigmoid(self.fc2(nn.functional.relu(self.fc1(s))))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, k: int, exp: int, cout: int, se: bool, hs: bool, stride: int):
        super().__init__()
        act = nn.Hardswish if hs else nn.ReLU
        layers: list[nn.Module] = []
        if exp != cin:
            layers.append(conv_bn(cin, exp, 1, act=act))
        layers.append(conv_bn(exp, exp, k, stride, groups=exp, act=act))
        if se:
            layers.append(SqueezeExcite(exp))
        layers.append(conv_bn(exp, cout, 1, act=None))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


# MobileNetV3-Small: kernel, expansion, out, squeeze-excite, hard-swish, stride
MBV3_SMALL = ((3, 16, 16, True, False, 2), (3, 72, 24, False, False, 2), (3, 88, 24, False, False, 1),
              (5, 96, 40, True, True, 2), (5, 240, 40, True, True, 1), (5, 240, 40, True, True, 1),
              (5, 120, 48, True, True, 1), (5, 144, 48, True, True, 1), (5, 288, 96, True, True, 2),
              (5, 576, 96, True, True, 1), (5, 576, 96, True, True, 1))


class MobileNetV3(nn.Module):
    normalization = IMAGENET_NORMALIZATION

    def __init__(self, width: float = 1.0):
        super().__init__()
        c = lambda v: max(8, int(round(v * width / 8)) * 8)  # noqa: E731
        self.stem = conv_bn(3, c(16), 3, 2, act=nn.Hardswish)
        blocks, cin = [], c(16)
        for k, exp, out, se, hs, stride in MBV3_SMALL:
            blocks.append(InvertedResidual(cin, k, c(exp), c(out), se, hs, stride))
            cin = c(out)
        self.stage16 = nn.Sequential(*blocks[:8])  # ends at stride 16
        self.stage32 = nn.Sequential(*blocks[8:], conv_bn(cin, c(576), 1, act=nn.Hardswish))
        self.channels = (c(48), c(576))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c4 = self.stage16(self.stem(x))
        return c4, self.stage32(c4)


BACKBONES: dict[str, Callable[[float], nn.Module]] = {
    "mobilenetv3": MobileNetV3,
    "resnet18": lambda width: ResNet(BasicBlock, (2, 2, 2, 2), width),
    "resnet34": lambda width: ResNet(BasicBlock, (3, 4, 6, 3), width),
    "resnet50": lambda width: ResNet(Bottleneck, (3, 4, 6, 3), width),
}


class VisionTransformer(nn.Module):
    """A CLIP-style ViT image tower: patch embedding, [CLS] token, learned positions, pre-norm
    blocks. Returns the last hidden state (B, 1 + grid^2, width), before the post-layernorm,
    as transformers' ``CLIPVisionModel`` gives it (what the authors' ``CLIP_feat.py`` saves)."""

    normalization = CLIP_NORMALIZATION

    def __init__(self, image_size: int, patch: int, width: int, layers: int, heads: int):
        super().__init__()
        if image_size % patch:
            raise MipdEdgeError(f"image_size must be a multiple of the patch size {patch}, got {image_size}")
        grid = image_size // patch
        self.conv1 = nn.Conv2d(3, width, patch, patch, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(width) * width ** -0.5)
        self.positional_embedding = nn.Parameter(torch.randn(grid * grid + 1, width) * width ** -0.5)
        self.ln_pre = nn.LayerNorm(width)
        self.blocks = nn.ModuleList([EncoderBlock(width, heads, 4 * width) for _ in range(layers)])
        self.register_buffer("no_pos", torch.zeros(1, 1, width), persistent=False)  # positions enter once, above
        self.width, self.tokens = width, grid * grid + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_embedding.expand(x.shape[0], 1, -1), x], dim=1) + self.positional_embedding
        x = self.ln_pre(x)
        for block in self.blocks:
            x = block(x, self.no_pos)
        return x


class ClipImageTower(nn.Module):
    """The image tower of a transformers CLIP model: its last hidden state (B, 1 + grid^2,
    width), before the post-layernorm, as ``VisionTransformer`` gives it. Built from the
    tower's configuration (which the student's records, so a trained student loads without
    the CLIP directory); the pretrained weights are read once, at creation, from the local
    directory. An input size other than the tower's interpolates its position embeddings."""

    def __init__(self, config: dict, image_size: int, weights: str | Path | None = None):
        super().__init__()
        transformers = require("transformers", "train", "CLIP image towers")
        vision = transformers.CLIPVisionConfig(**config["vision"])
        if image_size % vision.patch_size:
            raise MipdEdgeError(f"image_size must be a multiple of the patch size {vision.patch_size}, "
                                f"got {image_size}")
        self.tower = transformers.CLIPVisionModel(vision)
        if weights is not None:
            state = prefixed_tensors(Path(weights), "vision_model.")
            try:
                self.tower.load_state_dict(state)
            except RuntimeError as exc:
                raise MipdEdgeError(f"{weights}: not the image tower its config.json describes "
                                    f"({str(exc).splitlines()[-1].strip()})") from exc
        self.normalization = (tuple(config["mean"]), tuple(config["std"]))
        self.interpolate = image_size != vision.image_size
        self.width, self.tokens = vision.hidden_size, (image_size // vision.patch_size) ** 2 + 1

    @staticmethod
    def config_of(model_dir: str | Path) -> dict:
        """What builds the tower of a local CLIP directory: its vision config and the mean / std
        of its pre-processing."""
        model_dir = Path(model_dir)
        vision = local_transformers_config(model_dir, "clip", "CLIP image tower").vision_config
        keys = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "image_size",
                "patch_size", "hidden_act", "layer_norm_eps", "num_channels", "projection_dim")
        mean, std = processor_normalization(model_dir, CLIP_NORMALIZATION)
        return {"vision": {k: getattr(vision, k) for k in keys}, "mean": list(mean), "std": list(std)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tower(pixel_values=x, interpolate_pos_encoding=self.interpolate).last_hidden_state


def prefixed_tensors(model_dir: Path, prefix: str) -> dict[str, torch.Tensor]:
    """The tensors under ``prefix`` of a transformers checkpoint (one safetensors file or
    shards with an index), without the prefix, reading no other tensor."""
    from safetensors import safe_open

    index = model_dir / "model.safetensors.index.json"
    files = (sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file()
             else ["model.safetensors"])
    state = {}
    for name in files:
        if not (model_dir / name).is_file():
            raise MipdEdgeError(f"{model_dir / name}: missing (only safetensors checkpoints are read)")
        with safe_open(str(model_dir / name), "pt") as f:
            state.update({k[len(prefix):]: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)})
    return state


# CLIP image towers: patch, width, layers, heads
VITS = {"clip-vit-l/14": (14, 1024, 24, 16)}
HF_CLIP = "hf-clip"  # a transformers CLIP model's image tower (ClipImageTower)


def build_vit(name: str, image_size: int, scale: float = 1.0) -> VisionTransformer:
    """A named ViT; ``scale`` < 1 narrows it (width and heads), for tests."""
    if name not in VITS:
        raise MipdEdgeError(f"unknown ViT {name!r}; choose from {sorted(VITS)}")
    patch, width, layers, heads = VITS[name]
    heads = max(1, round(heads * scale))
    return VisionTransformer(image_size, patch, heads * round(width * scale / heads), layers, heads)


class TimmBackbone(nn.Module):
    """A timm model's stride-16 and stride-32 maps (``features_only``). Pretrained weights come
    from a local file (timm's ``pretrained_cfg_overlay``), never from a hub; the mean / std are
    the ones timm records for the model's weights."""

    def __init__(self, name: str, weights: str | Path | None = None):
        super().__init__()
        timm = require("timm", "train", "timm backbones")
        kwargs: dict = {"features_only": True}
        if weights is not None:
            check_timm_weights(timm, name, weights)
            kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(weights)})
        try:
            self.body = timm.create_model(name, **kwargs)
        except (RuntimeError, ValueError) as exc:  # an unknown name, no features_only, or weights that do not fit
            raise MipdEdgeError(f"timm backbone {name!r}{f' with weights {weights}' if weights else ''}: "
                                f"{str(exc).splitlines()[0]}") from exc
        strides = self.body.feature_info.reduction()
        if 16 not in strides or 32 not in strides:
            raise MipdEdgeError(f"timm model {name!r} gives feature maps at strides {strides}; a student backbone "
                                "needs stride 16 and stride 32")
        self.levels = (strides.index(16), strides.index(32))
        cfg = self.body.pretrained_cfg
        self.channels = tuple(self.body.feature_info.channels()[i] for i in self.levels)
        self.normalization = (tuple(cfg.get("mean", IMAGENET_NORMALIZATION[0])),
                              tuple(cfg.get("std", IMAGENET_NORMALIZATION[1])))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps = self.body(x)
        return maps[self.levels[0]], maps[self.levels[1]]


def check_timm_weights(timm, name: str, path: str | Path) -> None:
    """A local checkpoint must hold every tensor of the timm model, classifier aside, in its
    shape: timm itself only warns about a file of another model and loads what fits."""
    if not Path(path).is_file():
        raise MipdEdgeError(f"backbone weights not found: {path}")
    try:
        model = timm.create_model(name)
        state = timm.models.load_state_dict(str(path))
    except (RuntimeError, ValueError, OSError) as exc:
        raise MipdEdgeError(f"timm backbone {name!r} with weights {path}: {str(exc).splitlines()[0]}") from exc
    own, heads = model.state_dict(), model.pretrained_cfg.get("classifier") or ()
    heads = (heads,) if isinstance(heads, str) else tuple(heads)
    missing = [k for k in own if k not in state and not k.startswith(heads)]
    other = [k for k in state if k not in own or own[k].shape != state[k].shape]
    if missing or other:
        raise MipdEdgeError(f"{path}: not weights of timm model {name!r} ({len(missing)} tensors missing, e.g. "
                            f"{missing[:2]}; {len(other)} unknown or of other shapes, e.g. {other[:2]})")


def build_backbone(name: str, width: float = 1.0, weights: str | Path | None = None) -> nn.Module:
    """A named plain-torch backbone narrowed by ``width``, or ``timm:NAME`` (as timm defines
    it: choose a smaller timm model rather than a width)."""
    if name.startswith(TIMM_PREFIX):
        if width != 1.0:
            raise MipdEdgeError(f"a timm backbone comes at timm's width (width 1.0), got width {width}: "
                                "choose a smaller timm model instead")
        return TimmBackbone(name[len(TIMM_PREFIX):], weights)
    if name not in BACKBONES:
        raise MipdEdgeError(f"unknown backbone {name!r}; choose from {sorted(BACKBONES)} or timm:NAME "
                            f"(ViT towers: {sorted(VITS)}, for the authors' student)")
    model = BACKBONES[name](width)
    if weights is not None:
        load_backbone_weights(model, weights)
    return model


def load_backbone_weights(model: nn.Module, path: str | Path) -> None:
    """Load a local safetensors file; classifier weights (``fc.*``) are ignored."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise MipdEdgeError(f"backbone weights not found: {path}")
    state = {k: v for k, v in load_file(str(path)).items() if not k.startswith("fc.")}
    own = model.state_dict()
    wrong = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in state]
    if wrong or missing:
        raise MipdEdgeError(f"{path}: does not fit this backbone ({len(missing)} missing tensors, "
                            f"e.g. {missing[:2]}; {len(wrong)} with other shapes, e.g. {wrong[:2]})")
    model.load_state_dict(state, strict=False)
