"""Instance labels ⇄ COCO instances json (pycocotools RLE), so annotations leave napari in the
format every training pipeline reads, and come back with the exact same ids.

A 2-D label image is one COCO image; an N-D stack is one COCO image per 2-D slice
(``file_name`` carries the slice index). Each object keeps its label id in ``label_id``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils


class CocoExportError(ValueError):
    """A label array or json that cannot be converted."""


def _slices(labels: np.ndarray):
    lead = labels.shape[:-2]
    for idx in np.ndindex(*lead) if lead else [()]:
        yield idx, labels[idx]


def labels_to_coco(labels: np.ndarray, name: str = "image", category: str = "object") -> dict:
    """A COCO instances dict with one RLE annotation per (slice, label id)."""
    labels = np.asarray(labels)
    if labels.ndim < 2:
        raise CocoExportError(f"labels must be at least 2-D, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise CocoExportError(f"labels must be integers, got {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise CocoExportError("labels must be non-negative (0 = background)")
    h, w = labels.shape[-2:]
    images, annotations = [], []
    for image_id, (idx, plane) in enumerate(_slices(labels), start=1):
        suffix = "" if not idx else "_" + "_".join(str(i) for i in idx)
        images.append({"id": image_id, "file_name": f"{name}{suffix}", "height": int(h), "width": int(w),
                       "slice": list(idx)})
        for label_id in np.unique(plane):
            if label_id == 0:
                continue
            binary = np.asfortranarray((plane == label_id).astype(np.uint8))
            rle = mask_utils.encode(binary)
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                "segmentation": {"size": [int(h), int(w)], "counts": rle["counts"].decode("ascii")},
                "area": float(mask_utils.area(rle)), "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                "iscrowd": 0, "label_id": int(label_id),
            })
    return {"images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": category, "supercategory": category}],
            "info": {"description": "instance labels exported by napari-icmformer"}}


def coco_to_labels(data: dict) -> np.ndarray:
    """Inverse of :func:`labels_to_coco` (also reads plain COCO json: ids then follow annotations)."""
    try:
        images = sorted(data["images"], key=lambda im: im["id"])
        anns = data["annotations"]
        h, w = int(images[0]["height"]), int(images[0]["width"])
    except (KeyError, IndexError, TypeError) as exc:
        raise CocoExportError(f"not a COCO instances json: {exc!r}") from exc
    slices = [tuple(im.get("slice", [])) for im in images]
    if len(images) > 1 and not all(slices):
        raise CocoExportError(f"this json describes {len(images)} separate images; one label image can be "
                              "made from a single image or from a stack exported by napari-icmformer")
    if any((int(im["height"]), int(im["width"])) != (h, w) for im in images):
        raise CocoExportError("the images of this json differ in size: not one label stack")
    lead = tuple(max(s[d] for s in slices) + 1 for d in range(len(slices[0]))) if slices[0] else ()
    labels = np.zeros((*lead, h, w), np.int32)
    where = {im["id"]: tuple(im.get("slice", [])) for im in images}
    for n, ann in enumerate(anns, start=1):
        seg = ann["segmentation"]
        if isinstance(seg, list):  # polygons
            rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
        elif isinstance(seg.get("counts"), list):  # uncompressed RLE
            rle = mask_utils.frPyObjects(seg, h, w)
        else:
            rle = {"size": seg["size"], "counts": seg["counts"].encode("ascii")}
        m = mask_utils.decode(rle).astype(bool)
        labels[where[ann["image_id"]]][m] = int(ann.get("label_id", n))
    return labels


def save_coco(path: str | Path, labels: np.ndarray, category: str = "object") -> Path:
    path = Path(path)
    data = labels_to_coco(labels, name=path.stem, category=category)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def load_coco(path: str | Path) -> np.ndarray:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CocoExportError(f"cannot read COCO json {path}: {exc}") from exc
    return coco_to_labels(data)


# -- npe2 reader / writer ---------------------------------------------------------------------
def write_labels_coco(path: str, data: np.ndarray, meta: dict) -> list[str]:
    """napari writer: a Labels layer → COCO instances json."""
    return [str(save_coco(path, np.asarray(data), category=meta.get("name", "object") or "object"))]


def get_coco_reader(path: str | list[str]):
    """napari reader for a COCO json written by this plugin (or any single-size COCO json)."""
    if isinstance(path, list) or not str(path).endswith(".json"):
        return None
    try:
        head = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(head, dict) or "annotations" not in head or "images" not in head:
        return None
    return lambda p: [(load_coco(p), {"name": Path(p).stem}, "labels")]
