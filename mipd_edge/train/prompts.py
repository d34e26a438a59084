"""Scene-aware and instance-perception prompts: learnable tokens that read the frozen
teacher's features and write knowledge in the student's text space.

Both follow CoCoOp: a few learnable context tokens, each shifted by a small meta-network
of the image's own teacher feature, so the prompt is conditioned on the instance. A
transformer block mixes them with the teacher tokens; the mean token is projected into
the text space. NMPA trains them; the student then distils their outputs.

With ``n_ctx=0`` there is no prompt: the same block maps the teacher's own tokens to the
text space, which is what the ablation rows without a scene / instance prompt measure.

``anchored``: the knowledge stays in the teacher's own image-text space, as when prompts
steer a frozen vision-language model: the teacher's feature plus a learned correction
(zero at the start), instead of a new map into the student's text space that keeps of the
teacher only what fits the rationales.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..models.layers import MLP, EncoderBlock


class ContextTokens(nn.Module):
    """CoCoOp's conditioned context: ``n_ctx`` learnable tokens, each shifted by a meta-network
    of the feature they are conditioned on. (B, teacher_dim) -> (B, n_ctx, width)."""

    def __init__(self, teacher_dim: int, n_ctx: int, width: int):
        super().__init__()
        self.tokens = nn.Parameter(torch.randn(n_ctx, width) * 0.02)
        self.meta = MLP(teacher_dim, width // 2, width) if n_ctx else None

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        if self.meta is None:
            return feature.new_zeros(feature.shape[0], 0, self.tokens.shape[1])
        return self.tokens[None] + self.meta(feature)[:, None]


class ScenePrompt(nn.Module):
    """Learnable scene tokens conditioned on the teacher's global image feature."""

    def __init__(self, teacher_dim: int, text_dim: int, n_ctx: int = 4, width: int = 256, heads: int = 4,
                 anchored: bool = False):
        super().__init__()
        self.ctx = ContextTokens(teacher_dim, n_ctx, width)
        self.image_in = nn.Linear(teacher_dim, width)
        self.block = EncoderBlock(width, heads, 2 * width)
        self.out = output_layer(width, teacher_dim, text_dim, anchored)
        self.anchored = anchored

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(B, teacher_dim) -> scene knowledge (B, text_dim), unit norm."""
        tokens = torch.cat([self.image_in(image)[:, None], self.ctx(image)], dim=1)
        x = self.block(tokens, torch.zeros_like(tokens))
        return F.normalize(self.out(x.mean(1)) + (image if self.anchored else 0), dim=-1)


class InstancePrompt(nn.Module):
    """Learnable role tokens conditioned on the teacher's features inside the role's box."""

    def __init__(self, teacher_dim: int, text_dim: int, n_ctx: int = 4, width: int = 256, heads: int = 4,
                 anchored: bool = False, role_dim: Optional[int] = None):
        super().__init__()
        self.ctx = ContextTokens(teacher_dim, n_ctx, width)
        self.region_in = nn.Linear(teacher_dim, width)
        self.scene_in = nn.Linear(teacher_dim, width)
        self.role_in = nn.Linear(role_dim or text_dim, width)
        self.block = EncoderBlock(width, heads, 2 * width)
        self.out = output_layer(width, teacher_dim, text_dim, anchored)
        self.anchored = anchored

    def forward(self, regions: torch.Tensor, image: torch.Tensor, roles: torch.Tensor,
                valid: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Regions (B, R, teacher_dim), image (B, teacher_dim), role text embeddings (B, R, role_dim)
        -> instance knowledge (B, R, text_dim), unit norm. Only the roles where ``valid`` (B, R)
        holds are computed (a verb has 3.5 of the 6 role slots on average); the rest are zero."""
        b, r, _ = regions.shape
        if valid is None:
            valid = torch.ones(b, r, dtype=torch.bool, device=regions.device)
        reg = regions[valid]
        tokens = torch.cat([self.region_in(reg)[:, None],
                            self.scene_in(image)[:, None].expand(b, r, -1)[valid][:, None],
                            self.role_in(roles[valid])[:, None],
                            self.ctx(reg)], dim=1)
        x = self.block(tokens, torch.zeros_like(tokens))
        out = regions.new_zeros(b, r, self.out.out_features)
        out[valid] = F.normalize(self.out(x.mean(1)) + (reg if self.anchored else 0), dim=-1)
        return out


def output_layer(width: int, teacher_dim: int, text_dim: int, anchored: bool) -> nn.Linear:
    """Into the text space; anchored, a correction of the teacher's feature that starts at zero."""
    if not anchored:
        return nn.Linear(width, text_dim)
    if text_dim != teacher_dim:
        raise ValueError(f"anchored knowledge lives in the teacher's space ({teacher_dim}-d), not a {text_dim}-d one")
    layer = nn.Linear(width, teacher_dim)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer
