"""Held-out validation, so training picks its best checkpoint: SOIS by NoC, MOIS by the
category-target NoC of the MOIS "additional" protocol.

Uses a small fixed set of objects from a dev split (COCO_Tiny val2017 by default) — never
GrabCut or Berkeley, which are benchmarks only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from src_models import Clicks

from ..data import open_dataset
from ..engine import Predictor, PredictorConfig
from ..evaluation import evaluate_object
from ..evaluation_mois import MoisResult, recall_curve, summarize_mois
from ..exemplar import ExemplarPredictor, RecallConfig
from ..metrics import summarize
from ..mois import MoisTarget, build_mois_targets, dios_clicks

BENCHMARKS = {"GrabCut", "Berkeley"}


@dataclass
class ValidationObject:
    image: np.ndarray
    mask: np.ndarray
    ignore: np.ndarray | None


def open_dev_dataset(name: str, data_root: str | None):
    """A validation dataset; the benchmarks are refused (never tune on them)."""
    if name in BENCHMARKS:
        raise ValueError(f"{name} is a benchmark: never validate (tune) on it")
    return open_dataset(name, data_root)


def _downscaled_samples(name: str, data_root: str | None, max_side: int) -> Iterator[tuple]:
    """(sample, image, scale, (w, h)) for each image of a held-out set, read only when asked for,
    downsized to ``max_side`` (validation sees images at the training pool's scale)."""
    dataset = open_dev_dataset(name, data_root)
    for i in range(len(dataset)):
        sample = dataset[i]
        yield (sample, *_downscale(sample.image, max_side))


def _downscale(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float, tuple[int, int]]:
    scale = min(1.0, max_side / max(image.shape[:2]))
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    if scale < 1.0:
        image = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
    return image, scale, size


def _resize_mask(mask: np.ndarray | None, scale: float, size: tuple[int, int]) -> np.ndarray | None:
    if mask is None or scale >= 1.0:
        return mask
    return np.asarray(Image.fromarray(np.asarray(mask, np.uint8) * 255).resize(size, Image.BILINEAR)) > 127


class ValidationSet:
    """A fixed list of (image, mask) pairs, downscaled like the training pool."""

    def __init__(self, objects: list[ValidationObject]) -> None:
        if not objects:
            raise ValueError("the validation set has no objects")
        self.objects = objects

    @classmethod
    def from_dataset(cls, name: str, data_root: str | None, n_objects: int, max_side: int,
                     min_area: int) -> "ValidationSet":
        objects: list[ValidationObject] = []
        for sample, image, scale, size in _downscaled_samples(name, data_root, max_side):
            if len(objects) >= n_objects:
                break
            ignore = sample.ignore
            if ignore is not None and scale < 1.0:
                ignore = np.asarray(Image.fromarray(ignore.astype(np.uint8)).resize(size, Image.NEAREST)) > 0
            # the largest object of each image: one per image keeps the set diverse
            masks = sorted(sample.masks, key=lambda m: -int(m.sum()))[:1]
            for full in masks:
                mask = _resize_mask(full, scale, size)
                if mask.sum() >= min_area * scale * scale:
                    objects.append(ValidationObject(image, mask, ignore))
        return cls(objects)

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, max_clicks: int = 10) -> dict[str, float]:
        """NoC@85/90 and mIoU@1/5/10 of ``model`` (put in eval mode) over the fixed objects."""
        model.eval()
        device = next(model.parameters()).device
        # the network alone: refinement is an engine setting, not what training changes
        predictor = Predictor(model, PredictorConfig(device=str(device), precision="fp32", refine="none"))
        curves = []
        for obj in self.objects:
            predictor.set_image(obj.image)
            ious, _, _ = evaluate_object(predictor, obj.mask, obj.ignore, max_clicks)
            curves.append(ious)
        s = summarize(curves, (0.85, 0.90), max_clicks)
        arr = np.asarray(curves)
        return {"NoC@85": float(s["NoC@85"]), "NoC@90": float(s["NoC@90"]),
                "mIoU@1": float(arr[:, 0].mean()), "mIoU@5": float(arr[:, min(4, max_clicks - 1)].mean()),
                "mIoU@10": float(arr[:, min(9, max_clicks - 1)].mean())}

    @staticmethod
    def key(metrics: dict[str, float]) -> tuple[float, ...]:
        """Lower is better: NoC@85 picks ``best.pt``, then the late-click IoU (corrections) —
        NoC alone ties often on a small set and says nothing about whether clicks 5-10 help."""
        return (metrics["NoC@85"], -metrics.get("mIoU@10", 0.0))


@dataclass
class MoisValidationTarget:
    image: np.ndarray
    target: MoisTarget
    exemplar_clicks: Clicks


class MoisValidationSet:
    """Fixed Alg. 1 targets with golden exemplars and fixed DIOS clicks ("additional" protocol),
    scored at the engine's recall view (``RecallConfig.view``), so ``best.pt`` is the best model as used."""

    def __init__(self, targets: list[MoisValidationTarget],
                 recall_view: int | None = RecallConfig.view) -> None:
        if not targets:
            raise ValueError("the MOIS validation set has no image with two objects of one category")
        self.targets, self.recall_view = targets, recall_view

    @classmethod
    def from_dataset(cls, name: str, data_root: str | None, n_targets: int, max_side: int,
                     seed: int = 0) -> "MoisValidationSet":
        rng = np.random.default_rng(seed)
        targets: list[MoisValidationTarget] = []
        for sample, image, scale, size in _downscaled_samples(name, data_root, max_side):
            if len(targets) >= n_targets:
                break
            for t in build_mois_targets(sample, rng)[:1]:  # one target per image keeps it diverse
                resized = [_resize_mask(m, scale, size) for m in t.instances]
                exemplar = resized[t.exemplar_index]
                instances = [m for m in resized if m.any()]  # slivers lost to the downscale drop out
                if len(instances) < 2 or not exemplar.any():
                    continue
                index = next(k for k, m in enumerate(instances) if m is exemplar)
                small = MoisTarget(t.sample, t.category, index, instances, _resize_mask(t.ignore, scale, size))
                targets.append(MoisValidationTarget(image, small, dios_clicks(small.exemplar, rng)))
        return cls(targets)

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, max_clicks: int = 10) -> dict[str, float]:
        """NoC@85/90 and mIoU+@0/5 of the category target (local recall updates, as the engine)."""
        model.eval()
        device = next(model.parameters()).device
        recaller = ExemplarPredictor(model, RecallConfig(device=str(device), precision="fp32", view=self.recall_view))
        results = []
        for vt in self.targets:
            recaller.set_image(vt.image)
            recaller.set_exemplar(vt.target.exemplar, vt.exemplar_clicks)
            ious, _, _ = recall_curve(recaller, vt.target.target, vt.target.ignore, max_clicks)
            results.append(MoisResult("additional", vt.target.sample, vt.target.category,
                                      len(vt.target.instances), 0, ious))
        s = summarize_mois(results, (0.85, 0.90), max_clicks)
        return {"NoC@85": s["NoC@85"], "NoC@90": s["NoC@90"], "mIoU+@0": s["mIoU+@0"],
                "mIoU+@5": s[f"mIoU+@{min(5, max_clicks)}"]}

    @staticmethod
    def key(metrics: dict[str, float]) -> tuple[float, ...]:
        """Lower is better: NoC first; while NoC is stuck at the budget, the category IoU decides."""
        return (metrics["NoC@85"], -metrics["mIoU+@5"])
