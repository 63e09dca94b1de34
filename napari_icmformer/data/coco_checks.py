"""COCO instances json checked before pycocotools sees it.

pycocotools trusts its input: a polygon with a huge coordinate makes ``rleFrPoly`` allocate
without bound (the process is killed or segfaults), RLE counts that add up to more than the
image are written past the end of the mask, and missing keys surface as bare ``KeyError``. The
napari reader (``export.py``) and the dataset reader (``readers.CocoInstances``) both decode
through :func:`decode_segmentation`, so every segmentation is validated and bounded first.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

INT32_MAX = 2**31 - 1
MAX_SIDE = 65536  # pixels per image side
MAX_PIXELS = 2**28  # pixels per image (a 16384 x 16384 plane)


class CocoFormatError(ValueError):
    """A COCO json (or one of its entries) that cannot be decoded safely."""


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def image_size(info: Any, where: str) -> tuple[int, int]:
    """(height, width) of an ``images`` entry, within the bounds."""
    if not isinstance(info, dict):
        raise CocoFormatError(f"{where} is not an object")
    for key in ("height", "width"):
        if key not in info:
            raise CocoFormatError(f"{where} has no {key!r}")
        v = info[key]
        if not is_int(v) or not 1 <= v <= MAX_SIDE:
            raise CocoFormatError(f"{where} has {key} {v!r}: expected an integer in [1, {MAX_SIDE}]")
    h, w = info["height"], info["width"]
    if h * w > MAX_PIXELS:
        raise CocoFormatError(f"{where} is {w}x{h}: more than {MAX_PIXELS} pixels")
    return h, w


def check_structure(data: Any, need_size: bool = True) -> None:
    """The keys every reader relies on: ``images`` with unique integer ids (and sizes),
    ``annotations`` naming one of those images and holding a segmentation."""
    if not isinstance(data, dict):
        raise CocoFormatError(f"not a COCO instances json: the top level is a {type(data).__name__}, not an object")
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise CocoFormatError(f"not a COCO instances json: {key!r} is missing or not a list")
    ids: set[int] = set()
    for i, info in enumerate(data["images"]):
        where = f"images[{i}]"
        if not isinstance(info, dict) or not is_int(info.get("id")):
            raise CocoFormatError(f"{where} has no integer 'id'")
        if info["id"] in ids:
            raise CocoFormatError(f"{where}: image id {info['id']} appears twice")
        ids.add(info["id"])
        if need_size:
            image_size(info, where)
    for i, ann in enumerate(data["annotations"]):
        where = f"annotations[{i}]"
        if not isinstance(ann, dict):
            raise CocoFormatError(f"{where} is not an object")
        if ann.get("image_id") not in ids or not is_int(ann.get("image_id")):
            raise CocoFormatError(f"{where} refers to image_id {ann.get('image_id')!r}, which is not in 'images'")
        if not isinstance(ann.get("segmentation"), (list, dict)):
            raise CocoFormatError(f"{where} has no 'segmentation' (polygons or RLE)")
        if "category_id" in ann and not is_int(ann["category_id"]):
            raise CocoFormatError(f"{where} has category_id {ann['category_id']!r}: expected an integer")
        if ann.get("iscrowd", 0) not in (0, 1) or isinstance(ann.get("iscrowd"), float):
            raise CocoFormatError(f"{where} has iscrowd {ann.get('iscrowd')!r}: expected 0 or 1")


def rle_counts(text: str) -> list[int]:
    """The run lengths of a compressed COCO RLE string (pycocotools' ``rleFrString``), decoded
    in Python so that a damaged string is refused instead of read past its end."""
    counts: list[int] = []
    p, n = 0, len(text)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                raise CocoFormatError("the RLE string ends inside a number")
            c = ord(text[p]) - 48
            if not 0 <= c < 64:
                raise CocoFormatError(f"the RLE string holds {text[p]!r}, not a COCO RLE character")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def _check_counts(counts: list[Any], h: int, w: int) -> None:
    if not all(is_int(c) for c in counts):
        raise CocoFormatError("RLE counts must be integers")
    if any(c < 0 for c in counts):
        raise CocoFormatError("RLE counts must not be negative")
    if sum(counts) != h * w:
        raise CocoFormatError(f"RLE counts cover {sum(counts)} pixels, but the image has {h}x{w} = {h * w}")


def _polygons(seg: list[Any], h: int, w: int) -> list[list[float]]:
    """Finite polygons near the image; a polygon of fewer than 3 points has no area and is
    dropped (pycocotools would read a 4-number list as a box)."""
    polys, length = [], 0.0
    limit = max(1_000_000, 64 * (h + w))
    for j, poly in enumerate(seg):
        if not isinstance(poly, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                 for v in poly):
            raise CocoFormatError(f"polygon {j} is not a list of numbers")
        if len(poly) % 2:
            raise CocoFormatError(f"polygon {j} has an odd number of coordinates ({len(poly)})")
        if len(poly) < 6:
            continue
        if not all(math.isfinite(v) for v in poly):
            raise CocoFormatError(f"polygon {j} has a NaN or infinite coordinate")
        xs, ys = np.asarray(poly[0::2], float), np.asarray(poly[1::2], float)
        off = np.concatenate([xs[(xs < -w) | (xs > 2 * w)], ys[(ys < -h) | (ys > 2 * h)]])
        if off.size:
            raise CocoFormatError(f"polygon {j} has the coordinate {off[np.argmax(np.abs(off))]:g}, far outside "
                                  f"the {w}x{h} image")
        length += float(np.abs(np.diff(xs, append=xs[0])).sum() + np.abs(np.diff(ys, append=ys[0])).sum())
        if length > limit:
            raise CocoFormatError(f"the polygons' outline is longer than {limit} pixels")
        polys.append([float(v) for v in poly])
    return polys


def decode_segmentation(seg: Any, h: int, w: int) -> np.ndarray:
    """One annotation's boolean (h, w) mask from polygons, uncompressed or compressed RLE,
    each validated against the image size before pycocotools decodes it."""
    if isinstance(seg, list):
        polys = _polygons(seg, h, w)
        if not polys:
            return np.zeros((h, w), bool)
        return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polys, h, w))).astype(bool)
    if not isinstance(seg, dict) or "counts" not in seg or "size" not in seg:
        raise CocoFormatError("a segmentation is a list of polygons or an RLE object with 'size' and 'counts'")
    size = seg["size"]
    if not isinstance(size, list) or len(size) != 2 or not all(is_int(v) for v in size):
        raise CocoFormatError(f"RLE size {size!r} is not [height, width]")
    if tuple(size) != (h, w):
        raise CocoFormatError(f"RLE size {size[1]}x{size[0]} does not match the {w}x{h} image (width x height)")
    counts = seg["counts"]
    if isinstance(counts, list):
        _check_counts(counts, h, w)
        rle = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    elif isinstance(counts, str):
        _check_counts(rle_counts(counts), h, w)
        rle = {"size": [h, w], "counts": counts.encode("ascii")}
    else:
        raise CocoFormatError(f"RLE counts must be a list or a string, got {type(counts).__name__}")
    return mask_utils.decode(rle).astype(bool)
