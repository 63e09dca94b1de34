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
import warnings
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


def _first_line(exc: BaseException, limit: int = 200) -> str:
    """The gist of an exception for a one-line message (never empty)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _unpickling_reason(path: Path, exc: Exception) -> str:
    """What an UnpicklingError under weights_only=True means for this file."""
    text = str(exc)
    refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if refused:
        return (f"checkpoint {path} holds pickled Python objects ({refused.group(1)}) that safe loading "
                "refuses to run (weights_only=True)")
    return (f"{path} is not a PyTorch checkpoint: it is a plain pickle file, which is never loaded "
            "(it could run code); save weights with torch.save or safetensors")


def _torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)`` with a message that says what the file is."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not head:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): the file was not written completely")
    legacy = len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5  # a pickle's PROTO opcode
    if not (head.startswith(b"PK\x03\x04") or legacy):
        raise CheckpointError(f"{path} is not a checkpoint: neither a PyTorch file (zip archive or legacy "
                              "pickle) nor a .safetensors file")
    try:
        with warnings.catch_warnings():  # torch warns about the protocol before refusing a plain pickle
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(_unpickling_reason(path, exc)) from exc
    except Exception as exc:  # noqa: BLE001 - torch raises many types for damaged files
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt: {_first_line(exc)}") from exc


def read_checkpoint_file(path: Path | str) -> dict[str, Any]:
    """Raw payload of a checkpoint file, refusing anything that needs pickled code to load."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint path is not a file: {path}")
    try:
        if path.stat().st_size == 0:
            raise CheckpointError(f"checkpoint {path} is empty (0 bytes): the file was not written completely")
        if path.suffix == ".safetensors":
            return _read_safetensors(path)
        payload = _torch_load(path)
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or _first_line(exc)}") from exc
    if not isinstance(payload, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(payload).__name__}, not a state dict")
    return payload


def _read_safetensors(path: Path) -> dict[str, Any]:
    try:
        from safetensors import safe_open  # noqa: PLC0415

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise CheckpointError(f"checkpoint {path} is corrupt or not a safetensors file: {_first_line(exc)}") from exc
    payload: dict[str, Any] = {"state_dict": state}
    for key in ("config", "extra"):
        if key in meta:
            try:
                payload[key] = json.loads(meta[key])
            except json.JSONDecodeError as exc:
                raise CheckpointError(f"checkpoint {path}: its {key!r} metadata is not valid JSON ({exc})") from None
    if "config" in meta:
        payload["format"] = meta.get("format")
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


def _config_of(path: Path, payload: dict[str, Any], state: dict[str, torch.Tensor]) -> ModelConfig:
    """The file's own config when it has one (ours), else one inferred from official shapes."""
    cfg = payload.get("config")
    if "config" in payload and payload.get("format") == FORMAT and not isinstance(cfg, dict):
        raise CheckpointError(f"checkpoint {path} has an invalid model config: not a mapping but "
                              f"{type(cfg).__name__}")
    try:
        if isinstance(cfg, dict) and "embed_dim" in cfg:
            return ModelConfig.from_dict(cfg)
        return infer_config(state)
    except CheckpointError as exc:
        raise CheckpointError(f"checkpoint {path}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} has an invalid model config: {exc}") from None
    except (KeyError, IndexError, AttributeError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {path}: not an iCMFormer checkpoint ({_first_line(exc)})") from None


def _build(cfg: ModelConfig, device: str | torch.device, path: Path) -> nn.Module:
    """``build_model`` whose failures (timm, assertions in torch) name the checkpoint."""
    try:
        with torch.device(device):
            return build_model(cfg)
    except Exception as exc:  # noqa: BLE001 - any failure here means the config cannot be built
        raise CheckpointError(f"checkpoint {path} has a model config that cannot be built: "
                              f"{_first_line(exc)}") from None


def _check_state(path: Path, cfg: ModelConfig, state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> None:
    """Keys, shapes and values of the file against the network (``own`` may be meta tensors)."""
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
    bad = sorted(k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))
    if bad:
        raise CheckpointError(f"checkpoint {path} holds NaN or infinite weights in {len(bad)} tensors "
                              f"(e.g. {bad[:3]}): it would predict nothing useful")


def load_model(
    path: Path | str, *, map_location: str | torch.device = "cpu", expect_arch: str | None = None
) -> nn.Module:
    """Build the network a checkpoint describes and load its weights strictly (eval mode).

    The config in a file is not trusted: the network is first built on the meta device (no
    memory) and its keys and shapes compared with the file's tensors, so a small file cannot
    make us allocate a huge model; only a file that matches is built for real.
    """
    path = Path(path)
    payload = read_checkpoint_file(path)
    try:
        state = extract_state_dict(payload)
    except CheckpointError as exc:
        raise CheckpointError(f"checkpoint {path}: {exc}") from None
    cfg = _config_of(path, payload, state)
    if expect_arch and cfg.arch != expect_arch:
        raise CheckpointError(f"checkpoint {path} is an {cfg.arch} model, expected {expect_arch}")
    state = {k: v for k, v in state.items() if not UNUSED_OFFICIAL_KEYS.match(k)}
    _check_state(path, cfg, state, _build(cfg, "meta", path).state_dict())
    model = _build(cfg, "cpu", path)
    own = model.state_dict()
    state = {k: (v.to(own[k].dtype) if v.is_floating_point() else v) for k, v in state.items()}
    model.load_state_dict(state, strict=True)
    model.checkpoint_extra = payload.get("extra", {})  # type: ignore[assignment]
    return model.to(map_location).eval()
