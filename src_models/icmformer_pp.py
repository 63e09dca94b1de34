"""iCMFormer++ (MOIS): segment every object of the exemplar's category.

Working reading of the paper (docs/protocols.md §2), which reproduces its parameter count at ViT-B/448:
* two iCMFormer front ends with their own weights — the exemplar branch (image + exemplar mask +
  exemplar clicks) and the recall branch (image + previous recall mask + recall clicks) — each
  patch embeddings, S1 (6 blocks, on image and click streams separately) and 3 cross-modality
  blocks, merged by sum as in iCMFormer;
* one Eq. 3 block: cross-attention with Q from the recall branch and K/V from the exemplar
  branch, the Q merged with a guided query from the Exemplar-Informed Module, then an FFN with
  ReLU and dropout;
* the channel-embedding fusion module in place of S2 (exactly 2,959,104 parameters at 768);
* the iCMFormer neck and head.
Departures, where the paper is silent: the EIM correlates ResNet-18 ``layer4`` features
(stride 32) with 3×3 exemplar kernels (crops resized to 96²), normalises each response map over
space (the paper's "normalisation layer"), takes the softmax over the exemplar dimension (Eq. 5)
and feeds both the softmax weights and the weighted response to a 1×1 conv that makes the
guided query (the softmax alone carries no similarity magnitude).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import Mlp
from torchvision.ops import roi_align

from .backbone import ViTBackbone, make_patch_embed
from .configs import ModelConfig
from .cross_modality import CrossAttention
from .icmformer import IMAGENET_MEAN, IMAGENET_STD
from .neck_head import MultiScaleHead, SimpleFPN


def exemplar_boxes(mask: np.ndarray, scales: Sequence[float]) -> list[tuple[float, float, float, float]]:
    """Bounding box of the exemplar mask scaled about its centre, one per scale, clipped to the
    image: (y0, x0, y1, x1) with exclusive ends."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        raise ValueError("the exemplar mask is empty")
    h, w = mask.shape
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    cy, cx, bh, bw = (y0 + y1) / 2, (x0 + x1) / 2, y1 - y0, x1 - x0
    out = []
    for s in scales:
        by0, by1 = max(0.0, cy - s * bh / 2), min(float(h), cy + s * bh / 2)
        bx0, bx1 = max(0.0, cx - s * bw / 2), min(float(w), cx + s * bw / 2)
        out.append((by0, bx0, max(by1, by0 + 1), max(bx1, bx0 + 1)))
    return out


class ExemplarInformedModule(nn.Module):
    """EIM (paper §3.3): how much each image region looks like the exemplar, per crop scale."""

    def __init__(self, cfg: ModelConfig, crop_size: int = 96) -> None:
        super().__init__()
        self.scales = tuple(cfg.eim_scales)
        self.crop_size = crop_size
        self.trunk = timm.create_model(cfg.eim_backbone, pretrained=False, features_only=True,
                                       out_indices=(cfg.eim_out_index,))
        ch = self.trunk.feature_info.channels()[-1]
        self.stride = self.trunk.feature_info.reduction()[-1]
        self.proj_image = nn.Conv2d(ch, cfg.embed_dim, 1)
        self.proj_exemplar = nn.Conv2d(ch, cfg.embed_dim, 1)
        k = len(self.scales)
        self.guide = nn.Conv2d(2 * k, cfg.embed_dim, 1)

    def boxes(self, exemplar_mask: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for m in exemplar_mask[:, 0].detach().cpu().numpy() > 0.5:
            b = exemplar_boxes(m, self.scales)
            out.append(torch.tensor([[x0, y0, x1, y1] for y0, x0, y1, x1 in b], dtype=torch.float32))
        return [b.to(exemplar_mask.device) for b in out]

    def response(self, image_n: torch.Tensor, exemplar_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Softmax weights A (B, K, h, w) summing to 1 over K, and the normalised responses R."""
        b = image_n.shape[0]
        feats = F.normalize(self.proj_image(self.trunk(image_n)[-1]), dim=1)  # (B, C, h, w)
        crops = roi_align(image_n, self.boxes(exemplar_mask), output_size=self.crop_size, aligned=True)
        kernels = F.normalize(self.proj_exemplar(self.trunk(crops)[-1]), dim=1)  # (B*K, C, kh, kw)
        k, c, kh, kw = len(self.scales), feats.shape[1], kernels.shape[2], kernels.shape[3]
        resp = F.conv2d(feats.reshape(1, b * c, *feats.shape[2:]), kernels, padding=(kh // 2, kw // 2), groups=b)
        resp = resp.reshape(b, k, *resp.shape[2:])[..., : feats.shape[2], : feats.shape[3]] / (kh * kw)
        mean = resp.mean(dim=(2, 3), keepdim=True)
        std = resp.std(dim=(2, 3), keepdim=True) + 1e-5
        resp = (resp - mean) / std  # normalisation: do not stick to the exemplar's own region
        return resp.softmax(dim=1), resp

    def forward(self, image_n: torch.Tensor, exemplar_mask: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Guided query (B, h, w, C) on the token grid."""
        weights, resp = self.response(image_n, exemplar_mask)
        g = torch.cat([weights, weights * resp], dim=1)
        g = F.interpolate(g, size=grid, mode="bilinear", align_corners=False)
        return self.guide(g).permute(0, 2, 3, 1)


@dataclass
class RecallImageFeatures:
    """What a branch caches per image (the recall branch, once per image or tile): the S1 image
    map and every cross block's K/V, as :class:`~src_models.icmformer.ImageFeatures` for SOIS."""

    x: torch.Tensor  # (B, h, w, C) image tokens after S1
    kv: list[tuple[torch.Tensor, torch.Tensor]]

    def to(self, *args, **kwargs) -> "RecallImageFeatures":
        return RecallImageFeatures(self.x.to(*args, **kwargs),
                                   [(k.to(*args, **kwargs), v.to(*args, **kwargs)) for k, v in self.kv])


class Branch(nn.Module):
    """An iCMFormer front end: patch embeddings, S1 and the cross-modality blocks."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_embed_coords = make_patch_embed(cfg, in_chans=3)
        self.backbone = ViTBackbone(cfg.replace(depth=cfg.split_depth))

    def encode_image(self, image_n: torch.Tensor) -> RecallImageFeatures:
        bb = self.backbone
        x = bb.run_s1(bb.embed(bb.patch_embed, image_n))
        return RecallImageFeatures(x, [blk.image_kv(x, self.cfg.window_size) for blk in bb.blocks2])

    def forward(self, image_n: torch.Tensor | None, maps: torch.Tensor,
                cached: RecallImageFeatures | None = None) -> torch.Tensor:
        feats = cached if cached is not None else self.encode_image(image_n)
        x, kvs = feats.x, feats.kv
        n = maps.shape[0]
        if x.shape[0] == 1 and n > 1:
            x = x.expand(n, -1, -1, -1)
            kvs = [(k.repeat(n, 1, 1, 1), v.repeat(n, 1, 1, 1)) for k, v in kvs]
        c = self.backbone.run_s1(self.backbone.embed(self.patch_embed_coords, maps))
        for blk, kv in zip(self.backbone.blocks2, kvs):
            c = blk(c, self.cfg.window_size, kv=kv)
        return x + c


class Eq3Block(nn.Module):
    """Q from the recall branch (plus the EIM guided query), K/V from the exemplar; FFN ReLU."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, dropout: float, eps: float) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim, eps=eps)
        self.norm_kv = nn.LayerNorm(dim, eps=eps)
        self.attn = CrossAttention(dim, num_heads=num_heads, qkv_bias=True, proj_drop=dropout)
        self.norm_ffn = nn.LayerNorm(dim, eps=eps)
        self.ffn = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.ReLU, drop=dropout)

    def forward(self, recall: torch.Tensor, exemplar: torch.Tensor, guide: torch.Tensor | None) -> torch.Tensor:
        b, h, w, c = recall.shape
        q = self.norm_q(recall)
        if guide is not None:
            q = q + guide
        k, v = self.attn.image_kv(self.norm_kv(exemplar).reshape(b, h * w, c))
        r = recall + self.attn.cross(q.reshape(b, h * w, c), k, v).reshape(b, h, w, c)
        return r + self.ffn(self.norm_ffn(r))


class ChannelFusion(nn.Module):
    """concat(F_e, F_r) → 1×1 → 3×3 depth-wise → 1×1, plus a 1×1 skip path (paper §3.4)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(2 * dim, dim, 1)
        self.depthwise = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.expand = nn.Conv2d(dim, dim, 1)
        self.skip = nn.Conv2d(2 * dim, dim, 1)
        self.act = nn.GELU()

    def forward(self, f_e: torch.Tensor, f_r: torch.Tensor) -> torch.Tensor:
        x = torch.cat([f_e, f_r], dim=1)
        return self.expand(self.act(self.depthwise(self.reduce(x)))) + self.skip(x)


@dataclass
class ExemplarFeatures:
    """Everything that depends on image + exemplar only (cached while the user clicks)."""

    exemplar: torch.Tensor  # (B, h, w, C) exemplar-branch output
    guide: torch.Tensor | None  # (B, h, w, C) EIM guided query


class ICMFormerPP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.exemplar_branch = Branch(cfg)
        self.recall_branch = Branch(cfg)
        self.eim = ExemplarInformedModule(cfg) if cfg.use_eim else None
        self.eq3 = Eq3Block(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio, cfg.eq3_dropout, cfg.norm_eps)
        self.fusion = ChannelFusion(cfg.embed_dim)
        self.neck = SimpleFPN(cfg.embed_dim, cfg.neck_dims)
        self.head = MultiScaleHead(cfg.neck_dims, cfg.head_channels, cfg.head_dropout)
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        return (image - self.pixel_mean) / self.pixel_std

    def encode_exemplar(self, image: torch.Tensor, exemplar_maps: torch.Tensor) -> ExemplarFeatures:
        """exemplar_maps: [exemplar mask, exemplar positive disks, exemplar true-negative disks]."""
        image_n = self.normalize(image)
        f_e = self.exemplar_branch(image_n, exemplar_maps)
        guide = self.eim(image_n, exemplar_maps[:, :1], (f_e.shape[1], f_e.shape[2])) if self.eim else None
        return ExemplarFeatures(f_e, guide)

    def encode_recall_image(self, image: torch.Tensor) -> RecallImageFeatures:
        """The recall branch's image-only part: cache it per image, pass it to :meth:`decode`."""
        return self.recall_branch.encode_image(self.normalize(image))

    def decode(self, ex: ExemplarFeatures, recall_image: RecallImageFeatures, recall_maps: torch.Tensor,
               size: tuple[int, int]) -> torch.Tensor:
        f_r = self.recall_branch(None, recall_maps, cached=recall_image)
        f_r = self.eq3(f_r, ex.exemplar, ex.guide)
        fused = self.fusion(ex.exemplar.permute(0, 3, 1, 2), f_r.permute(0, 3, 1, 2))
        logits = self.head(self.neck(fused))
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=True)

    def forward(self, image: torch.Tensor, exemplar_maps: torch.Tensor, recall_maps: torch.Tensor) -> torch.Tensor:
        """recall_maps: [previous recall mask, recall positive disks, recall negative disks]."""
        ex = self.encode_exemplar(image, exemplar_maps)
        f_r = self.recall_branch(self.normalize(image), recall_maps)
        f_r = self.eq3(f_r, ex.exemplar, ex.guide)
        fused = self.fusion(ex.exemplar.permute(0, 3, 1, 2), f_r.permute(0, 3, 1, 2))
        logits = self.head(self.neck(fused))
        return F.interpolate(logits, size=image.shape[2:], mode="bilinear", align_corners=True)


def init_from_icmformer(model: ICMFormerPP, sois_state: dict[str, torch.Tensor]) -> list[str]:
    """Copy an iCMFormer's patch embeddings, S1, cross-modality blocks, neck and head into both
    branches / the shared neck and head. Returns the keys of ``model`` left at initialisation."""
    own = model.state_dict()
    new: dict[str, torch.Tensor] = {}
    split = model.cfg.split_depth
    for k, v in sois_state.items():
        targets = []
        if k.startswith(("neck.", "head.")):
            targets = [k]
        elif k.startswith("patch_embed_coords.") or k.startswith(("backbone.patch_embed.", "backbone.pos_embed",
                                                                    "backbone.blocks2.")):
            targets = [f"{b}.{k}" for b in ("exemplar_branch", "recall_branch")]
        elif k.startswith("backbone.blocks."):
            if int(k.split(".")[2]) < split:
                targets = [f"{b}.{k}" for b in ("exemplar_branch", "recall_branch")]
        for t in targets:
            if t in own and own[t].shape == v.shape:
                new[t] = v
    model.load_state_dict(new, strict=False)
    return sorted(set(own) - set(new))
