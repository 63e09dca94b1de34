"""What a checkpoint holds, independent of how a file is read: the model package owns its format.

Two layouts are understood:
* ours: ``{"format": FORMAT, "version": FORMAT_VERSION, "config": {...}, "state_dict": {...},
  "extra": {...}}`` (a ``.pt`` payload), or the same config / extra as JSON strings in a
  ``.safetensors`` file's metadata;
* official iCMFormer / isegm: a bare state dict, possibly under ``state_dict`` or ``model``; the
  config is inferred from tensor shapes and the official keys our network has no module for are
  dropped explicitly (:data:`UNUSED_OFFICIAL_KEYS`).

File I/O policy (safe loading, sizes, messages naming the file) belongs to the caller, e.g.
``napari_icmformer.checkpoints``; errors here are :class:`CheckpointFormatError` without a path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import torch
import torch.nn as nn

from .configs import ModelConfig

FORMAT = "napari-icmformer"
FORMAT_VERSION = 1

# Official keys with no module in our network: cls token, final norm and ImageNet classifier of
# the MAE ViT, and the head's up_conv1/2 that the official config (upsample='x1') never runs.
UNUSED_OFFICIAL_KEYS = re.compile(
    r"^(backbone\.(cls_token|fc_norm\.\w+|head\.\w+)|head\.up_conv[12]\.\d+\.\w+)$"
)
# Config fields a SOIS network never reads: they may differ without changing the model.
_MOIS_ONLY_FIELDS = frozenset({"eim_backbone", "eim_dim", "eim_scales", "eim_out_index", "use_eim", "eq3_dropout"})


class CheckpointFormatError(ValueError):
    """A payload that is not an iCMFormer checkpoint, or does not fit the network."""


def encode_payload(cfg: ModelConfig, state: dict[str, torch.Tensor], extra: dict[str, Any] | None = None
                   ) -> dict[str, Any]:
    """The ``.pt`` payload: plain types and tensors only (loads with ``weights_only=True``)."""
    payload: dict[str, Any] = {"format": FORMAT, "version": FORMAT_VERSION, "config": cfg.to_dict(),
                               "state_dict": state}
    if extra:
        payload["extra"] = extra
    return payload


def encode_metadata(cfg: ModelConfig, extra: dict[str, Any] | None = None) -> dict[str, str]:
    """The ``.safetensors`` metadata (string values only, as that format requires)."""
    meta = {"format": FORMAT, "version": str(FORMAT_VERSION), "config": json.dumps(cfg.to_dict())}
    if extra:
        meta["extra"] = json.dumps(extra)
    return meta


def decode_metadata(meta: Mapping[str, str], state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """A ``.safetensors`` file's metadata and tensors as the payload a ``.pt`` file would hold."""
    payload: dict[str, Any] = {"state_dict": state}
    for key in ("config", "extra"):
        if key in meta:
            try:
                payload[key] = json.loads(meta[key])
            except json.JSONDecodeError as exc:
                raise CheckpointFormatError(f"its {key!r} metadata is not valid JSON ({exc})") from None
    if "config" in meta:
        payload["format"] = meta.get("format")
    return payload


def read_payload(path: str) -> dict[str, Any]:
    """Minimal safe read (``weights_only=True`` / safetensors) for :func:`create_model`; the
    plugin's ``read_checkpoint_file`` adds the checks and messages a user-facing tool needs."""
    if str(path).endswith(".safetensors"):
        from safetensors import safe_open  # noqa: PLC0415 - only for .safetensors files

        with safe_open(str(path), framework="pt") as f:
            return decode_metadata(f.metadata() or {}, {k: f.get_tensor(k) for k in f.keys()})
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict):
        raise CheckpointFormatError(f"holds a {type(payload).__name__}, not a state dict")
    return payload


def extract_state_dict(payload: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Unwrap nested ``state_dict`` / ``model`` wrappers (official and Lightning-style files)."""
    state: Any = payload
    for _ in range(3):
        if isinstance(state, dict) and not any(isinstance(v, torch.Tensor) for v in state.values()):
            for key in ("state_dict", "model", "model_state", "net"):
                if key in state and isinstance(state[key], dict):
                    state = state[key]
                    break
            else:
                break
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointFormatError("no state dict of tensors found (looked under 'state_dict' and 'model')")
    return {k.removeprefix("module."): v for k, v in state.items()}


def infer_config(state: dict[str, torch.Tensor]) -> ModelConfig:
    """Rebuild an iCMFormer config from official-layout tensor shapes."""
    try:
        w = state["backbone.patch_embed.proj.weight"]
        pos = state["backbone.pos_embed"]
    except KeyError as exc:
        raise CheckpointFormatError(f"not an iCMFormer checkpoint: missing key {exc.args[0]}") from None
    dim, patch = int(w.shape[0]), int(w.shape[-1])
    grid = int(round((pos.shape[1] - 1) ** 0.5))
    depth = len({k.split(".")[2] for k in state if k.startswith("backbone.blocks.")})
    cross = len({k.split(".")[2] for k in state if k.startswith("backbone.blocks2.")})
    neck = tuple(int(state[k].shape[0]) for k in ("neck.down_4.5.weight", "neck.down_8.2.weight",
                                                   "neck.down_16.0.weight", "neck.down_32.2.weight"))
    head = int(state["head.fusion_conv.conv.weight"].shape[0])
    return ModelConfig(
        arch="icmformer", img_size=grid * patch, patch_size=patch, embed_dim=dim, depth=depth,
        num_heads=max(1, dim // 64), num_cross_blocks=cross, neck_dims=neck, head_channels=head,  # type: ignore[arg-type]
        split_depth=depth // 2, global_blocks=(depth // 2 - 1, depth - 1),
    )


def stored_config(payload: dict[str, Any]) -> ModelConfig | None:
    """The config a file of ours carries (``None`` for an official file, which has none).

    Raises ``ValueError`` / ``TypeError`` for a config that is not a mapping or whose fields are
    wrong (an invalid config rather than a file of the wrong kind)."""
    cfg = payload.get("config")
    if "config" in payload and payload.get("format") == FORMAT and not isinstance(cfg, dict):
        raise ValueError(f"not a mapping but {type(cfg).__name__}")
    return ModelConfig.from_dict(cfg) if isinstance(cfg, dict) and "embed_dim" in cfg else None


def config_of(payload: dict[str, Any], state: dict[str, torch.Tensor]) -> ModelConfig:
    """The file's own config when it has one (ours), else one inferred from official shapes."""
    cfg = stored_config(payload)
    return cfg if cfg is not None else infer_config(state)


def config_differences(a: ModelConfig, b: ModelConfig) -> list[str]:
    """Fields that differ between two configs, ignoring MOIS-only fields of two SOIS configs."""
    skip = _MOIS_ONLY_FIELDS if a.arch == b.arch == "icmformer" else frozenset()
    return [f.name for f in fields(ModelConfig) if f.name not in skip and getattr(a, f.name) != getattr(b, f.name)]


def drop_unused_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Without the official keys our network has no module for (:data:`UNUSED_OFFICIAL_KEYS`)."""
    return {k: v for k, v in state.items() if not UNUSED_OFFICIAL_KEYS.match(k)}


def check_state(cfg: ModelConfig, state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> None:
    """Keys and shapes of ``state`` against a network's own (``own`` may be meta tensors)."""
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} shape mismatches (e.g. {k}: file {tuple(state[k].shape)} vs "
                         f"model {tuple(own[k].shape)})")
        raise CheckpointFormatError(f"does not match a {cfg.arch} model (embed_dim={cfg.embed_dim}, "
                                    f"depth={cfg.depth}): " + "; ".join(parts))


def load_weights(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Strict load of a checkpoint's tensors (official extras dropped, dtype cast to the model's:
    fp16-stored files load as float32)."""
    state = drop_unused_official(state)
    own = model.state_dict()
    check_state(model.cfg, state, own)  # type: ignore[arg-type]
    model.load_state_dict({k: (v.to(own[k].dtype) if v.is_floating_point() else v) for k, v in state.items()},
                          strict=True)
