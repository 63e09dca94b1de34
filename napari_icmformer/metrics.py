"""Interactive-segmentation metrics: IoU with an ignore region, NoC, NoF, mIoU@k, SPC, and the
object-level F1 of an instance split."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from skimage.metrics import contingency_table


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


def instance_f1(pred_labels: np.ndarray, gt_instances: Sequence[np.ndarray], threshold: float = 0.5) -> float:
    """Object-level F1 for instance segmentation (what counting users need): a predicted
    instance matches a ground-truth one when their IoU exceeds ``threshold`` (≥ 0.5 makes the
    matching one-to-one). No objects on either side gives 1."""
    if threshold < 0.5:
        raise ValueError("instance_f1 needs threshold >= 0.5 for a one-to-one matching")
    gt_labels = np.zeros(pred_labels.shape, np.int64)
    for k, m in enumerate(gt_instances, start=1):
        gt_labels[np.asarray(m, bool)] = k
    n_gt, n_pred = len(gt_instances), len(np.unique(pred_labels[pred_labels > 0]))
    if n_gt + n_pred == 0:
        return 1.0
    pred_ids, pred_inv = np.unique(pred_labels, return_inverse=True)
    overlap = contingency_table(gt_labels, pred_inv.reshape(pred_labels.shape)).toarray()
    gt_area, pred_area = overlap.sum(1, keepdims=True), overlap.sum(0, keepdims=True)
    ious = overlap / np.maximum(gt_area + pred_area - overlap, 1)
    ious = ious[1:, 1:] if pred_ids[0] == 0 else ious[1:, :]
    matches = int((ious > threshold).sum())
    return 2.0 * matches / (n_gt + n_pred)
