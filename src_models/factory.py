"""Names to networks (timm / segment_anything style): ``create_model(name, checkpoint=None)``."""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from typing import Any

import torch.nn as nn

from .checkpoint_format import (
    CheckpointFormatError,
    config_differences,
    extract_state_dict,
    load_weights,
    read_payload,
    stored_config,
)
from .configs import MODEL_CONFIGS, ModelConfig, get_config
from .icmformer import ICMFormer


def list_models() -> list[str]:
    """The names :func:`create_model` accepts (bare sizes such as ``vit_base`` mean SOIS)."""
    return sorted(MODEL_CONFIGS)


def build_model(cfg: ModelConfig) -> nn.Module:
    """Instantiate the network a config describes (random weights)."""
    if cfg.arch == "icmformer":
        return ICMFormer(cfg)
    if cfg.arch == "icmformer_pp":
        from .icmformer_pp import ICMFormerPP  # noqa: PLC0415 - torchvision only when asked for

        return ICMFormerPP(cfg)
    raise ValueError(f"unknown architecture {cfg.arch!r}")


def create_model(name: str, checkpoint: str | PathLike[str] | Mapping[str, Any] | None = None,
                 **overrides: Any) -> nn.Module:
    """``create_model("vit_base")``: a randomly initialised iCMFormer ViT-B at 448;
    ``create_model("icmformer_pp_vit_tiny", "w.pt", img_size=224)``: the named network with a
    checkpoint's weights loaded strictly, in eval mode.

    ``checkpoint`` is a ``.pt`` / ``.safetensors`` path or an already-read payload / state dict.
    A file that records its own config must agree with the named one (plus ``overrides``): fields
    such as ``num_heads`` change the output without changing any tensor shape. To build whatever
    a file describes, use ``napari_icmformer.checkpoints.load_model``.
    """
    cfg = get_config(name, **overrides)
    model = build_model(cfg)
    if checkpoint is None:
        return model
    payload = dict(checkpoint) if isinstance(checkpoint, Mapping) else read_payload(str(checkpoint))
    where = "the checkpoint" if isinstance(checkpoint, Mapping) else f"checkpoint {checkpoint}"
    stored = stored_config(payload)
    if stored is not None and stored.arch != cfg.arch:
        raise CheckpointFormatError(f"{where} is an {stored.arch} model, not {name!r} ({cfg.arch})")
    diffs = config_differences(stored, cfg) if stored is not None else []
    if diffs:
        said = ", ".join(f"{k}={getattr(stored, k)!r} (model {getattr(cfg, k)!r})" for k in diffs)
        raise CheckpointFormatError(f"{where} was saved with another config than {name!r}: {said}; "
                                    "pass the file's values as keyword overrides")
    try:
        load_weights(model, extract_state_dict(payload))
    except CheckpointFormatError as exc:
        raise CheckpointFormatError(f"{where}: {exc}") from None
    return model.eval()
