"""Pure PyTorch iCMFormer / iCMFormer++ networks and their checkpoint format. Never imports napari or Qt."""

from __future__ import annotations

from .checkpoint_format import CheckpointFormatError
from .clicks import Click, Clicks, coord_maps, disk_maps
from .configs import MODEL_CONFIGS, ModelConfig, get_config
from .factory import build_model, create_model, list_models
from .icmformer import ICMFormer, ImageFeatures
from .losses import NormalizedFocalLoss
from .resize import resize_input

__all__ = [
    "CheckpointFormatError",
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
    "resize_input",
]
