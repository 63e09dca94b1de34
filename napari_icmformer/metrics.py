"""Interactive-segmentation metrics: IoU with an ignore region, NoC, NoF, mIoU@k, SPC."""

from __future__ import annotations

from collections.abc import Sequence

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
