"""TrainConfig values checked when the config is made, so ``--iterations 0`` (which would save
untrained random weights and exit 0), ``--batch-size 0`` or ``--save-every 0`` (a division by
zero at the first step) are refused with the field at fault before any data is loaded.

``trainer.TrainConfig.__post_init__`` calls :func:`check_train_config`; this module does not
import the trainer (no cycle), it reads the fields by name.
"""

from __future__ import annotations

import math
import os
from typing import Any

# field -> (lowest, highest) for integers; None = no upper bound
_INTS: dict[str, tuple[int, int | None]] = {
    "img_size": (32, 8192), "iterations": (1, None), "batch_size": (1, 65536), "warmup": (0, None),
    "max_iter_clicks": (0, 100), "seed": (0, 2**32 - 1), "save_every": (1, None), "threads": (0, 4096),
    "max_side": (32, 65536), "val_every": (1, None), "val_objects": (1, None), "val_max_clicks": (1, 1000),
    "val_min_area": (0, None), "workers": (0, 256),
}
# field -> (lowest, highest, lowest excluded)
_FLOATS: dict[str, tuple[float, float, bool]] = {
    "lr": (0.0, 10.0, True), "weight_decay": (0.0, 10.0, False), "copy_paste": (0.0, 1.0, False),
    "other_kinds": (0.0, 1.0, False),
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _names(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v for v in value)


def check_train_config(cfg: Any) -> None:
    """Raise ``ValueError`` naming the first TrainConfig field whose value cannot train.

    Types are checked too: a YAML ``iterations: "100"`` or ``lr: fast`` is refused here, not as
    a TypeError deep in the loop.
    """
    if cfg.task not in ("sois", "mois"):
        raise ValueError(f"task must be 'sois' or 'mois', got {cfg.task!r}")
    for name, (low, high) in _INTS.items():
        v = getattr(cfg, name)
        if not _is_int(v) or v < low or (high is not None and v > high):
            span = f">= {low}" if high is None else f"in [{low}, {high}]"
            raise ValueError(f"{name} must be an integer {span}, got {v!r}")
    for name, (low, high, open_low) in _FLOATS.items():
        v = getattr(cfg, name)
        ok = (_is_int(v) or isinstance(v, float)) and math.isfinite(v) and (v > low if open_low else v >= low) \
            and v <= high
        if not ok:
            raise ValueError(f"{name} must be a number in {'(' if open_low else '['}{low:g}, {high:g}], got {v!r}")
    if cfg.limit_per_dataset is not None and (not _is_int(cfg.limit_per_dataset) or cfg.limit_per_dataset < 1):
        raise ValueError(f"limit_per_dataset must be an integer >= 1 (or unset), got {cfg.limit_per_dataset!r}")
    if not _names(cfg.datasets):
        raise ValueError(f"datasets must be a non-empty list of dataset names or folders, got {cfg.datasets!r}")
    val = cfg.val_dataset
    if val is not None and not (isinstance(val, (str, os.PathLike)) and str(val)) and not _names(val):
        raise ValueError(f"val_dataset must be a name, a list of names, 'auto' or unset, got {val!r}")
    for name in ("model", "device"):
        if not isinstance(getattr(cfg, name), str) or not getattr(cfg, name):
            raise ValueError(f"{name} must be a non-empty string, got {getattr(cfg, name)!r}")
    for name in ("out_dir", "data_root", "init_from"):
        v = getattr(cfg, name)
        if (v is not None or name == "out_dir") and (not isinstance(v, (str, os.PathLike)) or not str(v)):
            raise ValueError(f"{name} must be a path{'' if name == 'out_dir' else ' (or unset)'}, got {v!r}")
    if not isinstance(cfg.amp, bool):
        raise ValueError(f"amp must be true or false, got {cfg.amp!r}")
    if not isinstance(cfg.model_overrides, dict):
        raise ValueError(f"model_overrides must be a mapping of model config fields, got {cfg.model_overrides!r}")
