"""Shipped default checkpoints (small, trained by this project; see the README's model card)."""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent
DEFAULTS = {
    "sois": WEIGHTS_DIR / "icmformer_vit_tiny_default.pt",
    "mois": WEIGHTS_DIR / "icmformer_pp_vit_tiny_default.pt",
}


def default_checkpoint(task: str = "sois") -> Path:
    """Path of the shipped default for ``task``; a clear error if this install has none."""
    from ..checkpoints import CheckpointError  # noqa: PLC0415

    if task not in DEFAULTS:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(DEFAULTS)}")
    path = DEFAULTS[task]
    if not path.is_file():
        raise CheckpointError(
            f"no trained default {task.upper()} checkpoint ships with this install (expected {path}); "
            "pass a checkpoint file with --checkpoint / the widget's model field. "
            "Random weights are never used silently."
        )
    return path
