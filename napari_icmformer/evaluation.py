"""The SOIS benchmark protocol (docs/protocols.md §4) on any method with set_image / reset_object / predict."""

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
from .runtime import DEFAULT_THRESHOLD


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


@dataclass
class Step:
    """One turn of the simulated user: the clicks so far, the mask after them and its IoU.
    ``placed`` is False when no error was left: no click was placed, mask and IoU carry forward."""

    clicks: Clicks
    mask: np.ndarray
    iou: float
    placed: bool


def click_session(
    respond: Callable[[Clicks], np.ndarray],
    gt: np.ndarray,
    ignore: np.ndarray | None = None,
    max_clicks: int = 20,
    start: np.ndarray | None = None,
    first_on: np.ndarray | None = None,
) -> Iterator[Step]:
    """The benchmark user (docs/protocols.md §4), the one click loop of every protocol (SOIS, MOIS exemplar and
    recall, annotate-all): up to ``max_clicks`` turns, each the clicker's next click on the error
    between the current mask and ``gt``; ``respond(clicks)`` gives the mask after them.

    ``start`` is the mask before any click (default: empty, and then an empty ``gt`` is a
    ``ValueError``); ``first_on`` is what the first click aims at when it is not ``gt`` (the
    object's free pixels in annotate-all). The caller stops early by leaving the loop; once no
    error is left, the remaining turns carry the last mask forward.
    """
    clicks = Clicks()
    pred = np.zeros(gt.shape, bool) if start is None else start
    score = 0.0 if start is None else iou(start, gt, ignore)
    for k in range(max_clicks):
        if k == 0 and start is None:
            click = first_eval_click(gt if first_on is None else first_on, ignore)
        else:
            click = next_eval_click(pred, gt, ignore, clicks)
        if click is None:
            for _ in range(k, max_clicks):
                yield Step(clicks, pred, score, False)
            return
        clicks = clicks.add(click.y, click.x, click.positive)
        pred = respond(clicks)
        score = iou(pred, gt, ignore)
        yield Step(clicks, pred, score, True)


def evaluate_object(
    method: InteractiveMethod,
    gt: np.ndarray,
    ignore: np.ndarray | None,
    max_clicks: int = 20,
    threshold: float = DEFAULT_THRESHOLD,
) -> tuple[list[float], Clicks, float]:
    """SOIS: the IoU after each of ``max_clicks`` clicks, the clicks and the seconds predicting.

    Tie rule: positive only when the FN maximum is strictly larger (RITM); clicked pixels are
    skipped; when no error is left no click is placed and the IoU carries forward.
    """
    method.reset_object()
    state = {"prob": None, "seconds": 0.0}

    def respond(clicks: Clicks) -> np.ndarray:
        t = time.perf_counter()
        state["prob"] = method.predict(clicks, state["prob"])
        state["seconds"] += time.perf_counter() - t
        return state["prob"] > threshold

    steps = list(click_session(respond, gt, ignore, max_clicks))
    return [s.iou for s in steps], steps[-1].clicks if steps else Clicks(), state["seconds"]


def iter_dataset(
    method: InteractiveMethod, dataset, name: str, max_clicks: int = 20, limit: int | None = None,
    threshold: float = DEFAULT_THRESHOLD, on_skip: Callable[[int, str, Exception], None] | None = None,
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
    threshold: float = DEFAULT_THRESHOLD, on_skip: Callable[[int, str, Exception], None] | None = None,
) -> list[ObjectResult]:
    return list(iter_dataset(method, dataset, name, max_clicks, limit, threshold, on_skip))
