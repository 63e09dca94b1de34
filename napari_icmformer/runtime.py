"""What both predictors share: device and precision, autocast, the decision threshold, and the
checks that turn a caller's wrong clicks or previous mask into one clear error.

``Predictor`` (engine.py) and ``ExemplarPredictor`` (exemplar.py) run on the same devices with
the same rules; keeping those rules here means a fix (a new device, a stricter check) reaches
both.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from src_models import Clicks
from src_models.clicks import on_image

# The probability above which a pixel is the object: the paper's 0.49 (RITM's convention), used by
# the predictors, the annotators, evaluation and training's iterative clicks alike.
DEFAULT_THRESHOLD = 0.49


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU; asking for a missing one is an error."""
    name = name.lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available on this machine")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' requested but Apple MPS is not available on this machine")
    if name not in ("cpu", "mps") and not name.startswith("cuda"):
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or mps")
    return torch.device(name)


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    table = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if precision not in table:
        raise ValueError(f"unknown precision {precision!r}; use auto, fp32, fp16 or bf16")
    if device.type == "cpu" and precision != "fp32":
        raise ValueError("fp16/bf16 inference is for GPUs; use fp32 on the CPU")
    return table[precision]


def resolve_runtime(device: str, precision: str) -> tuple[torch.device, torch.dtype]:
    """The device and dtype a predictor runs with (``resolve_device``, then ``resolve_dtype``)."""
    dev = resolve_device(device)
    return dev, resolve_dtype(precision, dev)


def check_fields(cfg: object, choices: dict[str, tuple], types: dict[str, type]) -> None:
    """One clear error naming the field of a config dataclass that is not one of its choices or
    not of its type, or whose ``threshold`` is outside (0, 1)."""
    owner = type(cfg).__name__
    for name, options in choices.items():
        value = getattr(cfg, name)
        if value not in options:
            raise ValueError(f"{owner}.{name} must be {' or '.join(map(repr, options))}, got {value!r}")
    for name, kind in types.items():
        if not isinstance(getattr(cfg, name), kind):
            raise ValueError(f"{owner}.{name} must be a {kind.__name__}")
    threshold = cfg.threshold  # type: ignore[attr-defined]
    if not (0.0 < float(threshold) < 1.0):  # 0 or 1 would make every pixel, or none, the object
        raise ValueError(f"{owner}.threshold must be in (0, 1), got {threshold!r}")


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """Mixed precision where ``dtype`` asks for it (CUDA fp16/bf16); a no-op in fp32."""
    return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)


def check_clicks(clicks: Clicks, shape: tuple[int, int]) -> None:
    if not isinstance(clicks, Clicks):
        raise TypeError(f"clicks must be a src_models.Clicks (e.g. Clicks().add(y, x)), got {type(clicks).__name__}")
    h, w = shape
    for c in clicks:
        if not (np.isfinite(c.y) and np.isfinite(c.x)):
            raise ValueError(f"click {c.index} has a non-finite position ({c.y}, {c.x})")
        if not on_image(c.y, c.x, (h, w)):
            raise ValueError(f"click {c.index} at (y={c.y:g}, x={c.x:g}) is outside the image of "
                             f"height {h} and width {w}")


def check_prev_mask(prev_mask: object, shape: tuple[int, int]) -> np.ndarray | None:
    """The previous prediction as float32 probabilities in [0, 1], or a clear error.

    The network was trained on probabilities: a 0/255 mask (a saved PNG) would be fed as 255 and
    NaN spreads to every output pixel, both silently. Booleans and 0/1 or 0/255 integer masks are
    read as binary masks; anything else that is not a finite probability is refused.
    """
    if prev_mask is None:
        return None
    arr = np.asarray(prev_mask)
    if arr.shape != shape:
        raise ValueError(f"prev_mask shape {arr.shape} does not match the image {shape}")
    if arr.dtype == bool:
        return arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.integer):
        values = np.unique(arr)
        if np.isin(values, (0, 1)).all():
            return arr.astype(np.float32)
        if np.isin(values, (0, 255)).all():
            return (arr == 255).astype(np.float32)
        raise ValueError("an integer prev_mask must be a binary mask (0/1 or 0/255), got values "
                         f"{values[:5].tolist()}{' …' if len(values) > 5 else ''}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"prev_mask must be probabilities or a boolean mask, got dtype {arr.dtype}")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise ValueError(f"prev_mask holds {int((~np.isfinite(arr)).sum())} NaN or infinite values")
    lo, hi = float(arr.min(initial=0.0)), float(arr.max(initial=0.0))
    if lo < -1e-3 or hi > 1.0 + 1e-3:  # blending and resizing may round a little past [0, 1]
        raise ValueError(f"prev_mask must be probabilities in [0, 1], got values from {lo:g} to {hi:g} "
                         "(a 0/255 mask: pass it as uint8 or bool)")
    return np.clip(arr, 0.0, 1.0, out=arr)
