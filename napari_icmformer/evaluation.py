"""The SOIS benchmark protocol (SPEC §4) on any method with set_image / reset_object / predict."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from tqdm import tqdm

from src_models import Clicks

from .clicking import first_eval_click, next_eval_click
from .metrics import iou


class InteractiveMethod(Protocol):
    def set_image(self, image: object) -> None: ...
    def reset_object(self) -> None: ...
    def predict(self, clicks: Clicks, prev_mask: np.ndarray | None = None) -> np.ndarray: ...


@dataclass
class ObjectResult:
    dataset: str
    sample: str
    object_index: int
    ious: list[float] = field(default_factory=list)
    clicks: list[tuple[float, float, bool]] = field(default_factory=list)
    seconds: float = 0.0


def evaluate_object(
    method: InteractiveMethod,
    gt: np.ndarray,
    ignore: np.ndarray | None,
    max_clicks: int = 20,
    threshold: float = 0.49,
) -> tuple[list[float], Clicks, float]:
    """Simulated user (SPEC §4): returns the IoU after each click, the clicks and the seconds.

    Tie rule: positive only when the FN maximum is strictly larger (RITM); clicked pixels are
    skipped; when no error is left no click is placed and the IoU carries forward.
    """
    method.reset_object()
    clicks, prob, pred = Clicks(), None, np.zeros_like(gt, bool)
    ious: list[float] = []
    seconds = 0.0
    for k in range(max_clicks):
        click = first_eval_click(gt, ignore) if k == 0 else next_eval_click(pred, gt, ignore, clicks)
        if click is None:
            ious.append(ious[-1])
            continue
        clicks = clicks.add(click.y, click.x, click.positive)
        t = time.perf_counter()
        prob = method.predict(clicks, prob)
        seconds += time.perf_counter() - t
        pred = prob > threshold
        ious.append(iou(pred, gt, ignore))
    return ious, clicks, seconds


def iter_dataset(
    method: InteractiveMethod, dataset, name: str, max_clicks: int = 20, limit: int | None = None,
    threshold: float = 0.49, on_skip: Callable[[int, str, Exception], None] | None = None,
) -> Iterator[ObjectResult]:
    """The results of a dataset, one sample at a time (a caller keeps what is finished).

    With ``on_skip``, a sample that cannot be read or segmented (``ValueError``, which includes
    ``DatasetError``) is reported as ``on_skip(index, sample name, error)`` and skipped whole;
    without it, the error propagates.
    """
    n = len(dataset) if limit is None else min(limit, len(dataset))
    for i in tqdm(range(n), desc=name, dynamic_ncols=True):
        sample_name = f"#{i}"
        try:
            sample = dataset[i]
            sample_name = sample.name
            method.set_image(sample.image)
            done = []
            for j, gt in enumerate(sample.masks):
                if not gt.any():
                    continue
                ious, clicks, seconds = evaluate_object(method, gt, sample.ignore, max_clicks, threshold)
                done.append(ObjectResult(name, sample.name, j, ious, [(c.y, c.x, c.positive) for c in clicks],
                                         seconds))
        except ValueError as exc:
            if on_skip is None:
                raise
            on_skip(i, sample_name, exc)
            continue
        yield from done


def evaluate_dataset(
    method: InteractiveMethod, dataset, name: str, max_clicks: int = 20, limit: int | None = None,
    threshold: float = 0.49, on_skip: Callable[[int, str, Exception], None] | None = None,
) -> list[ObjectResult]:
    return list(iter_dataset(method, dataset, name, max_clicks, limit, threshold, on_skip))
