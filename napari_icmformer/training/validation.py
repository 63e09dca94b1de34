"""Held-out validation by the SOIS protocol, so training picks its best checkpoint by NoC.

Uses a small fixed set of objects from a dev split (COCO_Tiny val2017 by default) — never
GrabCut or Berkeley, which are benchmarks only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..data import open_dataset
from ..engine import Predictor, PredictorConfig
from ..evaluation import evaluate_object
from ..metrics import summarize

BENCHMARKS = {"GrabCut", "Berkeley"}


@dataclass
class ValidationObject:
    image: np.ndarray
    mask: np.ndarray
    ignore: np.ndarray | None


class ValidationSet:
    """A fixed list of (image, mask) pairs, downscaled like the training pool."""

    def __init__(self, objects: list[ValidationObject]) -> None:
        if not objects:
            raise ValueError("the validation set has no objects")
        self.objects = objects

    @classmethod
    def from_dataset(cls, name: str, data_root: str | None, n_objects: int, max_side: int,
                     min_area: int) -> "ValidationSet":
        if name in BENCHMARKS:
            raise ValueError(f"{name} is a benchmark: never validate (tune) on it")
        dataset = open_dataset(name, data_root)
        objects: list[ValidationObject] = []
        for i in range(len(dataset)):
            if len(objects) >= n_objects:
                break
            sample = dataset[i]
            image = sample.image
            scale = min(1.0, max_side / max(image.shape[:2]))
            size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
            if scale < 1.0:
                image = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
            ignore = sample.ignore
            if ignore is not None and scale < 1.0:
                ignore = np.asarray(Image.fromarray(ignore.astype(np.uint8)).resize(size, Image.NEAREST)) > 0
            # the largest object of each image: one per image keeps the set diverse
            masks = sorted(sample.masks, key=lambda m: -int(m.sum()))[:1]
            for full in masks:
                mask = full
                if scale < 1.0:
                    mask = np.asarray(Image.fromarray(full.astype(np.uint8) * 255).resize(size, Image.BILINEAR)) > 127
                if mask.sum() >= min_area * scale * scale:
                    objects.append(ValidationObject(image, mask, ignore))
        return cls(objects)

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, max_clicks: int = 10) -> dict[str, float]:
        """NoC@85/90 and mIoU@1/5 of ``model`` (put in eval mode) over the fixed objects."""
        model.eval()
        device = next(model.parameters()).device
        predictor = Predictor(model, PredictorConfig(device=str(device), precision="fp32"))
        curves = []
        for obj in self.objects:
            predictor.set_image(obj.image)
            ious, _, _ = evaluate_object(predictor, obj.mask, obj.ignore, max_clicks)
            curves.append(ious)
        s = summarize(curves, (0.85, 0.90), max_clicks)
        arr = np.asarray(curves)
        return {"NoC@85": float(s["NoC@85"]), "NoC@90": float(s["NoC@90"]),
                "mIoU@1": float(arr[:, 0].mean()), "mIoU@5": float(arr[:, min(4, max_clicks - 1)].mean())}
