"""MOIS training samples (paper Alg. 1 on the object pool): exemplar + category target.

A group is (image, category) with at least two instances. A sample is a random view of the
image (whole, or a window around a random instance), in which one visible instance becomes the
exemplar with DIOS clicks and every visible instance of the category is the target.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from src_models import Clicks

from ..mois import dios_clicks
from ..postprocess import split_negative_clicks
from .dataset import ObjectPool, colour_jitter, equal_share_weights, random_view


def mois_groups(pool: ObjectPool, min_instances: int = 2) -> list[list[int]]:
    """Object indices grouped by (image, category); groups smaller than ``min_instances`` dropped."""
    groups: dict[tuple[int, int], list[int]] = {}
    for k, obj in enumerate(pool.objects):
        groups.setdefault((obj.image_index, pool.category_of[k]), []).append(k)
    return [g for _, g in sorted(groups.items()) if len(g) >= min_instances]


def group_weights(pool: ObjectPool, groups: list[list[int]]) -> np.ndarray:
    """Each source dataset gets an equal share of the samples."""
    return equal_share_weights([pool.source_of[g[0]] for g in groups])


def instance_map(pool: ObjectPool, group: list[int]) -> np.ndarray:
    """Label image (0 = background, k + 1 = ``group[k]``) at the pooled image's size."""
    obj0 = pool.objects[group[0]]
    h, w = pool.images[obj0.image_index].shape[:2]
    labels = np.zeros((h, w), np.int32)
    for k, idx in enumerate(group, start=1):
        y0, x0, y1, x1 = pool.objects[idx].box
        labels[y0:y1, x0:x1][pool.objects[idx].crop] = k
    return labels


def make_mois_sample(pool: ObjectPool, group: list[int], size: int, rng: np.random.Generator,
                     min_pixels: int = 6, max_exemplar_clicks: int = 20):
    """(image (3,S,S), exemplar mask (1,S,S), target (1,S,S), exemplar points (N,3), true-negative
    points (M,3)) or None when fewer than two instances are visible in the drawn view."""
    obj = pool.objects[group[int(rng.integers(len(group)))]]
    image = pool.images[obj.image_index]
    labels = instance_map(pool, group)
    y0, x0, y1, x1 = obj.box
    cy, cx, r = (y0 + y1) / 2, (x0 + x1) / 2, 1.5 * max(y1 - y0, x1 - x0)
    box = (int(max(0, cy - r)), int(max(0, cx - r)), int(cy + r) + 1, int(cx + r) + 1)
    vy0, vx0, vy1, vx1 = random_view(labels.shape, box, rng, whole_prob=0.4)
    img = torch.from_numpy(np.array(image[vy0:vy1, vx0:vx1])).permute(2, 0, 1).float()[None] / 255
    img = F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False)[0]
    lab = torch.from_numpy(np.ascontiguousarray(labels[vy0:vy1, vx0:vx1])).float()[None, None]
    lab = F.interpolate(lab, size=(size, size), mode="nearest")[0, 0].long().numpy()
    ids, counts = np.unique(lab[lab > 0], return_counts=True)
    visible = ids[counts >= min_pixels]
    if len(visible) < 2:
        return None
    if rng.random() < 0.5:
        img, lab = img.flip(-1), lab[:, ::-1].copy()
    img = colour_jitter(img, rng)
    exemplar = lab == int(rng.choice(visible))
    target = lab > 0  # every instance of the category in view, slivers at the edge included
    clicks = dios_clicks(exemplar, rng, n_clicks=int(rng.integers(1, max_exemplar_clicks + 1)))
    ex_points = clicks.to_array()
    # exemplar negatives on other instances are pseudo negatives (from the GT): not for recall
    true_neg, _ = split_negative_clicks(Clicks(clicks.negatives), target)
    return (img, torch.from_numpy(exemplar.astype(np.float32))[None],
            torch.from_numpy(target.astype(np.float32))[None], ex_points, true_neg.to_array())
