"""The MOIS protocol (paper §4.4.2): exemplar + recall clicks until the category target is right.

Two modes, both compared in the same run with the SOIS-only reference (the iCMFormer model
clicking the whole category target, exemplar ignored):
* ``additional``: a golden exemplar (GT mask + DIOS clicks) is given; only recall clicks count.
* ``collective``: the SOIS model makes the exemplar with ≤ 5 clicks (stopping when a click gains
  < 1 % IoU); those clicks count too.
Curves hold the IoU of the category target after k counted clicks, k = 0..max_clicks (k = 0:
the proposals before any click, after the exemplar's clicks in collective mode).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from src_models import Clicks

from .evaluation import click_session, evaluate_object
from .exemplar import RecallConfig
from .metrics import instance_f1, iou
from .mois import MoisTarget, dios_clicks
from .postprocess import click_instances, split_height
from .runtime import DEFAULT_THRESHOLD


@dataclass
class MoisResult:
    mode: str
    sample: str
    category: int
    instances: int
    exemplar_clicks: int  # counted in collective mode, 0 in additional mode
    ious: list[float] = field(default_factory=list)  # after 0..max_clicks counted clicks
    seconds: float = 0.0
    exemplar_fallback: bool = False  # collective: the SOIS exemplar was empty/whole image, GT used
    # object-level F1 (IoU > 0.5) of the instance split before the first counted recall click
    # and after the last counted click (0 when no category mask exists yet)
    instance_f1: tuple[float, float] = (0.0, 0.0)


def target_seed(seed: int, image_index: int, target_index: int) -> int:
    """The seed of a target's DIOS exemplar clicks: fixed per (run seed, image, target), so every
    method and every script sees the same exemplar clicks."""
    return seed * 100003 + image_index * 101 + target_index


def make_exemplar(predictor, gt: np.ndarray, ignore: np.ndarray | None, max_clicks: int = 5,
                  min_gain: float = 0.01, threshold: float = DEFAULT_THRESHOLD) -> tuple[np.ndarray, Clicks]:
    """Collective mode: the SOIS model segments the exemplar; stop after ``max_clicks`` or when a
    click gains less than ``min_gain`` IoU (that click still counts)."""
    predictor.reset_object()
    state = {"prob": None}

    def respond(clicks: Clicks) -> np.ndarray:
        state["prob"] = predictor.predict(clicks, state["prob"])
        return state["prob"] > threshold

    pred, clicks, best = np.zeros_like(gt, bool), Clicks(), 0.0
    for k, step in enumerate(click_session(respond, gt, ignore, max_clicks)):
        if not step.placed:
            break
        pred, clicks = step.mask, step.clicks
        gain, best = step.iou - best, max(best, step.iou)
        if k > 0 and gain < min_gain:
            break
    return pred, clicks


def recall_curve(recaller, target: np.ndarray, ignore: np.ndarray | None,
                 budget: int) -> tuple[list[float], float, tuple]:
    """IoU of the category target before and after each of ``budget`` simulated recall clicks,
    the seconds, and the (first, last) recall results."""
    t0 = time.perf_counter()
    first = recaller.recall(Clicks(), None)
    state = {"result": first}

    def respond(clicks: Clicks) -> np.ndarray:
        state["result"] = recaller.recall(clicks, state["result"].prob)
        return state["result"].mask

    ious = [iou(first.mask, target, ignore)]
    ious += [s.iou for s in click_session(respond, target, ignore, budget, start=first.mask)]
    return ious, time.perf_counter() - t0, (first, state["result"])


def evaluate_mois_target(recaller, predictor, image: np.ndarray, target: MoisTarget, mode: str,
                         max_clicks: int = 20, seed: int = 0) -> MoisResult:
    """One target in ``additional`` or ``collective`` mode (``recaller``: ExemplarPredictor)."""
    gt = target.target
    recaller.set_image(image)
    if mode == "additional":
        rng = np.random.default_rng(seed)
        exemplar, ex_clicks = target.exemplar, dios_clicks(target.exemplar, rng)
        counted, fallback = 0, False
    elif mode == "collective":
        predictor.set_image(image)
        exemplar, ex_clicks = make_exemplar(predictor, target.exemplar, target.ignore)
        counted = len(ex_clicks)
        fallback = bool(not exemplar.any() or exemplar.all())
        if fallback:  # no usable object after 5 clicks: counted, then the GT mask stands in
            exemplar = target.exemplar
    else:
        raise ValueError(f"unknown MOIS mode {mode!r}; use additional or collective")
    recaller.set_exemplar(exemplar, ex_clicks)
    ious, seconds, (first, last) = recall_curve(recaller, gt, target.ignore, max(0, max_clicks - counted))
    # the curve over counted clicks: the exemplar's clicks come first (no category mask yet)
    curve = [0.0] * counted + ious
    f1 = (instance_f1(first.instances, target.instances, ignore=target.ignore),
          instance_f1(last.instances, target.instances, ignore=target.ignore))
    return MoisResult(mode, target.sample, target.category, len(target.instances), counted,
                      curve[: max_clicks + 1], seconds, fallback, f1)


class _KeepLast:
    """Wraps an interactive method and keeps its last probability map."""

    def __init__(self, method) -> None:
        self.method, self.prob = method, None

    def reset_object(self) -> None:
        self.method.reset_object()

    def predict(self, clicks: Clicks, prev_mask: np.ndarray | None = None) -> np.ndarray:
        self.prob = self.method.predict(clicks, prev_mask)
        return self.prob


def evaluate_sois_reference(predictor, image: np.ndarray, target: MoisTarget, max_clicks: int = 20, *,
                            config: RecallConfig | None = None) -> MoisResult:
    """The SOIS-only reference: iCMFormer clicks the whole category target, exemplar ignored.
    Its instances are split with ``config``'s rules (those of the recaller it is compared with)."""
    config = config or RecallConfig()
    predictor.set_image(image)
    recorder = _KeepLast(predictor)
    ious, _, seconds = evaluate_object(recorder, target.target, target.ignore, max_clicks)
    # the same instance split and size rule as the recall results
    min_area = max(16.0, config.min_area * float(target.exemplar.sum()))
    final = np.zeros(target.target.shape, np.int32) if recorder.prob is None else \
        click_instances(recorder.prob > config.threshold, Clicks(),
                        split_height(target.exemplar, config.split_h_per_radius), min_area)[0]
    f1 = instance_f1(final, target.instances, ignore=target.ignore)
    return MoisResult("sois-only", target.sample, target.category, len(target.instances), 0,
                      [0.0, *ious], seconds, instance_f1=(0.0, f1))


def summarize_mois(results: list[MoisResult], thresholds=(0.85, 0.90), max_clicks: int = 20) -> dict[str, float]:
    """NoC@t (clicks until the target IoU ≥ t, max_clicks when never), NoFI@t (targets — one
    per image and category — never reaching t), mIoU+@k, and the mean instance F1 before the
    first counted recall click (F1@start) and at the end (F1@end)."""
    out: dict[str, float] = {"targets": len(results)}
    for t in thresholds:
        tag = f"{round(t * 100)}"
        nocs = [next((k for k, v in enumerate(r.ious) if v >= t), max_clicks) for r in results]
        out[f"NoC@{tag}"] = float(np.mean(nocs)) if nocs else float("nan")
        out[f"NoFI@{tag}"] = int(sum(1 for r in results if max(r.ious, default=0) < t))
    arr = np.array([r.ious + [r.ious[-1]] * (max_clicks + 1 - len(r.ious)) for r in results]) if results else \
        np.zeros((0, max_clicks + 1))
    for k in range(0, max_clicks + 1):
        out[f"mIoU+@{k}"] = float(arr[:, k].mean()) if len(arr) else float("nan")
    out["F1@start"] = float(np.mean([r.instance_f1[0] for r in results])) if results else float("nan")
    out["F1@end"] = float(np.mean([r.instance_f1[1] for r in results])) if results else float("nan")
    return out
