"""napari-icmformer: click-based interactive segmentation with iCMFormer / iCMFormer++."""

from .checkpoints import CheckpointError, load_model, save_checkpoint
from .engine import Predictor, PredictorConfig

__version__ = "0.1.0"
__all__ = ["CheckpointError", "Predictor", "PredictorConfig", "load_model", "save_checkpoint"]
