"""The cross-modality block of iCMFormer (official ``blocks2``).

Only the click stream ``c`` is updated:
    c += attn1(LN1 c)                    self-attention on clicks
    c += attn2(Q = LN2 c, K/V = LN2 x)   cross-attention, keys/values from the image
    c += MLP(LN3 c)
The image side of attn2 (LN2 x and its K/V projection) depends on the image only, so the engine
computes it once per image with :meth:`CrossAttention.image_kv` and reuses it for every click.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import Attention, Mlp

from .windows import from_tokens, to_tokens


class CrossAttention(Attention):
    """timm ``Attention`` (same ``qkv``/``proj`` parameters) used as cross-attention."""

    def _split_heads(self, t: torch.Tensor) -> torch.Tensor:
        b, n, _ = t.shape
        return t.reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)

    def image_kv(self, x_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """K and V of already-normalised image tokens, each (B, heads, N, head_dim)."""
        dim = self.num_heads * self.head_dim
        w, b = self.qkv.weight, self.qkv.bias
        kv = F.linear(x_tokens, w[dim:], None if b is None else b[dim:])
        k, v = kv.split(dim, dim=-1)
        return self.k_norm(self._split_heads(k)), self._split_heads(v)

    def cross(self, q_tokens: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attend from normalised click tokens to precomputed image K/V."""
        dim = self.num_heads * self.head_dim
        w, b = self.qkv.weight, self.qkv.bias
        q = self.q_norm(self._split_heads(F.linear(q_tokens, w[:dim], None if b is None else b[:dim])))
        drop = self.attn_drop.p if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
        b_, h, n, hd = out.shape
        out = out.transpose(1, 2).reshape(b_, n, h * hd)
        return self.proj_drop(self.proj(self.norm(out)))

    def forward_reference(self, q_tokens: torch.Tensor, kv_tokens: torch.Tensor) -> torch.Tensor:
        """Uncached path: the full ``qkv`` projection on both streams, as the official code does."""
        b, n, _ = q_tokens.shape
        qkv_c = self.qkv(q_tokens).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        qkv_x = self.qkv(kv_tokens).reshape(b, -1, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv_c[0], qkv_x[1], qkv_x[2]
        q, k = self.q_norm(q), self.k_norm(k)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        attn = self.attn_drop(attn.softmax(dim=-1))
        out = (attn @ v).transpose(1, 2).reshape(b, n, -1)
        return self.proj_drop(self.proj(self.norm(out)))


class CrossModalityBlock(nn.Module):
    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        qkv_bias: bool,
        norm_layer: Callable[[int], nn.Module],
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn1 = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias)
        self.norm2 = norm_layer(dim)
        self.attn2 = CrossAttention(dim, num_heads=num_heads, qkv_bias=qkv_bias)
        self.norm3 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def image_kv(self, x: torch.Tensor, window: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Image-only part of this block, for the per-image cache."""
        tokens, _ = to_tokens(self.norm2(x), window)
        return self.attn2.image_kv(tokens)

    def forward(
        self,
        c: torch.Tensor,
        window: int | None,
        x: torch.Tensor | None = None,
        kv: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Update click map ``c`` (B, H, W, C) given image map ``x`` or its cached ``kv``."""
        size = (c.shape[1], c.shape[2])
        tokens, padded = to_tokens(self.norm1(c), window)
        c = c + from_tokens(self.attn1(tokens), window, padded, size)
        q_tokens, padded = to_tokens(self.norm2(c), window)
        if kv is not None:
            attended = self.attn2.cross(q_tokens, *kv)
        else:
            if x is None:
                raise ValueError("CrossModalityBlock needs the image map x or its cached K/V")
            x_tokens, _ = to_tokens(self.norm2(x), window)
            attended = self.attn2.forward_reference(q_tokens, x_tokens)
        c = c + from_tokens(attended, window, padded, size)
        return c + self.mlp(self.norm3(c))
