"""Plain ViT backbone (timm blocks) with the official windowed / global attention pattern."""

from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Block

from .configs import ModelConfig
from .cross_modality import CrossModalityBlock
from .windows import from_tokens, to_tokens


def make_patch_embed(cfg: ModelConfig, in_chans: int) -> PatchEmbed:
    """Conv k=s=patch, no norm; keys ``proj.weight`` / ``proj.bias`` as in the official code."""
    return PatchEmbed(
        img_size=cfg.img_size,
        patch_size=cfg.patch_size,
        in_chans=in_chans,
        embed_dim=cfg.embed_dim,
        flatten=False,
        strict_img_size=False,
    )


def run_block(block: Block, x: torch.Tensor, window: int | None) -> torch.Tensor:
    """Apply a timm ``Block`` to a (B, H, W, C) map, attention restricted to windows if asked.

    The norm comes before partitioning and the MLP is per token, as in SimpleClick / iCMFormer,
    so padded tokens are zeros inside attention, exactly like the official code.
    """
    size = (x.shape[1], x.shape[2])
    tokens, padded = to_tokens(block.norm1(x), window)
    attn = from_tokens(block.attn(tokens), window, padded, size)
    x = x + block.drop_path1(block.ls1(attn))
    return x + block.drop_path2(block.ls2(block.mlp(block.norm2(x))))


class ViTBackbone(nn.Module):
    """Holds the official ``backbone.*`` key families: patch_embed, pos_embed, blocks, blocks2.

    ``cls_token``, ``fc_norm`` and the classifier ``head`` of the official checkpoint are unused
    by the official forward pass; they are not built here and the loader drops them explicitly.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_embed = make_patch_embed(cfg, in_chans=3)
        num_patches = cfg.grid_size * cfg.grid_size
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, cfg.embed_dim))
        norm = partial(nn.LayerNorm, eps=cfg.norm_eps)
        # on the CPU even under a meta device: the checkpoint loader builds on "meta" to check shapes
        dpr = [float(r) for r in torch.linspace(0, cfg.drop_path_rate, cfg.depth, device="cpu")]
        self.blocks = nn.ModuleList(
            Block(
                cfg.embed_dim,
                cfg.num_heads,
                mlp_ratio=cfg.mlp_ratio,
                qkv_bias=cfg.qkv_bias,
                norm_layer=norm,
                drop_path=dpr[i],
            )
            for i in range(cfg.depth)
        )
        self.blocks2 = nn.ModuleList(
            CrossModalityBlock(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio, cfg.qkv_bias, norm)
            for _ in range(cfg.num_cross_blocks)
        )
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.apply(_init_weights)

    def window_for(self, block_index: int) -> int | None:
        return None if block_index in self.cfg.global_blocks else self.cfg.window_size

    def pos_embed_for(self, grid: tuple[int, int]) -> torch.Tensor:
        """(1, H, W, C) position embedding; bicubic-resized when the grid is not the trained one."""
        pos = self.pos_embed[:, 1:, :]
        g = self.cfg.grid_size
        pos = pos.reshape(1, g, g, -1)
        if grid != (g, g):
            pos = F.interpolate(pos.permute(0, 3, 1, 2), size=grid, mode="bicubic", align_corners=False)
            pos = pos.permute(0, 2, 3, 1)
        return pos

    def embed(self, patch_embed: PatchEmbed, x: torch.Tensor) -> torch.Tensor:
        """Patch embedding + position embedding -> (B, H, W, C)."""
        x = patch_embed(x).permute(0, 2, 3, 1)
        return x + self.pos_embed_for((x.shape[1], x.shape[2]))

    def run_s1(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.cfg.split_depth):
            x = run_block(self.blocks[i], x, self.window_for(i))
        return x

    def run_s2(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.cfg.split_depth, self.cfg.depth):
            x = run_block(self.blocks[i], x, self.window_for(i))
        return x


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
