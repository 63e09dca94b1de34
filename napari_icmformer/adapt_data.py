"""The user's annotated images for adaptation: read from label images or COCO json, cropped to
the part that was annotated, and split into a training part and a held-out part.

The split keeps every image on both sides where it can: the objects at one end of an image's
longer side (a strip holding ``share`` of them) are held out, the rest of the image trains. So
the gain is measured on the user's kind of image, on objects the network never trained on.
Images with fewer than ``STRIP_MIN`` objects are held out whole (every few images).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage.segmentation import relabel_sequential

from .data.readers import CocoInstances, DatasetError, coco_image_dir, read_image, read_label_array
from .image import to_rgb01

MIN_OBJECTS = 8  # fewer than this cannot both train and measure the gain
MIN_HELD_OUT = 2  # objects the gain is measured on
MIN_TRAIN = 6  # objects the network trains on
STRIP_MIN = 4  # an image with fewer objects is held out whole or trains whole


class AdaptInputError(ValueError):
    """The images or labels cannot be adapted on; the message says what to change."""


@dataclass
class AnnotatedImage:
    """One image (RGB uint8) and its instance labels (int32, 0 = background, 1..N)."""

    name: str
    image: np.ndarray
    labels: np.ndarray

    @property
    def n_objects(self) -> int:
        return int(self.labels.max(initial=0))


def as_annotated(name: str, image: np.ndarray, labels: np.ndarray) -> AnnotatedImage:
    """Check and convert one image + label image: any dtype the plugin reads, ids made 1..N."""
    try:
        rgb = to_rgb01(image)
    except ValueError as exc:
        raise AdaptInputError(f"{name}: {exc}") from None
    labels = np.asarray(labels)
    if labels.ndim == 3 and labels.shape[-1] in (1, 3, 4):
        labels = labels[..., 0]
    if labels.ndim != 2 or labels.shape != rgb.shape[:2]:
        raise AdaptInputError(f"{name}: the labels are {labels.shape[::-1]} but the image is "
                              f"{rgb.shape[1::-1]} (width, height): give one label image per image, same size")
    if not np.issubdtype(labels.dtype, np.integer) and labels.dtype != bool:
        raise AdaptInputError(f"{name}: labels must be integer object ids, got {labels.dtype}")
    if labels.min(initial=0) < 0:
        raise AdaptInputError(f"{name}: labels hold negative ids")
    relabelled = relabel_sequential(labels.astype(np.int64))[0].astype(np.int32)
    return AnnotatedImage(name, (rgb * 255 + 0.5).astype(np.uint8), relabelled)


def _read_labels(path: Path) -> np.ndarray:
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile  # noqa: PLC0415

        try:
            return np.asarray(tifffile.imread(path))
        except FileNotFoundError:
            raise AdaptInputError(f"label image not found: {path}") from None
        except Exception as exc:  # noqa: BLE001 - tifffile raises many types for bad files
            raise AdaptInputError(f"cannot read label image {path}: {exc}") from None
    try:
        return read_label_array(path)
    except DatasetError as exc:
        raise AdaptInputError(str(exc)) from None


def read_label_images(images: list[Path], labels: list[Path]) -> list[AnnotatedImage]:
    """Pairs of image + label image files (``.png`` / ``.tif`` as the plugin exports them)."""
    if len(images) != len(labels):
        raise AdaptInputError(f"{len(images)} images but {len(labels)} label images: give one label image each")
    out = []
    for ipath, lpath in zip(images, labels, strict=True):
        try:
            image = read_image(ipath)
        except DatasetError as exc:
            raise AdaptInputError(str(exc)) from None
        out.append(as_annotated(Path(ipath).name, image, _read_labels(Path(lpath))))
    return out


def read_coco(path: Path, image_dir: Path | None = None) -> list[AnnotatedImage]:
    """A COCO instances json (the plugin's export); images from ``image_dir`` or beside the json.
    Where objects overlap, the later annotation keeps the shared pixels."""
    path = Path(path)
    try:
        coco = CocoInstances(path, image_dir or coco_image_dir(path))
        samples = [coco[i] for i in range(len(coco))]
    except DatasetError as exc:
        raise AdaptInputError(str(exc)) from None
    out = []
    for sample in samples:
        labels = np.zeros(sample.image.shape[:2], np.int32)
        for k, mask in enumerate(sample.masks, start=1):
            labels[np.asarray(mask, bool)] = k
        out.append(as_annotated(sample.name, sample.image, labels))
    return out


def crop_to_objects(item: AnnotatedImage, margin: int = 16) -> AnnotatedImage:
    """The part of the image the user annotated (the objects' box + ``margin``): outside it,
    an unannotated object is not taught as background."""
    ys, xs = np.nonzero(item.labels)
    if not len(ys):
        return item
    h, w = item.labels.shape
    y0, y1 = max(0, ys.min() - margin), min(h, ys.max() + 1 + margin)
    x0, x1 = max(0, xs.min() - margin), min(w, xs.max() + 1 + margin)
    return AnnotatedImage(item.name, item.image[y0:y1, x0:x1], item.labels[y0:y1, x0:x1])


@dataclass
class Split:
    """Training images (or parts) and held-out parts; ``whole`` lists, per held-out part, the
    ids of its objects that lie wholly inside it (the ones clicked on to measure the gain)."""

    train: list[AnnotatedImage]
    held_out: list[AnnotatedImage]
    whole: list[list[int]]

    @property
    def n_train(self) -> int:
        return sum(t.n_objects for t in self.train)

    @property
    def n_held_out(self) -> int:
        return sum(len(w) for w in self.whole)


def _part(item: AnnotatedImage, axis: int, start: int, stop: int, tag: str) -> AnnotatedImage:
    sl = (slice(start, stop), slice(None)) if axis == 0 else (slice(None), slice(start, stop))
    labels = relabel_sequential(item.labels[sl])[0].astype(np.int32)
    return AnnotatedImage(f"{item.name} ({tag})", item.image[sl], labels)


def _strip_split(item: AnnotatedImage, share: float) -> tuple[AnnotatedImage, AnnotatedImage, list[int]]:
    """Hold out the objects at the far end of the longer side: a strip from where the first of
    them starts; the rest of the image (objects cut by the line included) trains."""
    axis = 0 if item.labels.shape[0] >= item.labels.shape[1] else 1
    boxes = ndimage.find_objects(item.labels)
    ids = [k for k, b in enumerate(boxes, start=1) if b is not None]
    centres = np.array([(boxes[k - 1][axis].start + boxes[k - 1][axis].stop) / 2 for k in ids])
    n_hold = max(1, round(share * len(ids)))
    chosen = [ids[j] for j in np.argsort(centres)[-n_hold:]]
    cut = min(boxes[k - 1][axis].start for k in chosen)
    train = _part(item, axis, 0, cut, "training part")
    held = _part(item, axis, cut, item.labels.shape[axis], "held-out part")
    inside = [k for k in ids if boxes[k - 1][axis].start >= cut]
    # the held-out part's ids after relabelling: the relabel keeps the order of the old ids
    old = np.unique(item.labels[(slice(cut, None), slice(None)) if axis == 0 else (slice(None), slice(cut, None))])
    old = [int(v) for v in old if v]
    whole = [old.index(k) + 1 for k in inside]
    return train, held, whole


def split_objects(images: list[AnnotatedImage], share: float = 0.25) -> Split:
    """Train / held-out split of the user's objects, or one clear error when there are too few."""
    images = [crop_to_objects(t) for t in images if t.n_objects]
    total = sum(t.n_objects for t in images)
    if total < MIN_OBJECTS:
        raise AdaptInputError(
            f"adaptation needs at least {MIN_OBJECTS} committed objects ({MIN_HELD_OUT} or more are held out to "
            f"measure the gain); found {total}: commit {MIN_OBJECTS - total} more")
    train, held, whole = [], [], []
    few = [t for t in images if t.n_objects < STRIP_MIN]
    for item in images:
        if item.n_objects >= STRIP_MIN:
            tr, ho, wh = _strip_split(item, share)
            train.append(tr)
            held.append(ho)
            whole.append(wh)
    # images with few objects: every k-th one held out whole (about ``share`` of them, at least one)
    if few:
        every = max(2, round(1 / max(share, 1e-6)))
        chosen = set(range(every - 1, len(few), every)) or ({len(few) - 1} if len(few) >= 2 else set())
        for j, item in enumerate(few):
            if j in chosen:
                held.append(item)
                whole.append(list(range(1, item.n_objects + 1)))
            else:
                train.append(item)
    split = Split([t for t in train if t.n_objects], held, whole)
    if split.n_held_out < MIN_HELD_OUT or split.n_train < MIN_TRAIN:
        need = max(MIN_OBJECTS, math.ceil(MIN_HELD_OUT / max(share, 1e-6)))
        raise AdaptInputError(
            f"adaptation needs at least {MIN_HELD_OUT} held-out and {MIN_TRAIN} training objects; these "
            f"{total} objects give {split.n_held_out} and {split.n_train} ({len(images)} images): commit more objects "
            f"per image (about {need} in all, {STRIP_MIN}+ per image)")
    return split
