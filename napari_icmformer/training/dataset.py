"""An in-memory pool of (image, object) pairs and the augmented crops the network trains on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage
from tqdm import tqdm

from ..clicking import sample_initial_points
from ..data import Sample, open_dataset


@dataclass
class PooledObject:
    image_index: int
    box: tuple[int, int, int, int]  # y0, x0, y1, x1 (exclusive)
    crop: np.ndarray  # boolean mask inside box


class ObjectPool:
    """Images (downscaled to ``max_side``) and their objects, kept as box-cropped masks."""

    def __init__(self, max_side: int = 384, min_area: int = 40) -> None:
        self.max_side, self.min_area = max_side, min_area
        self.images: list[np.ndarray] = []
        self.objects: list[PooledObject] = []
        self.source_of: list[str] = []
        # per object, for MOIS groups: instance labels 1, COCO / MSRC classes their id, stuff 0
        self.category_of: list[int] = []

    def add_sample(self, sample: Sample, source: str) -> None:
        image = sample.image
        scale = min(1.0, self.max_side / max(image.shape[:2]))
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        if scale < 1.0:
            image = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
        index = len(self.images)
        self.images.append(image)
        labels = sample.labels
        if labels is not None:  # instance label image: one nearest resize, boxes from find_objects
            if scale < 1.0:
                labels = np.asarray(Image.fromarray(labels.astype(np.int32)).resize(size, Image.NEAREST))
            ids = getattr(sample.masks, "ids", [])
            category = dict(zip(ids, sample.categories, strict=True)) if len(ids) == len(sample.categories) else {}
            for lab, sl in enumerate(ndimage.find_objects(labels), start=1):
                if sl is not None:
                    self._add_object(index, (sl[0].start, sl[1].start), labels[sl] == lab, source,
                                     int(category.get(lab, 1)))
            return
        cats = list(sample.categories) if len(sample.categories) == len(sample.masks) else [1] * len(sample.masks)
        for mask, cat in zip(sample.masks, cats, strict=True):
            m = mask
            if scale < 1.0:
                m = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.BILINEAR)) > 127
            ys, xs = np.nonzero(m)
            if len(ys):
                y0, x0 = ys.min(), xs.min()
                self._add_object(index, (y0, x0), m[y0:ys.max() + 1, x0:xs.max() + 1], source, int(cat))

    def _add_object(self, index: int, origin: tuple[int, int], crop: np.ndarray, source: str,
                    category: int = 1) -> None:
        if crop.sum() < self.min_area:
            return
        y0, x0 = int(origin[0]), int(origin[1])
        box = (y0, x0, y0 + crop.shape[0], x0 + crop.shape[1])
        self.objects.append(PooledObject(index, box, crop.copy()))
        self.source_of.append(source)
        self.category_of.append(category)

    def add_dataset(self, name: str, data_root: str | None, limit: int | None = None) -> None:
        ds = open_dataset(name, data_root)
        n = len(ds) if limit is None else min(limit, len(ds))
        for i in tqdm(range(n), desc=f"loading {name}", leave=False):
            self.add_sample(ds[i], name)

    def full_mask(self, obj: PooledObject) -> np.ndarray:
        h, w = self.images[obj.image_index].shape[:2]
        m = np.zeros((h, w), bool)
        y0, x0, y1, x1 = obj.box
        m[y0:y1, x0:x1] = obj.crop
        return m

    def weights(self) -> np.ndarray:
        """Sampling weights that give each source dataset an equal share."""
        return equal_share_weights(self.source_of)


def equal_share_weights(sources: list[str]) -> np.ndarray:
    """Sampling weights, one per item, that give each source dataset an equal share of the
    samples (a small set is not drowned by COCO)."""
    src = np.array(sources)
    w = np.zeros(len(src))
    for s in np.unique(src):
        sel = src == s
        w[sel] = 1.0 / sel.sum()
    return w / w.sum()


def colour_jitter(img: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Brightness / contrast and an RGB shift, clamped to [0, 1] (docs/protocols.md §3)."""
    img = (img - 0.5) * rng.uniform(0.75, 1.25) + 0.5 + rng.uniform(-0.15, 0.15)
    img = img + torch.from_numpy(rng.uniform(-0.06, 0.06, size=(3, 1, 1))).float()
    return img.clamp(0, 1)


def random_view(
    shape: tuple[int, int], box: tuple[int, int, int, int], rng: np.random.Generator, whole_prob: float = 0.3,
    min_side: float = 24,
) -> tuple[int, int, int, int]:
    """A crop window (y0, x0, y1, x1) around the object, like the engine's views at inference:
    sometimes the whole image, otherwise the object's box expanded ×1.2–3 (zoom-in like, at
    least ``min_side`` px: the engine's zoom-in crops are ≥ 200 px), with random scale (0.75–1.4
    of that) and shift."""
    h, w = shape
    if rng.random() < whole_prob:
        return 0, 0, h, w
    y0, x0, y1, x1 = box
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    side_y = max((y1 - y0) * rng.uniform(1.2, 3.0), min_side) * rng.uniform(0.75, 1.4)
    side_x = max((x1 - x0) * rng.uniform(1.2, 3.0), min_side) * rng.uniform(0.75, 1.4)
    side = max(side_y, side_x) if rng.random() < 0.5 else None
    sy, sx = (side, side) if side else (side_y, side_x)
    sy, sx = min(sy, h), min(sx, w)
    cy += rng.uniform(-0.25, 0.25) * sy
    cx += rng.uniform(-0.25, 0.25) * sx
    vy0 = int(np.clip(round(cy - sy / 2), 0, h - sy))
    vx0 = int(np.clip(round(cx - sx / 2), 0, w - sx))
    return vy0, vx0, vy0 + max(1, int(sy)), vx0 + max(1, int(sx))


def _view_tensors(pool: ObjectPool, obj: PooledObject, size: int, rng: np.random.Generator,
                  min_side: float = 24) -> tuple[torch.Tensor, torch.Tensor]:
    """A random view of ``obj`` at ``size``²: image (3,S,S) in [0,1] and its mask (1,S,S)."""
    image = pool.images[obj.image_index]
    mask = pool.full_mask(obj)
    y0, x0, y1, x1 = random_view(mask.shape, obj.box, rng, min_side=min_side)
    img = torch.from_numpy(np.ascontiguousarray(image[y0:y1, x0:x1])).permute(2, 0, 1).float()[None] / 255
    m = torch.from_numpy(np.ascontiguousarray(mask[y0:y1, x0:x1])).float()[None, None]
    img = F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False)[0]
    m = F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False)[0]
    return img, m


def soft_alpha(mask: torch.Tensor) -> torch.Tensor:
    """A paste alpha whose edge is one pixel soft, so a pasted outline is not a perfect step edge
    the network could learn to look for instead of the image's own edges."""
    k = torch.tensor([0.25, 0.5, 0.25])
    a = F.conv2d(mask[None], (k[:, None] * k[None, :])[None, None], padding=1)[0]
    return a.clamp(0, 1)


def copy_paste(
    pool: ObjectPool, obj_index: int, img: torch.Tensor, m: torch.Tensor, size: int,
    rng: np.random.Generator, prob: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Copy-paste augmentation (Ghiasi et al. 2021), two kinds, each with probability ``prob``/2:
    the target object pasted onto another training image's background (new object/background
    pairs), or another image's object pasted over the view as a distractor that may occlude the
    target (the target mask loses the occluded pixels)."""
    if prob <= 0 or rng.random() >= prob or len(pool.images) < 2:
        return img, m
    obj = pool.objects[obj_index]
    others = [i for i in rng.integers(0, len(pool.objects), size=8)
              if pool.objects[int(i)].image_index != obj.image_index]
    if not others:
        return img, m
    other = pool.objects[int(others[0])]
    if rng.random() < 0.5:  # the target onto a new background
        bg, _ = _view_tensors(pool, other, size, rng)
        alpha = soft_alpha((m > 0.5).float())
        return alpha * img + (1 - alpha) * bg, m
    # a distractor over the view, at 0.2-0.7 of the view, anywhere
    dimg, dm = _view_tensors(pool, other, size, rng)
    side = int(size * rng.uniform(0.2, 0.7))
    dimg = F.interpolate(dimg[None], size=(side, side), mode="bilinear", align_corners=False)[0]
    dm = F.interpolate(dm[None], size=(side, side), mode="bilinear", align_corners=False)[0]
    alpha = torch.zeros_like(m)
    patch = torch.zeros_like(img)
    py, px = (int(v) for v in rng.integers(0, size - side + 1, size=2))
    alpha[:, py:py + side, px:px + side] = soft_alpha((dm > 0.5).float())
    patch[:, py:py + side, px:px + side] = dimg
    out_m = m * (alpha <= 0.5).float()
    if (out_m > 0.5).sum() < 0.5 * (m > 0.5).sum():
        return img, m  # hiding most of the target teaches nothing about it
    return alpha * patch + (1 - alpha) * img, out_m


def make_training_sample(
    pool: ObjectPool, obj_index: int, size: int, rng: np.random.Generator, copy_paste_prob: float = 0.0,
    min_side: float = 24,
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray] | None:
    """(image (3,S,S) in [0,1], mask (1,S,S), points (N,3)) or None when the object left the view."""
    img, m = _view_tensors(pool, pool.objects[obj_index], size, rng, min_side)
    m = (m > 0.5).float()
    if m.sum() < 10:
        return None
    img, m = copy_paste(pool, obj_index, img, m, size, rng, copy_paste_prob)
    if rng.random() < 0.5:
        img, m = img.flip(-1), m.flip(-1)
    img = colour_jitter(img, rng)
    points = sample_initial_points(m[0].numpy() > 0.5, rng)
    return img, m, points


def collate_points(points: list[np.ndarray], extra: int = 3) -> torch.Tensor:
    """Pad variable point lists to (B, N + extra, 3) with label -1, leaving room for iterative clicks."""
    n = max(len(p) for p in points) + extra
    out = torch.full((len(points), n, 3), -1.0)
    for i, p in enumerate(points):
        out[i, : len(p)] = torch.from_numpy(p)
    return out
