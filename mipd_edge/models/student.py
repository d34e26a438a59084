"""The edge student for open-vocabulary grounded situation recognition.

CoFormer's glance-then-gaze order on an edge budget:

* a CNN backbone (stride 16 and 32 maps, fused on the 16-pixel grid) and a small
  transformer encoder over the fused tokens;
* **glance**: the pooled stride-32 map becomes an embedding in the text space; verbs are
  scored by cosine against their text embeddings (with a learned temperature), so any
  verb with a description can be scored, seen in training or not. (Pooling the CNN map
  directly, rather than a [VERB] token of the encoder, trains several times faster from
  scratch: measured on SynthSitu, 21% against 5% verb accuracy after 200 steps.)
* **gaze**: one query per role of the chosen verb, built from that role's text embedding
  plus the verb's; per role the decoder gives a noun embedding (cosine against noun text
  embeddings), a box and a box-exists logit.

``encode`` and ``decode`` are the two graphs of a bundle. The vocabulary stays outside:
the decoder takes role and verb embeddings as inputs, so editing the vocabulary never
needs a re-export.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..deploy.preprocess import Preprocess
from ..errors import MipdEdgeError, reject_unknown_keys
from .backbones import HF_CLIP, TIMM_PREFIX, VITS, ClipImageTower, build_backbone, build_vit
from .layers import MASKED, MLP, DecoderBlock, EncoderBlock, sine_positions


@dataclass(frozen=True)
class StudentConfig:
    name: str = "edge-s"
    backbone: str = "resnet18"
    width: float = 0.5
    image_size: int = 160
    d_model: int = 192
    heads: int = 4
    enc_layers: int = 2
    dec_layers: int = 2
    ffn: int = 384
    text_dim: int = 384
    max_roles: int = 6
    dropout: float = 0.1
    backbone_weights: Optional[str] = None
    backbone_config: Optional[dict] = None  # what builds a CLIP image tower without its directory
    task: str = "gsr"  # gsr: one situation per image; hoi: a set of human-object interactions

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "StudentConfig":
        reject_unknown_keys(obj, cls, "student config")
        return cls(**obj)


STUDENT_CONFIGS = {
    "edge-xs": StudentConfig(name="edge-xs", backbone="mobilenetv3", width=1.0, d_model=128, heads=4,
                             enc_layers=1, dec_layers=2, ffn=256),
    "edge-s": StudentConfig(),
    # a CoFormer-size stand-in: what a user would run without distillation to the edge
    "reference": StudentConfig(name="reference", backbone="resnet50", width=1.0, d_model=256, heads=8,
                               enc_layers=4, dec_layers=3, ffn=1024),
    # the authors' released student (GitHub caicch/Ov-GSR), for latency comparisons: see AuthorsStudent
    "authors": StudentConfig(name="authors", backbone="clip-vit-l/14", width=1.0, image_size=336, d_model=512,
                             heads=8, enc_layers=0, dec_layers=1, ffn=2048),
    # the authors' architecture on a real CLIP image tower from a local transformers directory
    # (--backbone-weights DIR), its vocabulary embedded by the same model's text tower
    "clip": StudentConfig(name="clip", backbone=HF_CLIP, width=1.0, image_size=224, d_model=256, heads=8,
                          enc_layers=0, dec_layers=1, ffn=1024),
}


def student_config(name: str = "edge-s", **overrides: Any) -> StudentConfig:
    """A named configuration plus overrides; a timm backbone comes at its own width, so the
    named configuration's width multiplier does not carry over to it."""
    if name not in STUDENT_CONFIGS:
        raise MipdEdgeError(f"unknown student {name!r}; choose from {sorted(STUDENT_CONFIGS)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    if str(given.get("backbone", "")).startswith(TIMM_PREFIX):
        given.setdefault("width", 1.0)
    cfg = replace(STUDENT_CONFIGS[name], **given)
    if cfg.backbone == HF_CLIP and cfg.backbone_config is None:
        if cfg.backbone_weights is None:
            raise MipdEdgeError("a student on a CLIP image tower needs the CLIP model's directory: "
                                "--backbone-weights DIR")
        cfg = replace(cfg, backbone_config=ClipImageTower.config_of(cfg.backbone_weights))
    return cfg


def create_student(name: str = "edge-s", **overrides: Any) -> "Student":
    """The one way to build a student: a named configuration plus overrides."""
    return build_student(student_config(name, **overrides))


def build_student(cfg: StudentConfig) -> "Student":
    """The student class of the configuration's task (and of its image tower: a ViT's tokens
    feed the decoder directly, as in the authors' student)."""
    tasks = {"gsr": Student, "hoi": HoiStudent}
    if cfg.task not in tasks:
        raise MipdEdgeError(f"unknown task {cfg.task!r}; choose from {sorted(tasks)}")
    if cfg.backbone in VITS or cfg.backbone == HF_CLIP:
        if cfg.task != "gsr":
            raise MipdEdgeError(f"a {cfg.backbone} student recognises situations (task gsr), not {cfg.task}")
        return AuthorsStudent(cfg)
    return tasks[cfg.task](cfg)


class Student(nn.Module):
    def __init__(self, cfg: StudentConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.build_encoder()
        self.decoder = nn.ModuleList([DecoderBlock(d, cfg.heads, cfg.ffn, cfg.dropout) for _ in range(cfg.dec_layers)])
        self.dec_norm = nn.LayerNorm(d)
        self.build_heads()
        # text embeddings of related verbs are close (cosine ~0.7), so the temperature starts
        # lower than CLIP's 1/0.07; it stays learnable
        self.verb_logit_scale = nn.Parameter(torch.tensor(math.log(30.0)))
        self.noun_logit_scale = nn.Parameter(torch.tensor(math.log(30.0)))
        self.build_queries()

    def build_encoder(self) -> None:
        """Backbone, fusion of its two maps on the 16-pixel grid, transformer encoder, glance head."""
        cfg, d = self.cfg, self.cfg.d_model
        if cfg.image_size % 32:
            raise MipdEdgeError(f"image_size must be a multiple of 32, got {cfg.image_size}")
        self.backbone = build_backbone(cfg.backbone, cfg.width, cfg.backbone_weights)
        c4, c5 = self.backbone.channels
        self.proj4 = nn.Conv2d(c4, d, 1)
        self.proj5 = nn.Conv2d(c5, d, 1)
        grid = cfg.image_size // 16
        self.tokens = grid * grid  # memory tokens per image
        self.register_buffer("pos", sine_positions(grid, grid, d)[None], persistent=False)
        self.encoder = nn.ModuleList([EncoderBlock(d, cfg.heads, cfg.ffn, cfg.dropout) for _ in range(cfg.enc_layers)])
        self.enc_norm = nn.LayerNorm(d)
        self.glance_head = nn.Linear(c5, cfg.text_dim)

    def build_heads(self) -> None:
        """Per-role outputs: noun embedding, box, box-exists logit."""
        d = self.cfg.d_model
        self.noun_head = nn.Linear(d, self.cfg.text_dim)
        self.box_head = MLP(d, d, 4)
        self.exists_head = nn.Linear(d, 1)

    def build_queries(self) -> None:
        """What the decoder's queries are made of: here the chosen verb's roles."""
        d, cfg = self.cfg.d_model, self.cfg
        self.role_in = nn.Linear(cfg.text_dim, d)
        self.verb_in = nn.Linear(cfg.text_dim, d)
        self.slot = nn.Parameter(torch.randn(cfg.max_roles, d) * 0.02)

    @property
    def preprocess(self) -> Preprocess:
        """How images are prepared for this network: its input size and the mean / std its
        backbone's weights expect (recorded in the model's config and its bundles)."""
        return Preprocess(self.cfg.image_size, *self.backbone.normalization)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, 3, S, S) -> memory tokens (B, N, d) and the glance embedding (B, text_dim)."""
        c4, c5 = self.backbone(images)
        glance = F.normalize(self.glance_head(c5.mean((2, 3))), dim=-1)
        x = self.proj4(c4) + F.interpolate(self.proj5(c5), scale_factor=2.0, mode="nearest")
        x = x.flatten(2).transpose(1, 2)
        for block in self.encoder:
            x = block(x, self.pos)
        return self.enc_norm(x), glance

    def decode(self, memory: torch.Tensor, role_emb: torch.Tensor, verb_emb: torch.Tensor,
               role_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per role: noun embedding (B, R, text_dim), box cx,cy,w,h in [0, 1], exists logit, features.

        ``role_mask`` is 1.0 for a role the verb has and 0.0 for padding up to ``max_roles``.
        """
        q = self.role_in(role_emb) + self.verb_in(verb_emb)[:, None, :] + self.slot[None, : role_emb.shape[1]]
        bias = ((1.0 - role_mask) * MASKED)[:, None, None, :]
        for block in self.decoder:
            q = block(q, memory, self.pos, bias)
        q = self.dec_norm(q)
        nouns = F.normalize(self.noun_head(q), dim=-1)
        return nouns, self.box_head(q).sigmoid(), self.exists_head(q).squeeze(-1), q

    def verb_scale(self) -> torch.Tensor:
        return self.verb_logit_scale.exp().clamp(max=100.0)

    def noun_scale(self) -> torch.Tensor:
        return self.noun_logit_scale.exp().clamp(max=100.0)

    def forward(self, images: torch.Tensor, role_emb: torch.Tensor, verb_emb: torch.Tensor,
                role_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        memory, glance = self.encode(images)
        nouns, boxes, exists, feats = self.decode(memory, role_emb, verb_emb, role_mask)
        return {"memory": memory, "glance": glance, "nouns": nouns, "boxes": boxes, "exists": exists,
                "role_feats": feats}


class HoiStudent(Student):
    """HOI mode: every cell of the 16-pixel grid is an interaction point, as in PPDM.

    An interaction is anchored at the midpoint between its person and its object; per
    cell the decoder (the same blocks, now attending from every token) gives an
    interaction logit (through the box-exists head), the person's box and the object's box
    as offsets from the cell, an object embedding (cosine against object names, through
    the noun head) and a verb embedding (cosine against verb descriptions). Dense targets
    train in a few epochs where a set-prediction decoder would need hundreds. The decoder
    takes no vocabulary input, so verbs and objects never seen in training are scored
    from their text alone, and the vocabulary stays editable after export. In eval mode
    (and so in exported graphs) only local maxima of the interaction map keep their logit.
    """

    def build_queries(self) -> None:
        d, cfg, grid = self.cfg.d_model, self.cfg, self.cfg.image_size // 16
        self.object_box_head = MLP(d, d, 4)
        self.verb_head = nn.Linear(d, cfg.text_dim)
        ys, xs = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
        cells = torch.stack([xs.flatten(), ys.flatten()], -1).float().add(0.5).div(grid)
        self.register_buffer("cells", cells, persistent=False)

    def boxes(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw head outputs -> cx, cy, w, h in [0, 1]: the centre up to half the image away from the cell."""
        centre = (self.cells + 0.5 * torch.tanh(raw[..., :2])).clamp(0, 1)
        return torch.cat([centre, raw[..., 2:].sigmoid()], dim=-1)

    def decode(self, memory: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Per grid cell: human box, object box, object embedding, verb embedding,
        interaction logit, features."""
        q = memory
        for block in self.decoder:
            q = block(q, memory, self.pos, None)
        q = self.dec_norm(q)
        interaction = self.exists_head(q).squeeze(-1)
        if not self.training:  # one detection per peak of the interaction map
            grid = self.cfg.image_size // 16
            heat = interaction.reshape(-1, 1, grid, grid)
            peak = heat == F.max_pool2d(heat, 3, stride=1, padding=1)
            interaction = torch.where(peak, heat, torch.full_like(heat, MASKED)).reshape(interaction.shape)
        return (self.boxes(self.box_head(q)), self.boxes(self.object_box_head(q)),
                F.normalize(self.noun_head(q), dim=-1), F.normalize(self.verb_head(q), dim=-1), interaction, q)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        memory, glance = self.encode(images)
        human, obj, objects, verbs, interaction, feats = self.decode(memory)
        return {"memory": memory, "glance": glance, "human_boxes": human, "object_boxes": obj, "objects": objects,
                "verbs": verbs, "interaction": interaction, "pair_feats": feats}


class AuthorsStudent(Student):
    """The authors' student (their code, GitHub caicch/Ov-GSR), for latency.

    Their student reads frozen CLIP ViT-L/14-336 image tokens (577 x 1024, the last hidden
    state) through one linear projection to 512; the verb comes from the normalised,
    projected [CLS] token against verb text embeddings; one decoder layer (8 heads, FFN 2048,
    no positions on the image tokens) takes the chosen verb's role queries to all 577
    tokens, and MLP heads give noun, box and box-exists. A deployed model must run the CLIP
    tower on every image, so here it is part of the encoder graph. Their verb and role
    embeddings are learned tables; ours are text embeddings through a linear map, at the
    same cost. Built with random weights (``authors``), it times the authors' architecture (no
    accuracy is claimed for it); on a real CLIP image tower (``clip``, ``ClipImageTower``) it
    trains like every student.
    """

    def build_encoder(self) -> None:
        cfg, d = self.cfg, self.cfg.d_model
        self.backbone = (ClipImageTower(cfg.backbone_config, cfg.image_size, cfg.backbone_weights)
                         if cfg.backbone == HF_CLIP else build_vit(cfg.backbone, cfg.image_size, cfg.width))
        self.tokens = self.backbone.tokens
        self.proj = nn.Linear(self.backbone.width, d)  # their linear_blip (dropout 0.5 while training)
        self.register_buffer("pos", torch.zeros(1, self.tokens, d), persistent=False)  # no positions in the decoder
        self.memory_norm = nn.LayerNorm(d)  # their ln3
        self.glance_head = nn.Linear(d, cfg.text_dim)  # their proj on the normalised [CLS] token

    def build_heads(self) -> None:
        d, text = self.cfg.d_model, self.cfg.text_dim
        self.noun_head = MLP(d, 2 * d, text)
        self.box_head = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, 2 * d), nn.GELU(),
                                      nn.Linear(2 * d, 4))
        self.exists_head = MLP(d, 2 * d, 1)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.proj(self.backbone(images))
        glance = F.normalize(self.glance_head(F.normalize(tokens[:, 0], dim=-1)), dim=-1)
        return self.memory_norm(tokens), glance
