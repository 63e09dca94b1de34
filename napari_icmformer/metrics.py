"""Interactive-segmentation metrics: IoU with an ignore region, NoC, NoF, mIoU@k, SPC, and the
object-level F1 of an instance split."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def iou(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """IoU of two boolean masks, pixels under ``ignore`` excluded; two empty masks give 1."""
    pred, gt = pred.astype(bool), gt.astype(bool)
    if ignore is not None:
        keep = ~ignore.astype(bool)
        pred, gt = pred & keep, gt & keep
    union = np.count_nonzero(pred | gt)
    return 1.0 if union == 0 else np.count_nonzero(pred & gt) / union


def noc(ious: Sequence[float], threshold: float, max_clicks: int = 20) -> int:
    """Clicks until IoU ≥ threshold (1-based), ``max_clicks`` when never reached."""
    for k, value in enumerate(ious[:max_clicks], start=1):
        if value >= threshold:
            return k
    return max_clicks


def summarize(curves: Sequence[Sequence[float]], thresholds: Sequence[float], max_clicks: int,
              seconds: float = 0.0, clicks: int = 0) -> dict[str, float]:
    """NoC@t, NoF@t for every threshold, mIoU@k for k = 1..max_clicks, SPC."""
    out: dict[str, float] = {"objects": len(curves)}
    arr = np.array([list(c[:max_clicks]) + [c[-1]] * (max_clicks - len(c)) for c in curves]) if curves else \
        np.zeros((0, max_clicks))
    for t in thresholds:
        tag = f"{round(t * 100)}"
        nocs = [noc(c, t, max_clicks) for c in curves]
        out[f"NoC@{tag}"] = float(np.mean(nocs)) if nocs else float("nan")
        out[f"NoF@{tag}"] = int(sum(1 for c in curves if max(c[:max_clicks], default=0) < t))
    for k in range(1, max_clicks + 1):
        out[f"mIoU@{k}"] = float(arr[:, k - 1].mean()) if len(arr) else float("nan")
    out["SPC"] = seconds / clicks if clicks else float("nan")
    return out


@dataclass
class InstanceMatch:
    """A one-to-one matching of predicted and ground-truth instances (IoU above a threshold)."""

    pairs: list[tuple[int, int, float]]  # (GT index, predicted label, IoU), one per matched GT object
    n_pred: int  # predicted objects (labels > 0 outside the ignore region)
    n_gt: int  # ground-truth objects (non-empty outside the ignore region)

    @property
    def f1(self) -> float:
        """Object-level F1; no objects on either side gives 1."""
        return 1.0 if self.n_gt + self.n_pred == 0 else 2.0 * len(self.pairs) / (self.n_gt + self.n_pred)

    @property
    def mean_iou(self) -> float:
        """Mean IoU of the matched pairs (0 when nothing matched)."""
        return float(np.mean([p[2] for p in self.pairs])) if self.pairs else 0.0


def match_instances(pred_labels: np.ndarray, gt_instances: Sequence[np.ndarray], threshold: float = 0.5,
                    ignore: np.ndarray | None = None) -> InstanceMatch:
    """Match predicted instances (label > 0) to ground-truth instances: a pair matches when
    their IoU exceeds ``threshold`` (≥ 0.5, so each side matches at most once). Each GT instance
    is scored on its own mask, so overlapping GT instances are fine; pixels under ``ignore`` are
    left out as in :func:`iou` (objects entirely inside it do not count)."""
    if threshold < 0.5:
        raise ValueError("instance matching needs threshold >= 0.5 for a one-to-one matching")
    pred = np.asarray(pred_labels)
    keep = None if ignore is None else ~np.asarray(ignore, bool)
    pred = np.where((pred > 0) if keep is None else (pred > 0) & keep, pred, 0)
    ids, index = np.unique(pred, return_inverse=True)
    index = index.reshape(pred.shape)
    pred_area = np.bincount(index.ravel(), minlength=len(ids))
    is_object = ids > 0
    n_gt, pairs, matched = 0, [], set()
    for g, instance in enumerate(gt_instances):
        m = np.asarray(instance, bool) if keep is None else np.asarray(instance, bool) & keep
        area = int(np.count_nonzero(m))
        if area == 0:
            continue
        n_gt += 1
        overlap = np.bincount(index[m], minlength=len(ids))
        ious = np.where(is_object, overlap / (area + pred_area - overlap), 0.0)
        best = int(np.argmax(ious))
        if ious[best] > threshold and best not in matched:
            matched.add(best)
            pairs.append((g, int(ids[best]), float(ious[best])))
    return InstanceMatch(pairs, int(is_object.sum()), n_gt)


def instance_f1(pred_labels: np.ndarray, gt_instances: Sequence[np.ndarray], threshold: float = 0.5,
                ignore: np.ndarray | None = None) -> float:
    """Object-level F1 for instance segmentation (what counting users need); see
    :func:`match_instances`. No objects on either side gives 1."""
    if threshold < 0.5:
        raise ValueError("instance_f1 needs threshold >= 0.5 for a one-to-one matching")
    return match_instances(pred_labels, gt_instances, threshold, ignore).f1
