"""Click simulation: the evaluation clicker of the benchmarks (docs/protocols.md §4) and training samplers."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage import measure, morphology

from src_models import Click, Clicks


def _padded_edt(region: np.ndarray) -> np.ndarray:
    """Distance to the region's boundary, the image border counting as boundary (padded EDT)."""
    return ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]


def next_eval_click(
    pred: np.ndarray,
    gt: np.ndarray,
    ignore: np.ndarray | None = None,
    clicks: Clicks | None = None,
) -> Click | None:
    """The benchmark clicker: farthest-from-boundary point of the larger error region.

    False negatives give a positive click, false positives a negative one. Tie rule (RITM): a
    positive click only when the FN maximum is strictly larger than the FP maximum. Pixels
    already clicked are skipped. ``None`` when no error is left.
    """
    gt = gt.astype(bool)
    pred = pred.astype(bool)
    valid = np.ones_like(gt) if ignore is None else ~ignore.astype(bool)
    fn = gt & ~pred & valid
    fp = ~gt & pred & valid
    fn_dt, fp_dt = _padded_edt(fn), _padded_edt(fp)
    for c in clicks or ():
        y, x = int(round(c.y)), int(round(c.x))
        if 0 <= y < gt.shape[0] and 0 <= x < gt.shape[1]:
            fn_dt[y, x] = fp_dt[y, x] = 0
    fn_max, fp_max = fn_dt.max(), fp_dt.max()
    if fn_max == 0 and fp_max == 0:
        return None
    positive = bool(fn_max > fp_max)
    dt = fn_dt if positive else fp_dt
    y, x = np.unravel_index(int(np.argmax(dt)), dt.shape)
    return Click(float(y), float(x), positive, len(clicks or ()))


def first_eval_click(gt: np.ndarray, ignore: np.ndarray | None = None) -> Click:
    """Click 1: the interior point of the object farthest from its boundary."""
    click = next_eval_click(np.zeros_like(gt, bool), gt, ignore)
    if click is None:
        raise ValueError("empty ground-truth mask: there is no object to click on")
    return click


# --- training samplers (RITM-style) --------------------------------------------------------


def sample_initial_points(
    mask: np.ndarray,
    rng: np.random.Generator,
    max_points: int = 24,
    prob_gamma: float = 0.8,
    max_negative: int = 10,
) -> np.ndarray:
    """Multi-point sampler: (N, 3) of (y, x, label) with label 1 inside ``mask``, 0 outside.

    Counts follow RITM's geometric prior (P(k) ∝ gamma^(k-1)); the first positive click is drawn
    from the object's interior (weighted by distance to the boundary), further positives from
    the object, negatives from a band around it or from anywhere in the background.
    """
    mask = mask.astype(bool)
    if not mask.any():
        raise ValueError("cannot sample clicks on an empty mask")
    probs = prob_gamma ** np.arange(max_points)
    n_pos = int(rng.choice(np.arange(1, max_points + 1), p=probs / probs.sum()))
    n_pos = min(n_pos, 6)  # the prior's long tail adds little but crowds small objects
    neg_probs = prob_gamma ** np.arange(max_negative + 1)
    n_neg = int(rng.choice(np.arange(max_negative + 1), p=neg_probs / neg_probs.sum()))
    if rng.random() < 0.5:
        n_neg = 0  # half of the samples are single-object-from-positives only
    points: list[tuple[float, float, float]] = []
    dt = _padded_edt(mask)
    weights = dt.ravel() ** 2
    idx = rng.choice(weights.size, p=weights / weights.sum())
    points.append((*np.unravel_index(idx, mask.shape), 1.0))
    if n_pos > 1:
        inner = dt > max(1.0, 0.15 * dt.max())
        ys, xs = np.nonzero(inner if inner.any() else mask)
        for j in rng.choice(len(ys), size=min(n_pos - 1, len(ys)), replace=False):
            points.append((ys[j], xs[j], 1.0))
    if n_neg:
        bg = ~mask
        band = morphology.dilation(mask, morphology.disk(max(3, int(0.1 * np.sqrt(mask.sum()))))) & bg
        region = band if (band.any() and rng.random() < 0.7) else bg
        ys, xs = np.nonzero(region)
        if len(ys):
            for j in rng.choice(len(ys), size=min(n_neg, len(ys)), replace=False):
                points.append((ys[j], xs[j], 0.0))
    return np.asarray(points, np.float32)


def sample_error_click(
    pred: np.ndarray, gt: np.ndarray, rng: np.random.Generator, valid: np.ndarray | None = None
) -> tuple[float, float, float] | None:
    """One iterative training click on the largest error region (paper §3.5).

    Half of the time at the region's centre (farthest from its boundary), otherwise at a random
    point near its border, as users tend to click there. Returns (y, x, label) or None.
    """
    pred, gt = pred.astype(bool), gt.astype(bool)
    err = pred ^ gt
    if valid is not None:
        err &= valid
    if not err.any():
        return None
    labels = measure.label(err, connectivity=1)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    region = labels == int(np.argmax(sizes))
    dt = _padded_edt(region)
    if rng.random() < 0.5 or dt.max() <= 2:
        y, x = np.unravel_index(int(np.argmax(dt)), dt.shape)
    else:
        near = (dt > 0) & (dt <= max(2.0, 0.3 * dt.max()))
        ys, xs = np.nonzero(near)
        j = rng.integers(len(ys))
        y, x = ys[j], xs[j]
    return float(y), float(x), 1.0 if gt[y, x] else 0.0
