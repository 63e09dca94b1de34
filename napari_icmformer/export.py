"""Instance labels ⇄ COCO instances json (pycocotools RLE), so annotations leave napari in the
format every training pipeline reads, and come back with the exact same ids.

A 2-D label image is one COCO image; an N-D stack is one COCO image per 2-D slice
(``file_name`` carries the slice index). Each object keeps its label id in ``label_id``.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from scipy import ndimage

from .data.coco_checks import INT32_MAX, CocoFormatError, check_structure, decode_segmentation, is_int


class CocoExportError(ValueError):
    """A label array or json that cannot be converted."""


def _slices(labels: np.ndarray):
    lead = labels.shape[:-2]
    for idx in np.ndindex(*lead) if lead else [()]:
        yield idx, labels[idx]


def _box_rle(crop: np.ndarray, box: tuple[slice, slice], shape: tuple[int, int]) -> dict:
    """The COCO RLE of a mask that is ``crop`` inside ``box`` and empty elsewhere, built from the
    crop alone (column-major run boundaries), so thousands of small objects on a large image
    cost their own pixels, not the image's. pycocotools compresses it."""
    h, w = shape
    y0, x0 = box[0].start, box[1].start
    padded = np.zeros((crop.shape[0] + 2, crop.shape[1]), np.int8)
    padded[1:-1] = crop
    cols, rows = np.nonzero(np.diff(padded, axis=0).T)  # column-major order, as COCO counts
    bounds = (x0 + cols).astype(np.int64) * h + y0 + rows
    # a run that ends at a column's last row and one that starts at the next column's first row
    # are one run: equal consecutive boundaries cancel
    if len(bounds) > 1:
        same = np.nonzero(bounds[1:-1:2] == bounds[2::2])[0]
        if len(same):
            drop = np.concatenate([2 * same + 1, 2 * same + 2])
            bounds = np.delete(bounds, drop)
    counts = np.diff(np.concatenate([[0], bounds, [h * w]])).tolist()
    if len(counts) > 1 and counts[-1] == 0:
        counts.pop()  # an object on the last pixel: no empty run after it (pycocotools' own form)
    return mask_utils.frPyObjects({"counts": counts, "size": [h, w]}, h, w)


def _object_boxes(plane: np.ndarray):
    """(id, bounding box) of every object of a label plane, in id order, from one pass over it
    (no full-image pass per object). ``find_objects`` keeps a slot per possible id, so sparse ids
    (one object with id 2 000 000 000) are first mapped to 1..N."""
    top = int(plane.max(initial=0))
    if top <= max(plane.size, 1024):
        ids = None
        boxes = ndimage.find_objects(plane)
    else:
        ids = np.union1d(np.zeros(1, plane.dtype), plane)
        boxes = ndimage.find_objects(np.searchsorted(ids, plane).astype(np.int64))
    for k, box in enumerate(boxes, start=1):
        if box is not None:
            yield (k if ids is None else int(ids[k])), box


def labels_to_coco(labels: np.ndarray, name: str = "image", category: str = "object") -> dict:
    """A COCO instances dict with one RLE annotation per (slice, label id)."""
    labels = np.asarray(labels)
    if labels.ndim < 2:
        raise CocoExportError(f"labels must be at least 2-D, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise CocoExportError(f"labels must be integers, got {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise CocoExportError("labels must be non-negative (0 = background)")
    if labels.size and labels.max() > INT32_MAX:
        raise CocoExportError(f"object id {labels.max()} is above {INT32_MAX}, which COCO readers (label_id, "
                              "int32) cannot hold: relabel the objects 1..N first "
                              "(skimage.segmentation.relabel_sequential)")
    h, w = labels.shape[-2:]
    images, annotations = [], []
    for image_id, (idx, plane) in enumerate(_slices(labels), start=1):
        suffix = "" if not idx else "_" + "_".join(str(i) for i in idx)
        images.append({"id": image_id, "file_name": f"{name}{suffix}", "height": int(h), "width": int(w),
                       "slice": list(idx)})
        for label_id, box in _object_boxes(plane):
            rle = _box_rle(plane[box] == label_id, box, (h, w))
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                "segmentation": {"size": [int(h), int(w)], "counts": rle["counts"].decode("ascii")},
                "area": float(mask_utils.area(rle)), "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                "iscrowd": 0, "label_id": int(label_id),
            })
    return {"images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": category, "supercategory": category}],
            "info": {"description": "instance labels exported by napari-icmformer"}}


MAX_LABEL_ELEMENTS = 2**30  # a label stack of at most 4 GiB (int32)
MAX_OVERLAP_LAYERS = 16


def _plan(data: Any) -> tuple[tuple[int, ...], int, int, dict[int, tuple[int, ...]]]:
    """Validate the whole json before anything is decoded: (lead shape, height, width, the
    slice of each image id)."""
    try:
        check_structure(data)
    except CocoFormatError as exc:
        raise CocoExportError(str(exc)) from None
    images = sorted(data["images"], key=lambda im: im["id"])
    if not images:
        raise CocoExportError("this COCO json lists no images")
    h, w = int(images[0]["height"]), int(images[0]["width"])
    slices = []
    for im in images:
        idx = im.get("slice", [])
        if not isinstance(idx, list) or not all(is_int(i) and i >= 0 for i in idx):
            raise CocoExportError(f"image {im['id']}: 'slice' must be a list of non-negative integers, got {idx!r}")
        slices.append(tuple(idx))
    if len(images) > 1 and not all(slices):
        raise CocoExportError(f"this json describes {len(images)} separate images; one label image can be "
                              "made from a single image or from a stack exported by napari-icmformer")
    if len({len(t) for t in slices}) > 1:
        raise CocoExportError("the images of this json have slice indices of different lengths: not one stack")
    if any((im["height"], im["width"]) != (h, w) for im in images):
        raise CocoExportError("the images of this json differ in size: not one label stack")
    lead = tuple(max(t[d] for t in slices) + 1 for d in range(len(slices[0])))
    if math.prod(lead) * h * w > MAX_LABEL_ELEMENTS:
        raise CocoExportError(f"a label stack of shape {(*lead, h, w)} is more than {MAX_LABEL_ELEMENTS} pixels")
    for n, ann in enumerate(data["annotations"], start=1):
        label = ann.get("label_id", n)
        if not is_int(label) or not 1 <= label <= INT32_MAX:
            raise CocoExportError(f"annotations[{n - 1}] has label_id {label!r}: expected an integer in "
                                  f"[1, {INT32_MAX}] (0 is the background)")
    return lead, h, w, {im["id"]: t for im, t in zip(images, slices)}


def coco_to_label_layers(data: dict, max_layers: int = MAX_OVERLAP_LAYERS) -> list[np.ndarray]:
    """Every instance of a COCO json as label images: one when no objects overlap, else as few
    layers as needed (each instance goes to the first layer where it overlaps nothing), so no
    object is painted over. Refuses a json whose overlaps need more than ``max_layers``."""
    lead, h, w, where = _plan(data)
    layers = [np.zeros((*lead, h, w), np.int32)]
    for n, ann in enumerate(data["annotations"], start=1):
        try:
            m = decode_segmentation(ann["segmentation"], h, w)
        except CocoFormatError as exc:
            raise CocoExportError(f"annotations[{n - 1}] (id {ann.get('id')!r}): {exc}") from None
        label = int(ann.get("label_id", n))
        target = None
        for layer in layers:
            under = layer[where[ann["image_id"]]][m]
            if np.all((under == 0) | (under == label)):
                target = layer
                break
        if target is None:
            if len(layers) == max_layers or (len(layers) + 1) * layers[0].size > MAX_LABEL_ELEMENTS:
                raise CocoExportError(f"the objects of this json overlap {len(layers) + 1} deep: more label "
                                      "layers than can be held")
            target = np.zeros_like(layers[0])
            layers.append(target)
        target[where[ann["image_id"]]][m] = label
    return layers


def coco_to_labels(data: dict) -> np.ndarray:
    """Inverse of :func:`labels_to_coco` (also reads plain COCO json: ids then follow annotations).

    A label image holds one id per pixel: overlapping instances are refused rather than painted
    over (:func:`coco_to_label_layers` keeps them in separate layers)."""
    layers = coco_to_label_layers(data)
    if len(layers) > 1:
        raise CocoExportError(f"objects of this json overlap: one label image would lose them; they need "
                              f"{len(layers)} label layers (coco_to_label_layers / the napari reader)")
    return layers[0]


class CocoFileExistsError(CocoExportError):
    """The target file exists and ``overwrite`` was not given."""


def save_coco(path: str | Path, labels: np.ndarray, category: str = "object", *, overwrite: bool = False) -> Path:
    """Write ``labels`` as COCO json. An existing file is never replaced unless ``overwrite``;
    the json is written to a temporary file first, so a failed write leaves no half file."""
    path = Path(path)
    data = labels_to_coco(labels, name=path.stem, category=category)
    if path.is_dir():
        raise CocoExportError(f"cannot save COCO json to {path}: it is a folder")
    if path.exists() and not overwrite:
        raise CocoFileExistsError(f"{path} already exists; choose another name or pass overwrite=True to replace it")
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data))
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise CocoExportError(f"cannot save COCO json to {path}: {exc.strerror or exc}") from None
    return path


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CocoExportError(f"COCO json not found: {path}") from None
    except IsADirectoryError:
        raise CocoExportError(f"cannot read COCO json {path}: it is a folder") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CocoExportError(f"cannot read COCO json {path}: {getattr(exc, 'strerror', None) or exc}") from None


def load_coco(path: str | Path) -> np.ndarray:
    """One label image from a COCO json file (see :func:`coco_to_labels`)."""
    path = Path(path)
    try:
        return coco_to_labels(_read_json(path))
    except CocoExportError as exc:
        raise CocoExportError(f"{path}: {exc}" if str(path) not in str(exc) else str(exc)) from None


def load_coco_layers(path: str | Path) -> list[np.ndarray]:
    """Every instance of a COCO json file, overlapping ones in extra layers."""
    path = Path(path)
    try:
        return coco_to_label_layers(_read_json(path))
    except CocoExportError as exc:
        raise CocoExportError(f"{path}: {exc}" if str(path) not in str(exc) else str(exc)) from None


# -- npe2 reader / writer ---------------------------------------------------------------------
def write_labels_coco(path: str, data: np.ndarray, meta: dict) -> list[str]:
    """napari writer: a Labels layer → COCO instances json. napari's save dialog has already asked
    before replacing an existing file, so the writer replaces it (still atomically); a failure is
    a CocoExportError, never a raw OSError."""
    return [str(save_coco(path, np.asarray(data), category=meta.get("name", "object") or "object",
                          overwrite=True))]


def _layer_data(path: str) -> list[tuple[np.ndarray, dict, str]]:
    layers = load_coco_layers(path)
    stem = Path(path).stem
    if len(layers) == 1:
        return [(layers[0], {"name": stem}, "labels")]
    # overlapping objects: every one kept, in as many layers as the overlaps need
    return [(lab, {"name": stem if k == 0 else f"{stem} (overlapping {k + 1}/{len(layers)})",
                   "metadata": {"coco_overlap_layer": k + 1, "coco_overlap_layers": len(layers)}}, "labels")
            for k, lab in enumerate(layers)]


def get_coco_reader(path: str | list[str]):
    """napari reader for a COCO json written by this plugin (or any single-size COCO json)."""
    if isinstance(path, list) or not str(path).endswith(".json"):
        return None
    try:
        head = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(head, dict) or "annotations" not in head or "images" not in head:
        return None
    return _layer_data
