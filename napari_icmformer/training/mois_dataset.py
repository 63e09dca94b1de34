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
from .dataset import ObjectPool, colour_jitter, equal_share_weights, random_view, soft_alpha


def mois_groups(pool: ObjectPool, min_instances: int = 2) -> list[list[int]]:
    """Object indices grouped by (image, category); groups smaller than ``min_instances`` dropped,
    and category 0 (stuff: grass, sky) is no target."""
    groups: dict[tuple[int, int], list[int]] = {}
    for k, obj in enumerate(pool.objects):
        if pool.category_of[k] != 0:
            groups.setdefault((obj.image_index, pool.category_of[k]), []).append(k)
    return [g for _, g in sorted(groups.items()) if len(g) >= min_instances]


def kind_of(pool: ObjectPool, group: list[int]) -> tuple[str, int]:
    """What makes two groups different kinds of object: their dataset and category."""
    return pool.source_of[group[0]], pool.category_of[group[0]]


PASTED = 1_000_000  # label ids of pasted other-kind instances start here


def paste_other_kind(pool: ObjectPool, lab: np.ndarray, img: torch.Tensor, other: list[int],
                     rng: np.random.Generator, max_objects: int = 5) -> tuple[torch.Tensor, np.ndarray]:
    """Instances of another kind of object (``other``: a group of another dataset or category)
    pasted into the view at the size of the view's own instances, as labels ``PASTED + j``.

    Why: a nuclei image holds only nuclei, so a model trained on it alone learns "every blob"
    and ignores the exemplar. With another kind beside its own, and the target being either
    kind (the caller picks), only the exemplar tells which objects are wanted. Pasted objects
    occlude what lies under them; placements that would cover other objects by more than a
    fifth are tried elsewhere (up to 10 times)."""
    size = lab.shape[0]
    ids, counts = np.unique(lab[lab > 0], return_counts=True)
    own_side = float(np.sqrt(np.median(counts))) if len(ids) else size / 6
    img, lab = img.clone(), lab.copy()
    for k in rng.permutation(other)[:int(rng.integers(2, max_objects + 1))]:
        obj = pool.objects[int(k)]
        y0, x0, y1, x1 = obj.box
        side = own_side * rng.uniform(0.7, 1.4) / np.sqrt(max(1, obj.crop.sum()))
        h, w = (max(3, min(size // 2, round(v * side))) for v in (y1 - y0, x1 - x0))
        patch = torch.from_numpy(np.array(pool.images[obj.image_index][y0:y1, x0:x1]))
        patch = F.interpolate(patch.permute(2, 0, 1).float()[None] / 255, size=(h, w), mode="bilinear",
                              align_corners=False)[0]
        m = F.interpolate(torch.from_numpy(obj.crop.astype(np.float32))[None, None], size=(h, w),
                          mode="bilinear", align_corners=False)[0]
        alpha = soft_alpha((m > 0.5).float())
        inside = alpha[0].numpy() > 0.5
        if inside.sum() < 4:
            continue
        for _ in range(10):
            py, px = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
            under = lab[py:py + h, px:px + w]
            if (under[inside] > 0).mean() <= 0.2:
                img[:, py:py + h, px:px + w] = alpha * patch + (1 - alpha) * img[:, py:py + h, px:px + w]
                under[inside] = PASTED + int(k)
                break
    return img, lab


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
                     min_pixels: int = 6, max_exemplar_clicks: int = 20, other: list[int] | None = None):
    """(image (3,S,S), exemplar mask (1,S,S), target (1,S,S), exemplar points (N,3), true-negative
    points (M,3)) or None when fewer than two instances are visible in the drawn view.

    ``other``: a group of another kind, pasted in (``paste_other_kind``); then the target is the
    pasted kind or the view's own kind, half of the time each, and the exemplar one of its
    instances."""
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
    if other is not None:
        img, lab = paste_other_kind(pool, lab, img, other, rng)
    ids, counts = np.unique(lab[lab > 0], return_counts=True)
    kinds = [ids[ids < PASTED], ids[ids >= PASTED]]
    want = int(other is not None and rng.random() < 0.5)  # 1: the pasted kind is the target
    visible = np.intersect1d(kinds[want], ids[counts >= min_pixels])
    if len(visible) < 2:
        return None
    if rng.random() < 0.5:
        img, lab = img.flip(-1), lab[:, ::-1].copy()
    img = colour_jitter(img, rng)
    exemplar = lab == int(rng.choice(visible))
    # every instance of the wanted kind in view, slivers at the edge included
    target = lab >= PASTED if want else (lab > 0) & (lab < PASTED)
    clicks = dios_clicks(exemplar, rng, n_clicks=int(rng.integers(1, max_exemplar_clicks + 1)))
    ex_points = clicks.to_array()
    # exemplar negatives on other instances are pseudo negatives (from the GT): not for recall
    true_neg, _ = split_negative_clicks(Clicks(clicks.negatives), target)
    return (img, torch.from_numpy(exemplar.astype(np.float32))[None],
            torch.from_numpy(target.astype(np.float32))[None], ex_points, true_neg.to_array())
