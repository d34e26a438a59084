"""Transformer pieces written out with Linear layers and matmuls.

nn.MultiheadAttention takes fused fast paths that exporters and NNCF handle badly; these
few lines export to plain MatMul / Softmax graphs that every runtime and quantizer reads.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

MASKED = -1e4  # finite, so a fully masked row never turns into NaN


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``bias`` is added to the attention logits: (B, 1, 1, N) with MASKED at ignored keys."""
        b, n, d = x.shape
        h = self.heads
        q = self.q(x).reshape(b, n, h, d // h).transpose(1, 2)
        k = self.k(context).reshape(b, -1, h, d // h).transpose(1, 2)
        v = self.v(context).reshape(b, -1, h, d // h).transpose(1, 2)
        logits = q @ k.transpose(-2, -1) * (1.0 / math.sqrt(d // h))
        if bias is not None:
            logits = logits + bias
        attn = self.drop(logits.softmax(dim=-1))
        return self.out((attn @ v).transpose(1, 2).reshape(b, n, d))


class MLP(nn.Sequential):
    def __init__(self, dim: int, hidden: int, out: Optional[int] = None, dropout: float = 0.0):
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out or dim))


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, heads: int, ffn: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, ffn, dropout=dropout)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.attn(y + pos, y + pos)
        return x + self.mlp(self.norm2(x))


class DecoderBlock(nn.Module):
    """Self-attention among the role queries, cross-attention to the image, MLP."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = Attention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn = Attention(dim, heads, dropout)
        self.norm3 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, ffn, dropout=dropout)

    def forward(
        self, q: torch.Tensor, memory: torch.Tensor, pos: torch.Tensor, query_bias: torch.Tensor
    ) -> torch.Tensor:
        y = self.norm1(q)
        q = q + self.self_attn(y, y, query_bias)
        q = q + self.cross_attn(self.norm2(q), memory + pos)
        return q + self.mlp(self.norm3(q))


def sine_positions(h: int, w: int, dim: int) -> torch.Tensor:
    """(h * w, dim) fixed 2-D sine embeddings, as in DETR."""
    quarter = dim // 4
    freq = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter))
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    y = ys.reshape(-1, 1) * freq
    x = xs.reshape(-1, 1) * freq
    pos = torch.cat([y.sin(), y.cos(), x.sin(), x.cos()], dim=1)
    return nn.functional.pad(pos, (0, dim - pos.shape[1]))
