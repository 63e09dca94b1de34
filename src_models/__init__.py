"""Pure PyTorch iCMFormer / iCMFormer++ networks. Never imports napari or Qt."""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from .clicks import Click, Clicks, coord_maps, disk_maps
from .configs import MODEL_CONFIGS, ModelConfig, get_config
from .icmformer import ICMFormer, ImageFeatures
from .losses import NormalizedFocalLoss

__all__ = [
    "Click",
    "Clicks",
    "ICMFormer",
    "ImageFeatures",
    "MODEL_CONFIGS",
    "ModelConfig",
    "NormalizedFocalLoss",
    "build_model",
    "coord_maps",
    "create_model",
    "disk_maps",
    "get_config",
    "list_models",
]


def list_models() -> list[str]:
    return sorted(MODEL_CONFIGS)


def build_model(cfg: ModelConfig) -> nn.Module:
    """Instantiate the network a config describes."""
    if cfg.arch == "icmformer":
        return ICMFormer(cfg)
    if cfg.arch == "icmformer_pp":
        try:
            from .icmformer_pp import ICMFormerPP  # noqa: PLC0415 - built only when asked for
        except ModuleNotFoundError:
            raise NotImplementedError("iCMFormer++ (MOIS) is not implemented in this version yet") from None
        return ICMFormerPP(cfg)
    raise ValueError(f"unknown architecture {cfg.arch!r}")


def create_model(name: str, **overrides: Any) -> nn.Module:
    """``create_model("vit_base")`` -> randomly initialised iCMFormer ViT-B at 448 (timm style)."""
    return build_model(get_config(name, **overrides))
