"""SimpleFPN neck (ViTDet) and the multi-scale segmentation head, official key layout."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _gn(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(1, c)


class SimpleFPN(nn.Module):
    """Plain ViT map (stride 16) -> 4 maps at strides 4, 8, 16, 32."""

    def __init__(self, in_dim: int, out_dims: tuple[int, int, int, int]) -> None:
        super().__init__()
        d2, d4 = in_dim // 2, in_dim // 4
        self.down_4 = nn.Sequential(
            nn.ConvTranspose2d(in_dim, d2, 2, stride=2), _gn(d2), nn.GELU(),
            nn.ConvTranspose2d(d2, d4, 2, stride=2), _gn(d4),
            nn.Conv2d(d4, out_dims[0], 1), _gn(out_dims[0]), nn.GELU(),
        )  # fmt: skip
        self.down_8 = nn.Sequential(
            nn.ConvTranspose2d(in_dim, d2, 2, stride=2), _gn(d2),
            nn.Conv2d(d2, out_dims[1], 1), _gn(out_dims[1]), nn.GELU(),
        )  # fmt: skip
        self.down_16 = nn.Sequential(nn.Conv2d(in_dim, out_dims[2], 1), _gn(out_dims[2]), nn.GELU())
        self.down_32 = nn.Sequential(
            nn.Conv2d(in_dim, in_dim * 2, 2, stride=2), _gn(in_dim * 2),
            nn.Conv2d(in_dim * 2, out_dims[3], 1), _gn(out_dims[3]), nn.GELU(),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.down_4(x), self.down_8(x), self.down_16(x), self.down_32(x)]


class ConvReLU(nn.Module):
    """1×1 conv + ReLU; the ``.conv`` attribute keeps mmcv ConvModule's key names."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 1)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class MultiScaleHead(nn.Module):
    """Per-scale 1×1 conv, resize to stride 4, concat, fuse, 1-channel logit at stride 4.

    The official head also defines ``up_conv1``/``up_conv2`` which its config never runs
    (upsample='x1'); they are not built and the checkpoint loader drops them explicitly.
    """

    def __init__(self, in_dims: tuple[int, ...], channels: int, dropout: float) -> None:
        super().__init__()
        self.convs = nn.ModuleList(ConvReLU(c, channels) for c in in_dims)
        self.fusion_conv = ConvReLU(channels * len(in_dims), channels)
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(channels, 1, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        size = feats[0].shape[2:]
        outs = [
            F.interpolate(conv(f), size=size, mode="bilinear", align_corners=False)
            for conv, f in zip(self.convs, feats)
        ]
        return self.conv_seg(self.dropout(self.fusion_conv(torch.cat(outs, dim=1))))
