"""napari-icmformer: click-based interactive segmentation with iCMFormer / iCMFormer++.

The public names are imported lazily: napari imports this package for the reader, writer and
sample-data commands too, and those must not pull in torch and timm (see ``_triton_guard``).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "CheckpointError": ".checkpoints", "load_model": ".checkpoints", "save_checkpoint": ".checkpoints",
    "Predictor": ".engine", "PredictorConfig": ".engine",
    "ExemplarPredictor": ".exemplar", "RecallConfig": ".exemplar", "RecallResult": ".exemplar",
    "split_instances": ".postprocess",
}
__all__ = ["CheckpointError", "ExemplarPredictor", "Predictor", "PredictorConfig", "RecallConfig", "RecallResult",
           "load_model", "save_checkpoint", "split_instances"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
