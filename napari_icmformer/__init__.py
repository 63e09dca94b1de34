"""napari-icmformer: click-based interactive segmentation with iCMFormer / iCMFormer++."""

from .checkpoints import CheckpointError, load_model, save_checkpoint
from .engine import Predictor, PredictorConfig
from .exemplar import ExemplarPredictor, RecallResult, split_instances

__version__ = "0.1.0"
__all__ = ["CheckpointError", "ExemplarPredictor", "Predictor", "PredictorConfig", "RecallResult", "load_model",
           "save_checkpoint", "split_instances"]
