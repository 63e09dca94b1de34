"""iCMFormer (SOIS): image and click streams, cross-modality fusion, SimpleFPN neck, head."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .backbone import ViTBackbone, make_patch_embed
from .configs import ModelConfig
from .neck_head import MultiScaleHead, SimpleFPN

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ImageFeatures:
    """What depends on the image only: S1 image map and every cross block's K/V."""

    x: torch.Tensor  # (B, H, W, C) image tokens after S1
    kv: list[tuple[torch.Tensor, torch.Tensor]]
    input_size: tuple[int, int]

    def to(self, *args, **kwargs) -> "ImageFeatures":
        return ImageFeatures(
            self.x.to(*args, **kwargs),
            [(k.to(*args, **kwargs), v.to(*args, **kwargs)) for k, v in self.kv],
            self.input_size,
        )


class ICMFormer(nn.Module):
    """Input: RGB in [0, 1] (B, 3, H, W) and coord maps [prev mask, pos disks, neg disks].

    Output: one logit map at input resolution (apply sigmoid outside; threshold 0.49).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_embed_coords = make_patch_embed(cfg, in_chans=3)
        self.backbone = ViTBackbone(cfg)
        self.neck = SimpleFPN(cfg.embed_dim, cfg.neck_dims)
        self.head = MultiScaleHead(cfg.neck_dims, cfg.head_channels, cfg.head_dropout)
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def _check(self, t: torch.Tensor, what: str) -> None:
        if t.ndim != 4 or t.shape[1] != 3:
            raise ValueError(f"{what} must be (B, 3, H, W), got {tuple(t.shape)}")
        p = self.cfg.patch_size
        if t.shape[2] % p or t.shape[3] % p:
            raise ValueError(f"{what} height and width must be multiples of {p}, got {tuple(t.shape[2:])}")

    # -- image-only part (cacheable) -------------------------------------------------------
    def encode_image(self, image: torch.Tensor) -> ImageFeatures:
        self._check(image, "image")
        bb = self.backbone
        x = bb.run_s1(bb.embed(bb.patch_embed, (image - self.pixel_mean) / self.pixel_std))
        window = self.cfg.window_size
        kv = [blk.image_kv(x, window) for blk in bb.blocks2]
        return ImageFeatures(x=x, kv=kv, input_size=(image.shape[2], image.shape[3]))

    # -- click-dependent part ---------------------------------------------------------------
    def encode_clicks(self, coord_maps: torch.Tensor) -> torch.Tensor:
        self._check(coord_maps, "coord_maps")
        return self.backbone.run_s1(self.backbone.embed(self.patch_embed_coords, coord_maps))

    def decode(self, feats: ImageFeatures, coord_maps: torch.Tensor) -> torch.Tensor:
        """Cached path: only the click stream, cross blocks (cached K/V), S2, neck and head."""
        if tuple(coord_maps.shape[2:]) != feats.input_size:
            raise ValueError(f"coord maps {tuple(coord_maps.shape[2:])} != image {feats.input_size}")
        c = self.encode_clicks(coord_maps)
        x, kvs = feats.x, feats.kv
        n = c.shape[0]
        if x.shape[0] == 1 and n > 1:  # one cached image, a batch of click sets (e.g. flip TTA)
            x = x.expand(n, -1, -1, -1)
            kvs = [(k.repeat(n, 1, 1, 1), v.repeat(n, 1, 1, 1)) for k, v in kvs]
        elif x.shape[0] != n:
            raise ValueError(f"batch of click maps ({n}) does not match cached images ({x.shape[0]})")
        for blk, kv in zip(self.backbone.blocks2, kvs):
            c = blk(c, self.cfg.window_size, kv=kv)
        return self._fuse_and_predict(x, c, feats.input_size)

    def forward(self, image: torch.Tensor, coord_maps: torch.Tensor) -> torch.Tensor:
        """Reference (uncached) path, used in training: both streams from scratch."""
        self._check(image, "image")
        self._check(coord_maps, "coord_maps")
        bb = self.backbone
        x = bb.run_s1(bb.embed(bb.patch_embed, (image - self.pixel_mean) / self.pixel_std))
        c = self.encode_clicks(coord_maps)
        for blk in bb.blocks2:
            c = blk(c, self.cfg.window_size, x=x)
        return self._fuse_and_predict(x, c, (image.shape[2], image.shape[3]))

    def _fuse_and_predict(self, x: torch.Tensor, c: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = self.backbone.run_s2(x + c)
        logits = self.head(self.neck(x.permute(0, 3, 1, 2).contiguous()))
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=True)
