"""Checkpoint files: the I/O policy around the format ``src_models.checkpoint_format`` defines.

Here: loading without executing pickled code (``torch.load(weights_only=True)`` / safetensors),
a network built on the meta device before any memory is spent on a file's config, fp16 storage,
atomic writes, and one-line :class:`CheckpointError` messages that name the file. What the
payload holds (our config + state dict, or an official iCMFormer state dict whose config is
inferred from shapes) is the model package's knowledge.
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from src_models import ModelConfig, build_model
from src_models.checkpoint_format import (  # noqa: F401 - FORMAT, infer_config etc. re-exported
    FORMAT,
    FORMAT_VERSION,
    UNUSED_OFFICIAL_KEYS,
    CheckpointFormatError,
    check_state,
    config_of,
    drop_unused_official,
    encode_metadata,
    encode_payload,
    extract_state_dict,
    infer_config,
    load_weights,
    read_payload,
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

        save_file(state, str(path), metadata=encode_metadata(cfg, extra))
    else:
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(encode_payload(cfg, state, extra), tmp)
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
        return read_payload(str(path))
    except CheckpointFormatError as exc:
        raise CheckpointError(f"checkpoint {path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise CheckpointError(f"checkpoint {path} is corrupt or not a safetensors file: {_first_line(exc)}") from exc


def _config_of(path: Path, payload: dict[str, Any], state: dict[str, torch.Tensor]) -> ModelConfig:
    """The file's own config when it has one (ours), else one inferred from official shapes."""
    try:
        return config_of(payload, state)
    except CheckpointFormatError as exc:
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
    try:
        check_state(cfg, state, own)
    except CheckpointFormatError as exc:
        raise CheckpointError(f"checkpoint {path} {exc}") from None
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
    except CheckpointFormatError as exc:
        raise CheckpointError(f"checkpoint {path}: {exc}") from None
    cfg = _config_of(path, payload, state)
    if expect_arch and cfg.arch != expect_arch:
        raise CheckpointError(f"checkpoint {path} is an {cfg.arch} model, expected {expect_arch}")
    state = drop_unused_official(state)
    _check_state(path, cfg, state, _build(cfg, "meta", path).state_dict())
    model = _build(cfg, "cpu", path)
    load_weights(model, state)
    model.checkpoint_extra = payload.get("extra", {})  # type: ignore[assignment]
    return model.to(map_location).eval()
