"""Checkpoint files: model config inside, loaded without executing pickled code.

Formats read:
* ours: ``{"format": "napari-icmformer", "config": {...}, "state_dict": {...}, ...}`` written by
  :func:`save_checkpoint` (``.pt``, loaded with ``torch.load(weights_only=True)``) or a
  ``.safetensors`` file whose metadata holds the config as JSON;
* official iCMFormer / isegm files: a state dict, possibly nested under ``state_dict`` or
  ``model``; the architecture is inferred from the tensor shapes and the official keys the
  official forward pass never uses are dropped explicitly (:data:`UNUSED_OFFICIAL_KEYS`).
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from src_models import ModelConfig, build_model

FORMAT = "napari-icmformer"
FORMAT_VERSION = 1

# Official keys with no module in our network: cls token, final norm and ImageNet classifier of
# the MAE ViT, and the head's up_conv1/2 that the official config (upsample='x1') never runs.
UNUSED_OFFICIAL_KEYS = re.compile(
    r"^(backbone\.(cls_token|fc_norm\.\w+|head\.\w+)|head\.up_conv[12]\.\d+\.\w+)$"
)


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used; the message says which file and why."""


def save_checkpoint(
    path: Path | str,
    model: nn.Module,
    *,
    half: bool = False,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write model weights + config. ``half`` stores floating tensors as fp16 (smaller files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg: ModelConfig = model.cfg  # type: ignore[assignment]
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
             for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file  # noqa: PLC0415

        meta = {"format": FORMAT, "version": str(FORMAT_VERSION), "config": json.dumps(cfg.to_dict())}
        if extra:
            meta["extra"] = json.dumps(extra)
        save_file(state, str(path), metadata=meta)
    else:
        payload = {"format": FORMAT, "version": FORMAT_VERSION, "config": cfg.to_dict(), "state_dict": state}
        if extra:
            payload["extra"] = extra
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(payload, tmp)
        tmp.replace(path)  # never leave a half-written checkpoint under the real name
    return path


def read_checkpoint_file(path: Path | str) -> dict[str, Any]:
    """Raw payload of a checkpoint file, refusing anything that needs pickled code to load."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint path is not a file: {path}")
    if path.suffix == ".safetensors":
        try:
            from safetensors import safe_open  # noqa: PLC0415

            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                state = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
            raise CheckpointError(f"checkpoint {path} is corrupt or not a safetensors file: {exc}") from exc
        payload: dict[str, Any] = {"state_dict": state}
        if "config" in meta:
            payload["config"] = json.loads(meta["config"])
            payload["format"] = meta.get("format")
        if "extra" in meta:
            payload["extra"] = json.loads(meta["extra"])
        return payload
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"checkpoint {path} holds pickled Python objects that safe loading refuses to run "
            f"(weights_only=True): {str(exc).splitlines()[0]}"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - torch raises many types for damaged files
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt: {exc}") from exc
    if not isinstance(payload, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(payload).__name__}, not a state dict")
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
        raise CheckpointError("no state dict of tensors found (looked under 'state_dict' and 'model')")
    return {k.removeprefix("module."): v for k, v in state.items()}


def infer_config(state: dict[str, torch.Tensor]) -> ModelConfig:
    """Rebuild an iCMFormer config from official-layout tensor shapes."""
    try:
        w = state["backbone.patch_embed.proj.weight"]
        pos = state["backbone.pos_embed"]
    except KeyError as exc:
        raise CheckpointError(f"not an iCMFormer checkpoint: missing key {exc.args[0]}") from None
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


def load_model(
    path: Path | str, *, map_location: str | torch.device = "cpu", expect_arch: str | None = None
) -> nn.Module:
    """Build the network a checkpoint describes and load its weights strictly (eval mode)."""
    path = Path(path)
    payload = read_checkpoint_file(path)
    try:
        state = extract_state_dict(payload)
    except CheckpointError as exc:
        raise CheckpointError(f"checkpoint {path}: {exc}") from None
    if "config" in payload and isinstance(payload["config"], dict) and "embed_dim" in payload["config"]:
        try:
            cfg = ModelConfig.from_dict(payload["config"])
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {path} has an invalid model config: {exc}") from exc
    else:
        try:
            cfg = infer_config(state)
        except CheckpointError as exc:
            raise CheckpointError(f"checkpoint {path}: {exc}") from None
        except KeyError as exc:
            raise CheckpointError(f"checkpoint {path}: not an iCMFormer checkpoint (missing {exc})") from None
    if expect_arch and cfg.arch != expect_arch:
        raise CheckpointError(f"checkpoint {path} is an {cfg.arch} model, expected {expect_arch}")
    model = build_model(cfg)
    dropped = [k for k in state if UNUSED_OFFICIAL_KEYS.match(k)]
    state = {k: v for k, v in state.items() if k not in dropped}
    own = model.state_dict()
    state = {k: (v.to(own[k].dtype) if k in own and v.is_floating_point() else v) for k, v in state.items()}
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
        raise CheckpointError(f"checkpoint {path} does not match a {cfg.arch} model "
                              f"(embed_dim={cfg.embed_dim}, depth={cfg.depth}): " + "; ".join(parts))
    model.load_state_dict(state, strict=True)
    model.checkpoint_extra = payload.get("extra", {})  # type: ignore[assignment]
    return model.to(map_location).eval()
