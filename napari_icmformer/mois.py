"""Multi-object (MOIS) samples: the paper's Algorithm 1 and DIOS exemplar clicks.

Alg. 1: for every image and every category with at least two instances, one instance is the
exemplar and the target is every instance of that category (the exemplar included).
Shared by training (``icmformer-train --task mois``) and evaluation (``icmformer-eval --task mois``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from src_models import Clicks

from .data import Sample


@dataclass
class MoisTarget:
    sample: str
    category: int
    exemplar_index: int  # which of ``instances`` is the exemplar
    instances: list[np.ndarray]  # boolean masks of every instance of the category
    ignore: np.ndarray | None = None

    @property
    def exemplar(self) -> np.ndarray:
        return self.instances[self.exemplar_index]

    @property
    def target(self) -> np.ndarray:
        """The category target: the union of all its instances."""
        return np.logical_or.reduce(self.instances)


def build_mois_targets(sample: Sample, rng: np.random.Generator, min_instances: int = 2) -> list[MoisTarget]:
    """Algorithm 1 on one image: one target per category with ≥ ``min_instances`` instances."""
    cats = list(sample.categories) if len(sample.categories) == len(sample.masks) else [1] * len(sample.masks)
    by_cat: dict[int, list[int]] = {}
    for i, (m, c) in enumerate(zip(sample.masks, cats, strict=True)):
        if int(c) != 0 and np.asarray(m).any():  # category 0: stuff (MSRC grass, sky), no target
            by_cat.setdefault(int(c), []).append(i)
    targets = []
    for cat in sorted(by_cat):
        idx = by_cat[cat]
        if len(idx) < min_instances:
            continue
        instances = [np.asarray(sample.masks[i], bool) for i in idx]
        targets.append(MoisTarget(sample.name, cat, int(rng.integers(len(idx))), instances, sample.ignore))
    return targets


def _pick_spread(candidates: np.ndarray, n: int, min_dist: float, rng: np.random.Generator) -> list[tuple]:
    """Up to ``n`` random points of a boolean map, each ≥ ``min_dist`` from those already picked."""
    ys, xs = np.nonzero(candidates)
    order = rng.permutation(len(ys))[:4000]  # plenty of tries, bounded cost on large objects
    picked: list[tuple[int, int]] = []
    for j in order:
        if len(picked) >= n:
            break
        y, x = int(ys[j]), int(xs[j])
        if all((y - py) ** 2 + (x - px) ** 2 >= min_dist ** 2 for py, px in picked):
            picked.append((y, x))
    return picked


def dios_clicks(mask: np.ndarray, rng: np.random.Generator, n_clicks: int | None = None,
                min_dist: float = 40, margin: float = 20, max_clicks: int = 20) -> Clicks:
    """Simulated exemplar clicks, DIOS style: the first positive at the object's centre, then
    positives inside and negatives around it, ≥ ``min_dist`` apart and ≥ ``margin`` from the
    object's border — distances scaled down for images smaller than 480 px (docs/protocols.md §3).
    ``n_clicks`` (1–20) defaults to a random count."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        raise ValueError("cannot place exemplar clicks on an empty mask")
    h, w = mask.shape
    scale = min(1.0, min(h, w) / 480)
    d, m = max(3.0, min_dist * scale), max(2.0, margin * scale)
    n = int(rng.integers(1, max_clicks + 1)) if n_clicks is None else int(n_clicks)
    inside = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    outside = ndimage.distance_transform_edt(~mask)
    first = np.unravel_index(int(np.argmax(inside)), mask.shape)
    clicks = Clicks().add(float(first[0]), float(first[1]), True)
    if n == 1:
        return clicks
    n_pos = int(rng.integers(0, n))  # the rest split between positives and negatives
    pos_region = inside >= min(m, inside.max() / 2)
    neg_region = (outside >= m) & (outside <= m + 2 * d)
    if not neg_region.any():
        neg_region = ~mask
    yy, xx = np.indices(mask.shape)
    far_from_first = (yy - first[0]) ** 2 + (xx - first[1]) ** 2 >= d * d
    pos = _pick_spread(pos_region & far_from_first, n_pos, d, rng)
    neg = _pick_spread(neg_region, n - 1 - len(pos), d, rng)
    for y, x in pos:
        clicks = clicks.add(y, x, True)
    for y, x in neg:
        clicks = clicks.add(y, x, False)
    return clicks
